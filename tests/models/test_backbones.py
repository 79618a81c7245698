"""Contract tests run on every backbone: shape, causality, padding, bf16, learning."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from llmseqrec.errors import ConfigError
from llmseqrec.models.base import Backbone
from llmseqrec.models.registry import BACKBONES, backbone_class, make_config

ALL_MODELS = ["sasrec", "gru4rec", "bert4rec", "lrurec", "narm", "fmlprec", "hstu"]
CAUSAL_MODELS = [m for m in ALL_MODELS if m != "bert4rec"]
N_ITEMS = 20  # conftest.N_ITEMS
# The masked objective supervises ~2 positions per sequence where the causal one supervises all
# ~8, so BERT4Rec gets more steps and no dropout to learn the pattern in the same test budget.
TRAINING: dict[str, dict[str, object]] = {
    "bert4rec": {"steps": 600, "lr": 2e-3, "overrides": {"dropout": 0.0}},
}


def random_left_padded(batch: int, length: int, n_items: int = N_ITEMS) -> torch.Tensor:
    items = torch.randint(1, n_items + 1, (batch, length))
    real = torch.randint(1, length + 1, (batch, 1))
    real[0] = length  # one row without padding
    real[1] = 1  # one row with a single item
    pad = torch.arange(length).unsqueeze(0) < (length - real)
    return items.masked_fill(pad, 0)


def test_registry_has_all_models() -> None:
    backbone_class("sasrec")  # triggers loading every module
    assert set(ALL_MODELS) <= set(BACKBONES)
    with pytest.raises(ConfigError):
        backbone_class("nope")


@pytest.mark.parametrize("name", ALL_MODELS)
def test_config_defaults_and_extra_forbid(name: str) -> None:
    config = make_config(name)
    assert config.name == name
    assert config.hidden_size == 64
    assert config.num_layers == (1 if name in ("gru4rec", "narm") else 2)
    with pytest.raises(ValueError):
        make_config(name, {"not_a_field": 1})


def test_bert4rec_is_masked_with_mask_token(make_small_model: Callable[..., Backbone]) -> None:
    model = make_small_model("bert4rec")
    assert model.objective == "masked"
    assert make_config("bert4rec").mask_prob == 0.2
    assert model.mask_token == N_ITEMS + 1
    assert model.item_embedding.num_embeddings == N_ITEMS + 2
    assert model.item_embeddings().shape == (N_ITEMS + 1, 32)
    assert all(backbone_class(n).objective == "causal" for n in CAUSAL_MODELS)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_shape_and_finite(name: str, make_small_model: Callable[..., Backbone]) -> None:
    model = make_small_model(name).eval()
    seqs = random_left_padded(5, 9)
    seqs[2] = 0  # an all-padding row must not produce NaNs anywhere
    states = model.encode(seqs)
    assert states.shape == (5, 9, 32)
    assert torch.isfinite(states).all()
    assert model.encode_last(seqs).shape == (5, 32)


@pytest.mark.parametrize("name", CAUSAL_MODELS)
def test_causal(name: str, make_small_model: Callable[..., Backbone]) -> None:
    model = make_small_model(name).eval()
    seqs = random_left_padded(6, 10)
    real = seqs != 0
    base = model.encode(seqs)
    for t in range(10 - 1):
        later = real & (torch.arange(10) > t)
        changed = torch.where(later, torch.randint(1, N_ITEMS + 1, seqs.shape), seqs)
        states = model.encode(changed)
        # Padding states are unspecified; every real state at or before t must be unchanged.
        upto = real & (torch.arange(10) <= t)
        torch.testing.assert_close(states[upto], base[upto], atol=1e-5, rtol=1e-5)
        assert not torch.allclose(states[:, -1], base[:, -1])


@pytest.mark.parametrize("name", ALL_MODELS)
def test_padding_invariance(name: str, make_small_model: Callable[..., Backbone]) -> None:
    """States at real positions do not depend on how much padding precedes them or on the
    other rows of the batch."""
    model = make_small_model(name).eval()
    seqs = random_left_padded(6, 10)
    real = seqs != 0
    base = model.encode(seqs)
    more_pad = torch.cat([torch.zeros(6, 7, dtype=seqs.dtype), seqs], dim=1)
    torch.testing.assert_close(
        model.encode(more_pad)[:, 7:][real], base[real], atol=1e-5, rtol=1e-5
    )
    for row in range(6):
        length = int(real[row].sum())
        alone = model.encode(seqs[row : row + 1, -length:])[0]
        torch.testing.assert_close(alone, base[row, -length:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_bf16_autocast(name: str, make_small_model: Callable[..., Backbone]) -> None:
    model = make_small_model(name).train()
    seqs = random_left_padded(4, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        states = model.encode(seqs)
        logits = states @ model.item_embeddings().T
    assert states.shape == (4, 10, 32)
    loss = torch.nn.functional.cross_entropy(logits[:, -1].float(), seqs[:, -1])
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model.encode(seqs).float()
    full = model.encode(seqs)
    real = seqs != 0
    assert (low - full)[real].norm() <= 0.1 * full[real].norm()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_learns_two_step_pattern(
    name: str,
    make_small_model: Callable[..., Backbone],
    make_stride_sequences: Callable[..., torch.Tensor],
    tiny_train: Callable[..., list[float]],
    accuracy: Callable[..., float],
) -> None:
    generator = torch.Generator().manual_seed(1)
    train = make_stride_sequences(1024, generator)
    test = make_stride_sequences(512, generator)
    settings = TRAINING.get(name, {})
    model = make_small_model(name, **settings.get("overrides", {}))
    before = accuracy(model, test)
    losses = tiny_train(model, train, steps=settings.get("steps", 300), lr=settings.get("lr", 3e-3))
    after = accuracy(model, test)
    assert losses[-1] < losses[0]
    # Chance is 1/20; a model with one item of memory tops out near 1/3.
    assert after > 0.8, f"{name}: accuracy {before:.3f} -> {after:.3f}"
