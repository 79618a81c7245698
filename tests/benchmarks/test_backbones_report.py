"""The backbones report says where each run's epochs ran (CPU, a lent GPU, or both)."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from backbones import speed_note  # noqa: E402
from run_records import epoch_seconds_by_device  # noqa: E402


def _log(directory: Path, *events: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return directory


def test_a_run_logged_before_devices_were_recorded_ran_on_the_cpu(tmp_path):
    run = _log(tmp_path / "old", {"event": "start"}, {"event": "epoch", "epoch": 0, "seconds": 3.0})
    assert epoch_seconds_by_device(run) == {"cpu": 3.0}


def test_a_moved_run_reports_seconds_per_epoch_for_each_device_not_their_mean(tmp_path):
    run = _log(
        tmp_path / "moved",
        {"event": "start", "device": "cpu"},
        {"event": "epoch", "epoch": 0, "seconds": 90.0},
        {"event": "epoch", "epoch": 1, "seconds": 94.0},
        {"event": "resume", "epoch": 2, "device": "cuda"},
        {"event": "epoch", "epoch": 2, "seconds": 2.0},
    )
    assert epoch_seconds_by_device(run) == {"cpu": 92.0, "cuda": 2.0}
    cpu_only = {"cpu": 50.0}
    assert speed_note([cpu_only, {"cpu": 60.0}]) == "55.0 s/epoch (1 thread, shared machine)"
    assert (
        speed_note([cpu_only, epoch_seconds_by_device(run)])
        == "s/epoch per seed 50.0 cpu / 92.0 cpu + 2.0 cuda"
    )
