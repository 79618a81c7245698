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
    monkeypatch.setattr(cllmrec, "staged", lambda *_: SimpleNamespace(metadata={}))
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


def test_the_report_covers_datasets_not_staged_on_this_machine(monkeypatch, tmp_path):
    # A lent GPU gets only the data its runs need: the report written there after a run used
    # to stop the process trying to prepare the others.
    monkeypatch.setattr(cllmrec, "read_result", lambda config: None)
    monkeypatch.setattr(cllmrec, "run_state", lambda config: "not run")
    monkeypatch.setattr(cllmrec, "COST", tmp_path / "absent.json")
    args = argparse.Namespace(
        data=str(tmp_path / "nothing-staged"), datasets=["ml-1m"], models=["lrurec"],
        variants=["cllmrec"], seeds=[42], epochs=None,
    )  # fmt: skip
    text = cllmrec.report(args, {})
    for dataset in cllmrec.DATASETS:
        assert f"### {dataset}, backbone lrurec" in text
    assert "Scoring step" in text  # kept in git, or "not run"


def test_sweep_points_are_reported_with_the_validation_figure_they_are_chosen_on(
    monkeypatch, tmp_path
):
    def read_result(config):
        options = config.enhancer
        if config.dataset != "beauty" or config.model != "lrurec":
            return None
        if config.method == "none":
            recall = 0.10
        elif options.get("alpha") == 0.5:
            recall = 0.12
        elif set(options) & set(cllmrec.SWEEPS):
            return None  # other sweep points not run yet
        else:
            recall = 0.11  # CLLMRec with the paper's defaults
        return {"valid": {"recall@10": recall + 0.01}, "best_epoch": 4, "epochs_run": 9,
                "test": {"recall@10": recall, "ndcg@10": recall / 2}}  # fmt: skip

    monkeypatch.setattr(cllmrec, "read_result", read_result)
    lines = cllmrec.sweep_section(argparse.Namespace(epochs=None), {"similarity": "cosine"})
    text = "\n".join(lines)
    assert "## Sweep: beauty, CLLMRec on lrurec, seed 42" in text
    assert "## Sweep: ml-1m" not in text  # no finished point there: no table
    assert "| paper defaults | 0.1200 | 0.1100 | 0.0550 | +0.0100 | 5of9 |" in text
    # the backbone's own validation figure is the bar a sweep point has to clear
    assert "| backbone (= w/o CL), for reference | 0.1100 | 0.1000 | 0.0500 | - | 5of9 |" in text
    assert "| alpha = 0.5 | 0.1300 | 0.1200 | 0.0600 | +0.0200 | 5of9 |" in text
    assert "| w_i = 0.25 | not run | | | | |" in text
    configs = cllmrec.sweep_configs("beauty", "lrurec", 42, None, {"similarity": "cosine"})
    assert len({c.run_hash() for *_, c in configs}) == sum(map(len, cllmrec.SWEEPS.values()))


def test_an_interrupted_scoring_step_travels_in_chunks_until_it_finishes(tmp_path):
    from run_records import keep_artefact, restore_artefacts

    cache, kept = tmp_path / "cache", tmp_path / "artefacts"
    directory = cache / "ml-1m" / "cllmrec" / "6210"
    (directory / "chunks").mkdir(parents=True)
    (directory / "options.json").write_text("{}")
    (directory / "cost.json").write_text('{"users_scored": 1000}')
    (directory / "chunks" / "chunk-00000.npy").write_bytes(b"first thousand users")
    assert cllmrec.keep_partial_scoring(directory, cache, kept) == 3

    elsewhere = tmp_path / "elsewhere"  # the next machine resumes from the kept chunk
    assert restore_artefacts(elsewhere, kept) == 3
    moved = elsewhere / "ml-1m" / "cllmrec" / "6210"
    assert (moved / "chunks" / "chunk-00000.npy").read_bytes() == b"first thousand users"

    (moved / "scores.npy").write_bytes(b"all users")  # finished there: only the scores stay
    keep_artefact(moved, elsewhere, cllmrec.SCORING_FILES, kept)
    assert sorted(p.name for p in (kept / "ml-1m" / "cllmrec" / "6210").rglob("*")) == [
        "cost.json", "options.json", "scores.npy"
    ]  # fmt: skip


def test_the_setting_chosen_on_validation_is_confirmed_on_every_seed(monkeypatch):
    # alpha .9 has the best validation figure and the worst test figure of the finished points:
    # the choice must follow validation, and its test rows must be paired with the backbone.
    def read_result(config):
        options, seed = config.enhancer, config.train.seed
        if config.method == "none":
            valid, test = 0.100, 0.090 + seed / 10_000
        elif options.get("alpha") == 0.9:
            if seed == 44:
                return None  # not confirmed on this seed yet
            valid, test = 0.115, 0.085 + seed / 10_000
        elif options.get("alpha") == 0.5:
            valid, test = 0.105, 0.095
        elif set(options) & set(cllmrec.SWEEPS):
            return None
        else:
            valid, test = 0.110, 0.090
        return {"valid": {"recall@10": valid}, "test": {"recall@10": test, "ndcg@10": test / 2}}

    monkeypatch.setattr(cllmrec, "read_result", read_result)
    choice = cllmrec.sweep_choice("beauty", "sasrec", None, {"similarity": "cosine"})
    assert choice["label"] == "alpha = 0.9"
    assert choice["missing"] == sum(map(len, cllmrec.SWEEPS.values())) - 2
    text = "\n".join(
        cllmrec.confirmation_section("beauty", "sasrec", None, {"similarity": "cosine"})
    )
    assert "**Chosen on seed-42 validation: alpha = 0.9** (Recall@10 0.1150; provisional" in text
    assert "| 42 | 0.0942 / 0.0471 | 0.0892 / 0.0446 | -0.0050 |" in text
    assert "| 44 | 0.0944 / 0.0472 | not run | |" in text
    assert "Paired over seeds: Δ -0.0050" in text
    assert "(n=2)" in text
