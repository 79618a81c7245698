"""Trainer behaviour: windows, every backbone trains, padding-trim invariance, resume, hooks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from llmseqrec.enhancers.base import Enhancer
from llmseqrec.models.registry import BACKBONES, _load_all
from llmseqrec.training.batches import iterate_batches, left_pad, training_windows
from llmseqrec.training.config import build_run_config
from llmseqrec.training.run import Run, train_run
from llmseqrec.training.trainer import Trainer

_load_all()
ALL_MODELS = sorted(BACKBONES)


def test_left_pad_and_windows():
    offsets = np.array([0, 3, 8])
    items = np.array([1, 2, 3, 4, 5, 6, 7, 8])
    assert left_pad(offsets, items, 4).tolist() == [[0, 1, 2, 3], [5, 6, 7, 8]]
    last, users = training_windows(offsets, items, 2, "last")
    assert last.tolist() == [[1, 2, 3], [6, 7, 8]] and users.tolist() == [0, 1]
    every, users = training_windows(offsets, items, 2, "all")
    assert every.tolist() == [[1, 2, 3], [6, 7, 8], [4, 5, 6]]
    assert users.tolist() == [0, 1, 1]


def test_length_buckets_cover_every_row_once_and_cut_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 41, size=1000)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    items = rng.integers(1, 50, size=offsets[-1])
    windows, users = training_windows(offsets, items, 40, "last")

    def run(bucket: bool) -> tuple[list[int], int]:
        seen, cells = [], 0
        for batch in iterate_batches(windows, users, 32, np.random.default_rng(1), bucket=bucket):
            seen += batch.users.tolist()
            cells += batch.inputs.numel()
        return seen, cells

    plain, plain_cells = run(False)
    bucketed, bucketed_cells = run(True)
    assert sorted(bucketed) == sorted(plain) == list(range(1000))
    assert bucketed_cells < 0.7 * plain_cells
    assert run(True) == (bucketed, bucketed_cells)  # seeded


@pytest.mark.parametrize("model", ALL_MODELS)
def test_every_backbone_trains_and_padding_trim_is_invisible(tiny, tmp_path, model):
    config = build_run_config(
        "tiny",
        model,
        overrides={"train": {"epochs": 1}, "backbone": {"max_len": 20, "hidden_size": 16}},
    )
    result, directory = train_run(config, tiny, root=tmp_path, progress=False)
    assert result["finished"] and np.isfinite(result["test"]["ndcg@10"])
    run = Run.load(directory, tiny)
    histories = torch.from_numpy(
        left_pad(tiny.split.train_offsets, tiny.split.train_items, 20, np.arange(8))
    )
    trimmed = histories[:, 5:]
    with torch.no_grad():
        full = run.model.score_last(histories)
        short = run.model.score_last(trimmed[:, -15:]) if (histories[:, :5] == 0).all() else full
    assert torch.allclose(full, short, atol=1e-4)


def test_lengths_over_max_len_are_truncated_to_recent(tiny, tmp_path):
    config = build_run_config(
        "tiny", "sasrec", overrides={"train": {"epochs": 1}, "backbone": {"max_len": 5}}
    )
    trainer = Trainer(config, tiny, tmp_path / "r", progress=False)
    assert trainer.windows.shape[1] == 6
    user = int(np.argmax(tiny.split.train_lengths))
    row = trainer.windows[list(trainer.window_users).index(user)]
    assert row.tolist() == tiny.split.train_sequence(user)[-6:].tolist()


def _metrics(directory):
    return json.loads((directory / "metrics.json").read_text())


def test_pause_and_resume_reproduces_uninterrupted_run(tiny, tmp_path):
    overrides = {
        "train": {"epochs": 4, "patience": 10},
        "backbone": {"max_len": 20, "hidden_size": 16},
    }
    straight = build_run_config("tiny", "sasrec", overrides={**overrides, "name": "straight"})
    result_a, _ = train_run(straight, tiny, root=tmp_path, progress=False)
    paused = build_run_config(
        "tiny",
        "sasrec",
        overrides={
            **overrides,
            "name": "paused",
            "train": {**overrides["train"], "max_minutes": 1e-6},
        },
    )
    first, directory = train_run(paused, tiny, root=tmp_path, progress=False)
    assert first["finished"] is False and first["epoch"] == 0
    resumed = build_run_config("tiny", "sasrec", overrides={**overrides, "name": "paused"})
    result_b, _ = train_run(resumed, tiny, root=tmp_path, progress=False)
    assert result_b["finished"]
    assert result_b["test"]["ndcg@10"] == pytest.approx(result_a["test"]["ndcg@10"], abs=1e-6)
    events = [
        json.loads(line)["event"] for line in (directory / "log.jsonl").read_text().splitlines()
    ]
    assert "resume" in events and events.count("epoch") == 4


def test_resume_after_a_kill_between_log_and_state_logs_each_epoch_once(tiny, tmp_path):
    """The kill can land after an epoch's log line and before its state is saved: the epoch
    is redone on resume and must not appear twice (nor a torn half line stay)."""
    overrides = {
        "name": "torn",
        "train": {"epochs": 3, "patience": 10, "max_minutes": 1e-6},
        "backbone": {"max_len": 20, "hidden_size": 16},
    }
    first, directory = train_run(
        build_run_config("tiny", "sasrec", overrides=overrides), tiny, root=tmp_path, progress=False
    )
    assert first["finished"] is False and first["epoch"] == 0
    log_path = directory / "log.jsonl"
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    epoch_zero = next(line for line in lines if line["event"] == "epoch")
    with open(log_path, "a") as handle:  # epoch 1 logged, its state never written
        handle.write(json.dumps({**epoch_zero, "epoch": 1}) + "\n" + '{"event": "epo')
    del overrides["train"]["max_minutes"]
    result, _ = train_run(
        build_run_config("tiny", "sasrec", overrides=overrides), tiny, root=tmp_path, progress=False
    )
    assert result["finished"]
    epochs = [
        json.loads(line)["epoch"]
        for line in log_path.read_text().splitlines()
        if json.loads(line)["event"] == "epoch"
    ]
    assert epochs == [0, 1, 2]


def test_killed_process_resumes_from_last_epoch(home):
    """Kill ``llmseqrec train`` with SIGKILL mid-run, rerun the same command: it continues."""
    command = [sys.executable, "-m", "llmseqrec.cli", "train", "--dataset", "tiny", "--model", "sasrec",
               "--set", "train.epochs=8", "--set", "backbone.max_len=20", "--set", "train.patience=10", "--name", "killed"]  # fmt: skip
    env = {**os.environ, "LLMSEQREC_HOME": str(home)}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    log = home / "runs" / "tiny" / "none-sasrec" / "killed" / "log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:
        if log.exists() and log.read_text().count('"event": "epoch"') >= 2:
            break
        assert process.poll() is None, "training ended before it could be killed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = log.read_text().count('"event": "epoch"')
    assert 2 <= done_before < 8, "the process should be killed mid-run"
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    text = log.read_text()
    assert '"event": "resume"' in text
    assert text.count('"event": "epoch"') == 8
    reference = [sys.executable, "-m", "llmseqrec.cli", "train", "--dataset", "tiny", "--model", "sasrec",
                 "--set", "train.epochs=8", "--set", "backbone.max_len=20", "--set", "train.patience=10", "--name", "straight"]  # fmt: skip
    assert subprocess.run(reference, env=env, capture_output=True, timeout=300).returncode == 0
    a = _metrics(home / "runs" / "tiny" / "none-sasrec" / "killed")
    b = _metrics(home / "runs" / "tiny" / "none-sasrec" / "straight")
    assert a["test"]["ndcg@10"] == pytest.approx(b["test"]["ndcg@10"], abs=1e-6)


class CountingHook(Enhancer):
    name = "counting-test"

    def __init__(self, options=None):
        super().__init__(options)
        self.calls = 0
        self.weight = float(self.options.get("weight", 0.0))

    def augment_batch(self, batch, step):
        self.calls += 1
        batch.weights = torch.ones(len(batch.users))
        return batch

    def extra_loss(self, model, batch, states):
        noise = torch.randn(1, generator=self.generator)  # own RNG: never touches the global one
        return {"extra": self.weight * (states.pow(2).mean() + noise.sum() * 0)}


def test_zero_weight_hook_trains_exactly_like_the_backbone(tiny, tmp_path):
    overrides = {"train": {"epochs": 2}, "backbone": {"max_len": 20, "hidden_size": 16}}
    plain = Trainer(
        build_run_config("tiny", "sasrec", overrides={**overrides, "name": "a"}),
        tiny,
        tmp_path / "a",
        progress=False,
    )
    hooked_enhancer = CountingHook({"weight": 0.0})
    hooked = Trainer(
        build_run_config("tiny", "sasrec", overrides={**overrides, "name": "b"}),
        tiny,
        tmp_path / "b",
        hooked_enhancer,
        progress=False,
    )
    ra, rb = plain.fit(), hooked.fit()
    assert hooked_enhancer.calls > 0
    assert ra["test"] == pytest.approx(rb["test"])


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_learns_far_above_most_popular(tiny, tmp_path, loss):
    from llmseqrec.evaluation.baselines import MostPopular
    from llmseqrec.evaluation.metrics import metrics_from_ranks
    from llmseqrec.evaluation.ranking import rank_users

    config = build_run_config(
        "tiny",
        "sasrec",
        overrides={
            "train": {"epochs": 15, "loss": loss, "lr": 3e-3},
            "backbone": {"max_len": 20, "hidden_size": 32},
        },
    )
    result, _ = train_run(config, tiny, root=tmp_path, progress=False)
    popular = metrics_from_ranks(rank_users(MostPopular(tiny), tiny, config.eval, "test", 20))
    assert result["test"]["ndcg@10"] > 2 * popular["ndcg@10"]


def test_run_records_enhancer_defaults_and_refuses_changed_ones(home, monkeypatch):
    from llmseqrec.data.prepare import load
    from llmseqrec.enhancers.cl4srec import CL4SRec
    from llmseqrec.errors import ConfigError

    overrides = {"backbone": {"max_len": 10}, "train": {"epochs": 1, "threads": 1}}
    config = build_run_config("tiny", "sasrec", "cl4srec", "p-cl", overrides)
    _, directory = train_run(config, load("tiny"), progress=False)
    recorded = json.loads((directory / "enhancer.json").read_text())
    assert recorded["similarity"] == "cosine" and recorded["lam"] == 0.1
    # The same command after a default changed names the same directory: it must not reuse it.
    resolved = CL4SRec.resolved_options
    monkeypatch.setattr(
        CL4SRec, "resolved_options", lambda self: {**resolved(self), "similarity": "dot"}
    )
    with pytest.raises(ConfigError, match="similarity"):
        train_run(config, load("tiny"), progress=False)


def test_option_added_later_keeps_recorded_runs_when_its_default_does_what_they_did(
    home, monkeypatch
):
    """A run recorded before an option existed is still reused at the option's neutral value,
    and refused at any other (LLMSeR's arv_order broke every recorded LLMSeR run before this)."""
    from llmseqrec.data.prepare import load
    from llmseqrec.enhancers.llmser import LLMSeR
    from llmseqrec.errors import ConfigError

    overrides = {
        "backbone": {"max_len": 10},
        "train": {"epochs": 1, "threads": 1},
        "enhancer": {"llm": False, "offline_epochs": 1, "offline_patience": 1},
    }
    config = build_run_config("tiny", "sasrec", "llmser", "p-s100", overrides)
    result, directory = train_run(config, load("tiny"), progress=False)
    record = directory / "enhancer.json"
    older = json.loads(record.read_text())
    assert older.pop("arv_order") == "ranked"
    record.write_text(json.dumps(older))  # as recorded before the option existed
    again, _ = train_run(config, load("tiny"), progress=False)
    assert again == result
    resolved = LLMSeR.resolved_options
    monkeypatch.setattr(
        LLMSeR, "resolved_options", lambda self: {**resolved(self), "arv_order": "reversed"}
    )
    with pytest.raises(ConfigError, match="arv_order"):
        train_run(config, load("tiny"), progress=False)


def test_item_bias_head_matches_plain_logits_and_is_learned(tiny, tmp_path):
    """The bias rides as an extra column: loss and gradients equal CE over ``h @ E.T + b``."""
    import torch.nn.functional as F

    from llmseqrec.models.registry import build_backbone
    from llmseqrec.training.losses import fused_softmax_ce
    from llmseqrec.training.recommender import Recommender

    torch.manual_seed(0)
    model = Recommender(build_backbone("lrurec", 30, {"max_len": 8, "item_bias": True}))
    with torch.no_grad():
        model.backbone.item_score_bias.normal_()
    hidden = torch.randn(11, model.item_table().shape[1], requires_grad=True)
    targets = torch.randint(1, 31, (11,))
    augmented, table = model.head(hidden)
    fused = fused_softmax_ce(augmented, table[1:], targets - 1)
    fused.backward()
    fused_grads = (hidden.grad.clone(), model.backbone.item_score_bias.grad.clone())
    hidden.grad = None
    model.zero_grad()
    logits = hidden @ model.item_table()[1:].T + model.item_bias()[1:]
    plain = F.cross_entropy(logits, targets - 1)
    plain.backward()
    torch.testing.assert_close(fused, plain)
    torch.testing.assert_close(fused_grads[0], hidden.grad)
    torch.testing.assert_close(fused_grads[1], model.backbone.item_score_bias.grad)

    for loss in ("ce", "bce"):
        config = build_run_config(
            "tiny",
            "sasrec",
            overrides={
                "train": {"epochs": 2, "loss": loss},
                "backbone": {"max_len": 20, "hidden_size": 16, "item_bias": True},
            },
        )
        result, directory = train_run(config, tiny, root=tmp_path / loss, progress=False)
        run = Run.load(directory, tiny)
        bias = run.model.item_bias()
        assert result["finished"] and bias is not None and bias[1:].abs().sum() > 0
        histories = torch.from_numpy(
            left_pad(tiny.split.train_offsets, tiny.split.train_items, 20, np.arange(4))
        )
        with torch.no_grad():
            rep = run.model.sequence_representation(histories)
            expected = rep @ run.model.item_table().T + bias
            torch.testing.assert_close(run.model.score_last(histories), expected)
