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
    monkeypatch.setattr(llmcfsr, "timing_lines", lambda datasets: [])
    # Runs in progress under the real runs/ would show as unfinished rows: none here.
    monkeypatch.setattr(llmcfsr, "RUNS", tmp_path / "runs")
    args = argparse.Namespace(
        datasets=["beauty"], protocols=["p-cl"], rows=["llmcfsr"], seeds=[42], model="sasrec",
        epochs=None, esr_sim_per_step=None, max_minutes=None,
    )  # fmt: skip
    text = llmcfsr.report(args, tmp_path)
    for dataset in llmcfsr.DATASETS:
        for protocol in llmcfsr.PROTOCOLS:
            assert f"## {dataset} under `{protocol}`" in text
    assert "| sasrec | not run |" in text and "| LLM-ESR (causal) | not run |" in text
    header = next(line for line in text.splitlines() if line.startswith("| row |"))
    assert "vs LLM-ESR" in header  # LLM-CFSR is judged against its baseline, not only SASRec
    not_run = next(line for line in text.splitlines() if "| sasrec | not run" in line)
    assert not_run.count("|") == header.count("|")
    assert {seed for *_, seed in asked} == set(llmcfsr.SEEDS)
    assert args.rows == ["llmcfsr"]  # the caller's namespace is left as it was


def test_semantic_stage_timings_survive_a_machine_without_the_cache(monkeypatch, tmp_path):
    # The timing table read cache/ only: on a new machine it said 'not run yet' although the
    # stage's fine-tuning time had been measured. Every distinct measurement is now kept.
    cache, store = tmp_path / "cache", tmp_path / "kept"
    monkeypatch.setattr(llmcfsr.paths, "cache_root", lambda: cache)
    artefact = cache / "beauty" / "semantic" / "semantic-abc"
    artefact.mkdir(parents=True)
    (artefact / "timing.json").write_text('{"embed_seconds": 92}')
    assert [t for _, t in llmcfsr.kept_measurements("beauty", "timing", store)] == [
        {"embed_seconds": 92}
    ]
    (artefact / "timing.json").write_text('{"embed_seconds": 157}')  # measured again
    assert len(llmcfsr.kept_measurements("beauty", "timing", store)) == 2
    (artefact / "timing.json").unlink()  # a new machine: nothing in cache/
    kept = llmcfsr.kept_measurements("beauty", "timing", store)
    assert sorted(t["embed_seconds"] for _, t in kept) == [92, 157]
    assert {name for name, _ in kept} == {"semantic-abc"}
