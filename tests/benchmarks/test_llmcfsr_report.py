"""The LLM-CFSR report covers the whole grid whichever rows the invocation trained."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import llmcfsr  # noqa: E402


def test_a_run_for_one_row_reports_every_row_dataset_and_seed(monkeypatch, tmp_path):
    # A run for the llmcfsr row alone used to rewrite the report without the backbone row and
    # without Yelp, dropping figures other runs had finished.
    asked = []

    def read_result(config):
        asked.append((config.dataset, config.protocol, config.method, config.train.seed))

    def no_data(*_):
        raise FileNotFoundError

    monkeypatch.setattr(llmcfsr, "read_result", read_result)
    monkeypatch.setattr(llmcfsr, "prepare_preset", no_data)
    monkeypatch.setattr(llmcfsr, "timing_lines", lambda datasets: ([], 0))
    args = argparse.Namespace(
        datasets=["beauty"], protocols=["p-cl"], rows=["llmcfsr"], seeds=[42], model="sasrec",
        epochs=None, esr_sim_per_step=None, max_minutes=None,
    )  # fmt: skip
    text = llmcfsr.report(args, tmp_path)
    for dataset in llmcfsr.DATASETS:
        for protocol in llmcfsr.PROTOCOLS:
            assert f"## {dataset} under `{protocol}`" in text
    assert "| sasrec | not run |" in text and "| LLM-ESR (causal) | not run |" in text
    assert {seed for *_, seed in asked} == set(llmcfsr.SEEDS)
    assert args.rows == ["llmcfsr"]  # the caller's namespace is left as it was
