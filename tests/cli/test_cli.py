"""The command line: one-line errors with exit code 1, and the main commands end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmseqrec.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:")
    return lines[0]


@pytest.mark.parametrize(
    "content, needle",
    [
        (None, "not found"),
        ("", "empty"),
        ("1 2 x3\n", "line 1"),
        ("1,2,3\n", "line 1"),
        ("1 2 3\n2 4 5\n1 6 7\n", "listed twice"),
    ],
    ids=["missing", "empty", "non-integer", "separator", "duplicate-user"],
)
def test_prepare_bad_input_is_one_line_and_leaves_no_dataset(
    tmp_path, monkeypatch, content, needle
):
    monkeypatch.setenv("LLMSEQREC_HOME", str(tmp_path))
    path = tmp_path / "seq.txt"
    if content is not None:
        path.write_text(content)
    result = invoke("prepare", "--format", "sequence", "--path", str(path), "--name", "bad")
    line = one_line_error(result)
    assert "seq.txt" in line and needle in line
    assert (
        not list((tmp_path / "cache").rglob("meta.json")) if (tmp_path / "cache").exists() else True
    )


def test_prepare_missing_column_names_the_field(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMSEQREC_HOME", str(tmp_path))
    table = tmp_path / "inter.csv"
    table.write_text("user_id,product\n1,2\n")
    line = one_line_error(
        invoke("prepare", "--format", "table", "--path", str(table), "--name", "t")
    )
    assert "inter.csv" in line and "item_id" in line


def test_unknown_model_and_bad_override_are_one_line(home):
    assert "unknown model" in one_line_error(
        invoke("train", "--dataset", "tiny", "--model", "nope")
    )
    assert "train.lr" in one_line_error(
        invoke("train", "--dataset", "tiny", "--set", "train.lr=-1")
    )
    assert "not prepared" in one_line_error(invoke("train", "--dataset", "absent"))


def test_prepare_datasets_show(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMSEQREC_HOME", str(tmp_path))
    path = tmp_path / "seq.txt"
    path.write_text("1 1 2 3 4\n2 2 3 4 5\n3 1 1 2\n")
    titles = tmp_path / "titles.tsv"
    titles.write_text("item_id\ttitle\n1\tCafé au lait\n2\tTea {fancy}\n3\tMilk\n")
    result = invoke(
        "prepare",
        "--format",
        "sequence",
        "--path",
        str(path),
        "--item-text",
        str(titles),
        "--name",
        "mini",
    )
    assert result.exit_code == 0 and "3 users" in result.output
    listing = invoke("datasets")
    assert "mini" in listing.output
    shown = invoke("show", "mini", "--user", "1")
    assert "Café au lait" in shown.output and "test" in shown.output
    assert "not in dataset" in one_line_error(invoke("show", "mini", "--user", "99"))


def test_train_evaluate_recommend(home: Path):
    train = ("train", "--dataset", "tiny", "--model", "gru4rec", "--protocol", "p-cl")
    train += ("--set", "train.epochs=2", "--name", "cli")
    result = invoke(*train)
    assert result.exit_code == 0, result.output
    assert "protocol p-cl" in result.output and "history NOT masked" in result.output
    run_dir = home / "runs" / "tiny" / "none-gru4rec" / "cli"
    for name in ("config.yaml", "metrics.json", "log.jsonl", "checkpoint.pt", "state.pt"):
        assert (run_dir / name).exists(), name
    again = invoke(*train)
    assert again.exit_code == 0 and "protocol p-cl" in again.output
    evaluated = invoke("evaluate", "--run", str(run_dir))
    assert evaluated.exit_code == 0 and "ndcg@10" in evaluated.output
    rec = invoke("recommend", "--run", str(run_dir), "--user", "1", "-k", "3")
    assert rec.exit_code == 0 and "No." in rec.output
    rec = invoke("recommend", "--run", str(run_dir), "--history", "1 2 3", "-k", "3")
    assert rec.exit_code == 0
    assert "unknown item" in one_line_error(
        invoke("recommend", "--run", str(run_dir), "--history", "999999")
    )


def test_config_round_trip(home: Path):
    from llmseqrec.training.config import RunConfig, build_run_config

    config = build_run_config(
        "tiny",
        "bert4rec",
        protocol="p-s100",
        overrides=["train.lr=0.002", "backbone.mask_prob=0.3"],
    )
    assert RunConfig.from_yaml(config.to_yaml()) == config
    assert config.eval.ranking == "sampled" and config.train.loss == "bce"


def test_quickstart_runs(home: Path):
    result = invoke("quickstart", "--epochs", "2")
    assert result.exit_code == 0, result.output
    assert (
        "most popular" in result.output
        and "SASRec" in result.output
        and "run directory" in result.output
    )


def test_ablation_switch_sets_the_method_options(home: Path):
    from llmseqrec.enhancers.base import ablation_overrides, enhancer_class
    from llmseqrec.training.config import build_run_config

    error = one_line_error(
        invoke("train", "--dataset", "tiny", "--method", "cllmrec", "--ablation", "nope")
    )
    assert "wo_llm" in error and "nope" in error
    overrides = ablation_overrides("cllmrec", "wo_llm")
    config = build_run_config("tiny", "lrurec", "cllmrec", None, overrides)
    assert config.enhancer == {"crops": "random"}
    # Every declared ablation row validates against its method's options.
    for method in ("cllmrec", "sracl", "llmser", "llmcfsr"):
        for row in enhancer_class(method).ablations:
            config = build_run_config(
                "tiny", "sasrec", method, None, ablation_overrides(method, row)
            )
            enhancer_class(method)(config.enhancer)


SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "ml-1m").is_dir(), reason="staged ML-1M not found")
def test_prepare_preset_applies_its_published_filtering(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMSEQREC_HOME", str(tmp_path))
    args = ("prepare", "--preset", "ml-1m-sc5", "--path", str(SHARED))
    result = invoke(*args, "--name", "lru")
    assert result.exit_code == 0 and "3,416 items" in result.output, result.output
    unfiltered = invoke(*args, "--name", "all", "--kcore-item", "0")
    assert "3,706 items" in unfiltered.output, unfiltered.output
