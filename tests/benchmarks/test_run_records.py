"""Finished benchmark runs survive a fresh clone: records are kept in git and restored into runs/."""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from run_records import keep, restore, write_report  # noqa: E402


def _run(root: Path, finished: bool) -> Path:
    directory = root / "beauty" / "none-sasrec" / "abc123"
    directory.mkdir(parents=True)
    (directory / "config.yaml").write_text("dataset: beauty\n")
    (directory / "metrics.json").write_text(
        json.dumps({"finished": finished, "test": {"hr@10": 0.1}})
    )
    np.save(directory / "ranks_test.npy", np.arange(50, dtype=np.int64))
    (directory / "state.pt").write_bytes(b"resume state")
    (directory / "checkpoint.pt").write_bytes(b"weights")
    return directory


def test_keep_copies_only_the_small_record_of_a_finished_run(tmp_path):
    runs, records = tmp_path / "runs", tmp_path / "records"
    record = keep(_run(runs, finished=True), runs, records)
    assert record == records / "beauty" / "none-sasrec" / "abc123"
    assert sorted(p.name for p in record.iterdir()) == ["config.yaml", "metrics.json", "ranks.npz"]


def test_an_unfinished_run_is_not_kept(tmp_path):
    runs, records = tmp_path / "runs", tmp_path / "records"
    assert keep(_run(runs, finished=False), runs, records) is None
    assert not records.exists()


def test_restore_replaces_an_unfinished_scratch_run_and_leaves_finished_ones(tmp_path):
    runs, records = tmp_path / "runs", tmp_path / "records"
    keep(_run(tmp_path / "elsewhere", finished=True), tmp_path / "elsewhere", records)
    scratch = _run(runs, finished=False)
    assert restore(runs, records) == 1
    assert json.loads((scratch / "metrics.json").read_text())["finished"] is True
    assert not (scratch / "state.pt").exists()  # a stale resume state would be resumed over
    ranks = np.load(scratch / "ranks_test.npy")
    assert ranks.dtype == np.int64 and np.array_equal(ranks, np.arange(50))
    assert restore(runs, records) == 0


def test_regenerating_a_report_keeps_its_hand_written_notes(tmp_path):
    report = tmp_path / "method.md"
    (tmp_path / "method.notes.md").write_text("## Reading\n\nWhat was tried.\n")
    write_report(report, "# Table v1\n")
    write_report(report, "# Table v2\n")
    assert report.read_text() == "# Table v2\n\n## Reading\n\nWhat was tried.\n"


def test_a_report_without_notes_is_just_the_tables(tmp_path):
    report = tmp_path / "method.md"
    write_report(report, "# Table\n\n")
    assert report.read_text() == "# Table\n"
