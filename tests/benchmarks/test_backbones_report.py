"""The backbones report says where each run's epochs ran (CPU, a lent GPU, or both)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from backbones import devices_used  # noqa: E402


def _log(directory: Path, *events: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return directory


def test_a_run_logged_before_devices_were_recorded_ran_on_the_cpu(tmp_path):
    run = _log(tmp_path / "old", {"event": "start"}, {"event": "epoch", "epoch": 0})
    assert devices_used(run) == "cpu"


def test_a_run_continued_on_a_gpu_names_both_devices_in_order(tmp_path):
    run = _log(
        tmp_path / "moved",
        {"event": "start", "device": "cpu"},
        {"event": "resume", "epoch": 90, "device": "cpu"},
        {"event": "resume", "epoch": 180, "device": "cuda:0"},
    )
    assert devices_used(run) == "cpu+cuda:0"
