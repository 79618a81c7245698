"""The SRA-CL benchmark's rows: every row is its own run (LLM and raw-text ablations never share
a run directory, so the report cannot show one under the other's label)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import sracl  # noqa: E402


def test_every_row_has_a_label_and_a_distinct_spec():
    specs = {row: sracl.row_spec(row) for row in sracl.ALL_ROWS}
    assert set(sracl.LABEL) == set(sracl.ALL_ROWS)
    keys = {(model, method, repr(sorted(opts.items()))) for model, method, opts in specs.values()}
    assert len(keys) == len(specs)


def test_raw_rows_use_raw_text_and_llm_rows_use_summaries():
    for row in sracl.ALL_ROWS:
        model, method, options = sracl.row_spec(row)
        if method != "sracl":
            continue
        expected = "raw" if "-raw" in row else None
        assert options.get("text_source") == expected, row
        assert model == ("gru4rec" if row.endswith("gru4rec") else "sasrec")
