"""The SRA-CL benchmark's rows: every row is its own run (LLM and raw-text ablations never share
a run directory, so the report cannot show one under the other's label)."""

import argparse
import sys
import time
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


def test_a_finished_run_prints_its_full_protocol(tiny, tmp_path):
    # The line used to be built without the dataset's metadata and read "dataset beauty (?, ?
    # users); filtering as prepared".
    args = argparse.Namespace(epochs=3, cs_sample=None, max_minutes=None, patience=10)
    config = sracl.make_config(tiny.name, "sasrec", 42, args)
    result = {"finished": True, "test": {"hr@10": 0.25, "ndcg@10": 0.125}}
    line = sracl.run_line(tiny.name, "sasrec", config, tiny, result, tmp_path, time.perf_counter())
    users = tiny.metadata["counts"]["users"]
    assert "?" not in line and "as prepared" not in line
    assert f"{users} users" in line and "max len 20" in line and str(tmp_path) in line
    assert "HR@10 0.2500 NDCG@10 0.1250" in line


def test_a_dataset_without_summaries_says_its_llm_stage_did_not_run():
    # Yelp's report printed the stage table's header over no row once its raw-text artefact
    # existed, which reads as a stage that ran and cost nothing.
    assert sracl.stage_table(None) == []
    lines = sracl.stage_table({"directory": "cache/yelp/sracl/abc"})
    assert lines[0].startswith("LLM stage: no summary") and not any("|" in x for x in lines)
    summarised = {
        "directory": "cache/office/sracl/abc",
        "item_summary@v1": {
            "answers": 5,
            "prompts": 9,
            "tokens_in": 100,
            "tokens_out": 20,
            "model_seconds": 1.5,
            "model": "smol",
            "backend": "xllamacpp",
        },
    }
    none_yet = {**summarised["item_summary@v1"], "answers": 0, "tokens_in": 0, "tokens_out": 0}
    summarised["user_summary@v1"] = none_yet
    table = sracl.stage_table(summarised)
    assert "| item_summary@v1 | 5 / 9 | 100 | 20 | 1.5 | smol (xllamacpp) |" in table
    assert "| user_summary@v1 | 0 / 9 | 0 | 0 | 1.5 | smol (xllamacpp) |" in table  # partial


def test_zero_counts_alone_still_say_the_llm_stage_did_not_run():
    # Once Beauty's first summaries were cached, Yelp got counts too, all zero: its report
    # printed a table of zeros, a stage that ran and cost nothing.
    nothing = {"answers": 0, "prompts": 9, "tokens_in": 0, "tokens_out": 0, "model_seconds": 0}
    nothing |= {"model": "smol", "backend": "xllamacpp"}
    cov = {"directory": "c", "item_summary@v1": nothing, "user_summary@v1": nothing}
    lines = sracl.stage_table(cov)
    assert lines[0].startswith("LLM stage: no summary") and not any("|" in x for x in lines)


def test_each_row_is_compared_with_the_backbone_it_runs_on():
    assert sracl.backbone_row("sasrec") is None
    assert sracl.backbone_row("gru4rec") is None
    for row in ("cl4srec", "duorec", "sracl", "sracl-raw-wo-cs", "sracl-unlearnable"):
        assert sracl.backbone_row(row) == "sasrec", row
    assert sracl.backbone_row("sracl-gru4rec") == "gru4rec"
    assert sracl.backbone_row("sracl-raw-gru4rec") == "gru4rec"


def test_more_summaries_without_neighbour_artefacts_keep_the_agreement_table(tmp_path, monkeypatch):
    # A fresh machine restored more Beauty summaries from git than the kept section had, but
    # its cache/ held no raw-text neighbours: as one kept section, the report dropped the
    # neighbour-agreement table an earlier machine had measured (stop 62).
    import run_records

    monkeypatch.setattr(run_records, "ROOT", tmp_path)
    counts = {"prompts": 9, "tokens_in": 100, "tokens_out": 20, "model_seconds": 1.5}
    counts |= {"model": "smol", "backend": "xllamacpp"}
    agreement = ["Neighbour agreement ...", "", "| header |", "|---|", "| raw text | 0.499 |", ""]
    monkeypatch.setattr(sracl, "agreement_table", lambda dataset: agreement)
    monkeypatch.setattr(
        sracl, "coverage", lambda d: {"directory": "c", "item_summary@v1": {**counts, "answers": 3}}
    )
    first = sracl.llm_stage_section("beauty", tmp_path)
    assert "| raw text | 0.499 |" in first and any("3 / 9" in x for x in first)

    monkeypatch.setattr(sracl, "agreement_table", lambda dataset: [])
    monkeypatch.setattr(
        sracl, "coverage", lambda d: {"directory": "c", "item_summary@v1": {**counts, "answers": 8}}
    )
    later = sracl.llm_stage_section("beauty", tmp_path)
    assert any("8 / 9" in x for x in later)  # the fuller stage table wins
    assert "| raw text | 0.499 |" in later  # and the agreement table is kept


def test_a_dataset_not_prepared_here_says_its_stage_was_not_counted(tmp_path, monkeypatch):
    # Yelp is not prepared on a fresh machine: its report section lost the stage line and
    # said nothing about the LLM stage at all (stop 62).
    import run_records

    monkeypatch.setattr(run_records, "ROOT", tmp_path)
    monkeypatch.setattr(sracl, "coverage", lambda dataset: None)
    monkeypatch.setattr(sracl, "agreement_table", lambda dataset: [])
    lines = sracl.llm_stage_section("yelp", tmp_path)
    assert lines[0].startswith("LLM stage: not counted here")
