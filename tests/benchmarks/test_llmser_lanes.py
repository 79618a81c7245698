"""The LLM-stage lane runner (`benchmarks/llmser_lanes.sh`): its stop time is a clock time, so a
time earlier than now means tomorrow, as a user starting lanes before midnight means."""

import datetime
import os
import subprocess
from pathlib import Path

LANES = Path(__file__).resolve().parents[2] / "benchmarks" / "llmser_lanes.sh"


def run_lanes(stop_at: str, logs: Path) -> subprocess.CompletedProcess:
    # `true` stands in for Python: each shard "finishes" at once, so the lane ends after one go.
    env = {**os.environ, "LANES": "1", "LOGS": str(logs), "PYTHON": "true"}
    return subprocess.run(
        ["bash", str(LANES), "office", stop_at],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_clock_time_already_past_today_means_tomorrow(tmp_path):
    an_hour_ago = (datetime.datetime.now() - datetime.timedelta(hours=1)).strftime("%H:%M")
    result = run_lanes(an_hour_ago, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    log = (tmp_path / "office-lane0.log").read_text()
    assert "shard 0/1 for 1800 s" in log  # ~23 h away, so a full restart period


def test_a_full_date_in_the_past_is_refused_in_one_line(tmp_path):
    result = run_lanes("2020-01-01 00:00", tmp_path)
    assert result.returncode == 2
    assert result.stdout.strip() == "stop time 2020-01-01 00:00 has passed"
