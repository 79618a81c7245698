"""DuoRec: same-target supervised positives from training windows, dropout views, the loss."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from llmseqrec.data.prepare import load
from llmseqrec.enhancers.base import make_enhancer
from llmseqrec.training.batches import Batch, training_windows
from llmseqrec.training.losses import symmetric_info_nce
from llmseqrec.training.run import train_run
from llmseqrec.training.trainer import build_model


def _batch(tiny, n=32):
    split = tiny.split
    windows, users = training_windows(split.train_offsets, split.train_items, 20)
    rows = torch.from_numpy(windows[:n])
    return Batch(users=torch.from_numpy(users[:n]), inputs=rows[:, :-1], targets=rows[:, 1:])


def test_supervised_positive_has_the_same_target_and_is_another_user(home):
    tiny = load("tiny")
    enhancer = make_enhancer("duorec", {})
    enhancer.bind(tiny, 20, 0)
    batch = _batch(tiny, 200)
    targets = batch.targets[:, -1]
    rows, none = enhancer.same_target_rows(targets, batch.users)
    assert not none.any()
    split = tiny.split
    windows, users = training_windows(split.train_offsets, split.train_items, 20)
    counts = np.bincount(windows[:, -1], minlength=tiny.n_items + 2)
    for i in range(len(rows)):
        # the chosen row is a training window whose next item is the same target
        match = np.flatnonzero((windows[:, :-1] == rows[i].numpy()).all(1))
        assert any(windows[m, -1] == int(targets[i]) for m in match)
        if counts[int(targets[i])] > 1:  # someone else has this target: never oneself
            assert any(users[m] != int(batch.users[i]) for m in match)


def test_contrast_masks_same_target_negatives():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)
    assert symmetric_info_nce(a, b, 1.0, "dot", None) > 0
    # Every view shares one target: no negative is left, only the positive pair.
    assert torch.isclose(
        symmetric_info_nce(a, b, 1.0, "dot", torch.ones(6, dtype=torch.long)), torch.tensor(0.0)
    )
    distinct = torch.arange(6)
    assert torch.isclose(
        symmetric_info_nce(a, b, 1.0, "dot", distinct), symmetric_info_nce(a, b, 1.0, "dot", None)
    )


@pytest.mark.parametrize("mode", ["us_x", "us", "su"])
def test_loss_is_finite_for_every_mode(home, pcl_config, mode):
    tiny = load("tiny")
    enhancer = make_enhancer("duorec", {"mode": mode})
    model = build_model(pcl_config("duorec"), tiny, enhancer)
    enhancer.bind(tiny, 20, 0)
    model.train()
    batch = _batch(tiny)
    losses = enhancer.extra_loss(model, batch, model.encode(batch.inputs))
    assert set(losses) == {"cl"} and torch.isfinite(losses["cl"])
    losses["cl"].backward()


def test_dropout_view_differs_from_the_first_pass(home, pcl_config):
    tiny = load("tiny")
    model = build_model(pcl_config("duorec"), tiny)
    model.train()
    batch = _batch(tiny)
    assert not torch.allclose(model.encode(batch.inputs), model.encode(batch.inputs))


@pytest.mark.parametrize("model", ["sasrec", "gru4rec"])
def test_trains_end_to_end(home, pcl_config, model, device):
    result, directory = train_run(pcl_config("duorec", model, device), load("tiny"), progress=False)
    assert result["finished"]
    epochs = [json.loads(x) for x in (directory / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(e["cl"]) for e in epochs if e.get("event") == "epoch")
