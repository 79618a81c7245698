"""ASReP: reverse-pretrained pseudo-prior items (top-1 chain), fine-tuning on augmented rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmseqrec.enhancers.asrep import ASReP
from llmseqrec.errors import ConfigError
from llmseqrec.training.batches import iterate_batches
from llmseqrec.training.config import build_run_config
from llmseqrec.training.run import train_run
from llmseqrec.training.trainer import Trainer

FAST = {"offline_epochs": 2, "offline_patience": 2, "n_pseudo": 5}


def config(options, model="sasrec"):
    return build_run_config(
        "tiny",
        model,
        "asrep",
        "p-s100",
        {"train": {"epochs": 2, "threads": 1}, "enhancer": options},
    )


def test_bad_option_names_the_field():
    with pytest.raises(ConfigError, match="n_pseudo"):
        ASReP({"n_pseudo": 0})


def test_pseudo_items_follow_the_reverse_models_top1_chain(tiny, home, tmp_path):
    enhancer = ASReP(FAST)
    enhancer.configure(config(FAST))
    enhancer.prepare(tiny, tmp_path / "asrep")
    split = tiny.split
    lengths = np.diff(enhancer.pseudo_offsets)
    assert ((lengths == 5) | (lengths == 0)).all()
    assert (lengths[split.train_lengths < 18] == 5).all()
    assert (lengths[split.train_lengths >= 18] == 0).all()
    valid_test = set(split.valid_target.tolist()) | set(split.test_target.tolist())
    seen = set(split.train_items.tolist())
    for u in range(split.n_users):
        p = enhancer.pseudo_items[enhancer.pseudo_offsets[u] : enhancer.pseudo_offsets[u + 1]]
        assert not set(p.tolist()) & set(split.train_sequence(u).tolist())
        assert set(p.tolist()) <= seen  # only items seen in training prefixes
    assert valid_test  # (targets may coincide with seen items; they are never read)
    # the forward model starts from the reverse-pretrained weights
    trainer = Trainer(config(FAST), tiny, tmp_path / "run", enhancer, progress=False)
    for name, value in enhancer.reverse_state.items():
        assert torch.equal(trainer.model.state_dict()[name], value)
    batch = next(
        iterate_batches(trainer.windows, trainer.window_users, 32, np.random.default_rng(0))
    )
    out = enhancer.augment_batch(batch, 0)
    assert len(out.users) == len(batch.users) and out.weights is None
    changed = (out.inputs[:, -batch.inputs.shape[1] :] != batch.inputs).any(1)
    assert changed.any()


@pytest.mark.parametrize("model", ["gru4rec", "bert4rec"])
def test_trains_on_other_backbones(tiny, home, model):
    result, _ = train_run(config(FAST, model), tiny, progress=False)
    assert result["finished"]
