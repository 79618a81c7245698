"""CL4SRec: views, the mask row added to causal backbones, the loss, training on two backbones."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from llmseqrec.data.prepare import load
from llmseqrec.enhancers.base import make_enhancer
from llmseqrec.enhancers.cl4srec import Cl4srecOptions, augment
from llmseqrec.errors import ConfigError
from llmseqrec.training.batches import Batch, left_pad
from llmseqrec.training.run import train_run
from llmseqrec.training.trainer import build_model


def test_views_use_one_operator_per_row_and_stay_left_padded():
    gen = torch.Generator().manual_seed(0)
    rows = torch.arange(1, 201).view(20, 10)
    rows[:, :3] = 0
    opts = Cl4srecOptions()
    view = augment(rows, ["crop", "mask", "reorder"], opts, 999, gen)
    assert view.shape == rows.shape
    for original, new in zip(rows.tolist(), view.tolist(), strict=True):
        real = [i for i in original if i]
        got = [i for i in new if i]
        assert new[: len(new) - len(got)] == [0] * (len(new) - len(got))  # left-padded
        if 999 in got:  # mask: same length, only masked positions differ
            assert len(got) == len(real)
        elif len(got) < len(real):  # crop: a contiguous run of ceil(0.6 n)
            assert len(got) == int(np.ceil(0.6 * len(real)))
            start = real.index(got[0])
            assert real[start : start + len(got)] == got
        else:  # reorder (or a mask that hit nothing): same multiset
            assert sorted(got) == sorted(real)


def test_mask_row_is_added_to_causal_backbones_without_touching_scores(home, pcl_config):
    tiny = load("tiny")
    config = pcl_config("cl4srec")
    enhancer = make_enhancer("cl4srec", {})
    torch.manual_seed(0)
    plain = build_model(config, tiny)
    torch.manual_seed(0)
    wrapped = build_model(config, tiny, enhancer)
    assert enhancer.mask_token == tiny.n_items + 1
    assert wrapped.backbone.item_embedding.num_embeddings == tiny.n_items + 2
    assert torch.equal(wrapped.item_table(), plain.item_table())  # scoring matrix unchanged
    rows = torch.tensor([[0, 3, tiny.n_items + 1, 4]])
    assert wrapped.encode(rows).shape == (1, 4, wrapped.item_table().shape[1])


def test_loss_is_finite_and_zero_weight_adds_nothing(home, pcl_config):
    tiny = load("tiny")
    enhancer = make_enhancer("cl4srec", {})
    model = build_model(pcl_config("cl4srec"), tiny, enhancer)
    enhancer.bind(tiny, 20, 0)
    split = tiny.split
    rows = torch.from_numpy(left_pad(split.train_offsets, split.train_items, 21, np.arange(16)))
    batch = Batch(users=torch.arange(16), inputs=rows[:, :-1], targets=rows[:, 1:])
    losses = enhancer.extra_loss(model, batch, model.encode(batch.inputs))
    assert set(losses) == {"cl"} and torch.isfinite(losses["cl"]) and losses["cl"] > 0
    losses["cl"].backward()
    assert model.backbone.item_embedding.weight.grad is not None
    assert make_enhancer("cl4srec", {"lam": 0}).extra_loss(model, batch, None) == {}
    with pytest.raises(ConfigError, match="enhancer.crop_ratio"):
        make_enhancer("cl4srec", {"crop_ratio": 2})


@pytest.mark.parametrize("model", ["sasrec", "gru4rec"])
def test_trains_end_to_end(home, pcl_config, model, device):
    result, directory = train_run(
        pcl_config("cl4srec", model, device), load("tiny"), progress=False
    )
    assert result["finished"]
    epochs = [json.loads(x) for x in (directory / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(e["cl"]) for e in epochs if e.get("event") == "epoch")
