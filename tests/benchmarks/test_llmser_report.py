"""The LLMSeR report covers the whole grid, whichever part an invocation trained."""

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import llmser  # noqa: E402


def test_a_run_for_one_dataset_reports_every_dataset_and_seed(monkeypatch):
    # '--datasets office --seeds 42' used to write a report with Office seed 42 only.
    result = {"test": {"hr@10": 0.7, "ndcg@10": 0.4, "hr@20": 0.8, "ndcg@20": 0.5}, "best_epoch": 3}
    asked = []

    def finished(config):
        asked.append((config.dataset, config.train.seed))
        wanted = (config.dataset, config.model, config.method, config.train.seed)
        return result if wanted == ("yelp", "gru4rec", "none", 42) else None

    monkeypatch.setattr(llmser, "finished", finished)
    monkeypatch.setattr(llmser, "stage_section", lambda args, datasets: ([], 0))
    monkeypatch.setattr(llmser, "kept_section", lambda name, lines, seen: lines)
    args = argparse.Namespace(
        datasets=["office"], models=["sasrec"], seeds=[42], epochs=None, llm_users=None,
        sweeps=False,
    )  # fmt: skip
    text = llmser.report(args, lambda name: SimpleNamespace(metadata={}))
    assert "## yelp, `p-s100`" in text and "| gru4rec | None | 0.7000 |" in text
    assert "- datasets office, beauty" in text  # no finished run there
    assert {seed for dataset, seed in asked if dataset == "office"} == set(llmser.SEEDS)


def test_finished_sweep_rows_stay_in_a_report_written_without_sweeps(monkeypatch):
    result = {"test": {"hr@10": 0.7, "ndcg@10": 0.4, "hr@20": 0.8, "ndcg@20": 0.5}, "best_epoch": 3}
    swept = dict(llmser.llmser_options(None, llm=False, n_pseudo=2))

    def finished(config):
        same = config.dataset == "office" and dict(config.enhancer) == swept
        return result if same and config.train.seed == 42 else None

    monkeypatch.setattr(llmser, "finished", finished)
    monkeypatch.setattr(llmser, "stage_section", lambda args, datasets: ([], 0))
    monkeypatch.setattr(llmser, "kept_section", lambda name, lines, seen: lines)
    args = argparse.Namespace(
        datasets=["office"], models=["sasrec"], seeds=None, epochs=None, llm_users=None,
        sweeps=False,
    )  # fmt: skip
    text = llmser.report(args, lambda name: SimpleNamespace(metadata={}))
    assert "| sasrec | LLM-free M=2 | 0.7000 |" in text
    assert "LLM-free M=4" not in text  # unfinished sweep rows only with --sweeps


def test_llm_rows_name_their_chat_backend_and_llm_free_rows_keep_their_hash():
    assert "chat" not in llmser.llmser_options(None, llm=False)  # finished runs stay matched
    assert llmser.llmser_options(None)["chat"]["backend"] == "transformers"
    assert llmser.llmser_options(8)["chat"]["dtype"] == "bfloat16"


def test_stage_build_time_comes_from_the_chunks_not_from_the_call_that_read_them():
    read_only = {"prepare_wall_seconds_this_call": 1.2, "chunks": 10}
    assert llmser.build_time({**read_only, "build_seconds": 640.0, "chunks_timed": 10}) == (
        "chunks built in 640 s of one process"
    )
    assert "at least 64 s" in llmser.build_time(
        {**read_only, "build_seconds": 64.0, "chunks_timed": 1}
    )
    untimed = llmser.build_time(read_only)
    assert untimed.startswith("build time not recorded") and "read it in 1 s" in untimed
