"""The CLLMRec report covers the whole grid whichever part the invocation trained."""

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import cllmrec  # noqa: E402


def test_a_run_for_one_model_reports_every_model_dataset_and_seed(monkeypatch, tmp_path):
    # `--models lrurec --seeds 1` used to rewrite the report without the SASRec rows.
    asked = []

    def read_result(config):
        asked.append((config.dataset, config.model, config.train.seed))

    monkeypatch.setattr(cllmrec, "read_result", read_result)
    monkeypatch.setattr(cllmrec, "run_state", lambda config: "not run")
    monkeypatch.setattr(cllmrec, "prepare_preset", lambda *_: SimpleNamespace(metadata={}))
    monkeypatch.setattr(cllmrec, "scoring_cost", lambda *_: None)
    monkeypatch.setattr(cllmrec, "COST", tmp_path / "absent.json")
    args = argparse.Namespace(
        data=str(tmp_path), datasets=["beauty"], models=["lrurec"], variants=["cllmrec"],
        seeds=[42], epochs=None,
    )  # fmt: skip
    text = cllmrec.report(args, {})
    for dataset in cllmrec.DATASETS:
        for model in cllmrec.MODELS:
            assert f"### {dataset}, backbone {model}" in text
    assert {(d, m) for d, m, _ in asked} == {
        (d, m) for d in cllmrec.DATASETS for m in cllmrec.MODELS
    }
    assert {seed for *_, seed in asked} == set(cllmrec.SEEDS)
    assert args.models == ["lrurec"]
