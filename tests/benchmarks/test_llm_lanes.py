"""The LLM-stage lane runner (`benchmarks/llm_lanes.sh`): its stop time is a clock time, so a
time earlier than now means tomorrow, as a user starting lanes before midnight means; each
method's lanes run that method's stage script."""

import datetime
import os
import subprocess
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def run_lanes(*args: str, logs: Path, script: str = "llm_lanes.sh") -> subprocess.CompletedProcess:
    # `echo` stands in for Python: each shard prints its command line and "finishes" at once,
    # so the lane ends after one go.
    env = {**os.environ, "LANES": "1", "LOGS": str(logs), "PYTHON": "echo"}
    return subprocess.run(
        ["bash", str(BENCHMARKS / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def an_hour_ago() -> str:
    return (datetime.datetime.now() - datetime.timedelta(hours=1)).strftime("%H:%M")


def test_a_clock_time_already_past_today_means_tomorrow(tmp_path):
    result = run_lanes("llmser", "office", an_hour_ago(), logs=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    log = (tmp_path / "llmser-office-lane0.log").read_text()
    assert "shard 0/1 for 1800 s" in log  # ~23 h away, so a full restart period


def test_a_full_date_in_the_past_is_refused_in_one_line(tmp_path):
    result = run_lanes("llmser", "office", "2020-01-01 00:00", logs=tmp_path)
    assert result.returncode == 2
    assert result.stdout.strip() == "stop time 2020-01-01 00:00 has passed"


def test_each_method_runs_its_own_stage_script_on_one_thread_per_shard(tmp_path):
    run_lanes("sracl", "beauty", an_hour_ago(), logs=tmp_path)
    run_lanes("llmser", "office", an_hour_ago(), "--stage-ablation", "wo_snf", logs=tmp_path)
    sracl = (tmp_path / "sracl-beauty-lane0.log").read_text()
    assert (
        "benchmarks/sracl.py --datasets beauty --llm-stage --llm-kinds item,user "
        "--llm-threads 1 --llm-shard 0/1"
    ) in sracl
    llmser = (tmp_path / "llmser-office-lane0.log").read_text()
    assert (
        "benchmarks/llmser.py --stage office --stage-ablation wo_snf --llm-threads 1 "
        "--llm-shard 0/1"
    ) in llmser


def test_an_unknown_method_is_refused_in_one_line(tmp_path):
    result = run_lanes("sasrec", "office", an_hour_ago(), logs=tmp_path)
    assert result.returncode == 2
    assert result.stdout.strip().startswith("unknown method 'sasrec'; usage: llm_lanes.sh")


def test_the_older_llmser_command_still_runs_llmser_lanes(tmp_path):
    # notes of earlier sessions give `llmser_lanes.sh DATASET HH:MM`
    run_lanes("office", an_hour_ago(), logs=tmp_path, script="llmser_lanes.sh")
    log = (tmp_path / "llmser-office-lane0.log").read_text()
    assert "benchmarks/llmser.py --stage office --llm-threads 1 --llm-shard 0/1" in log
