"""Shared helpers for backbone tests: small models, a synthetic pattern, a tiny training loop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from llmseqrec.models.base import Backbone
from llmseqrec.models.registry import build_backbone

N_ITEMS = 20
SEQ_LEN = 12
STRIDES = (1, 2, 3)
LAST_MASK_PROB = 1.0


def small_model(name: str, n_items: int = N_ITEMS, **overrides: object) -> Backbone:
    # Small and lightly regularised so the pattern test converges in a few hundred steps; every
    # other hyper-parameter stays at the paper default.
    params: dict[str, object] = {"hidden_size": 32, "max_len": 24, "dropout": 0.1}
    params.update(overrides)
    if name in ("gru4rec", "narm"):
        params.setdefault("emb_dropout", 0.1)
    return build_backbone(name, n_items, params)


def stride_sequences(
    n_seqs: int, generator: torch.Generator, n_items: int = N_ITEMS, length: int = SEQ_LEN
) -> torch.Tensor:
    """Left-padded sequences ``x_{t+1} = x_t + s (mod N)`` with a per-sequence stride ``s``.

    The next item depends on the last TWO items (the stride is only visible from a pair), so a
    model that only looks at the previous item is stuck at about 1/len(STRIDES) accuracy.
    """
    start = torch.randint(0, n_items, (n_seqs, 1), generator=generator)
    stride = torch.tensor(STRIDES)[torch.randint(0, len(STRIDES), (n_seqs, 1), generator=generator)]
    items = (start + stride * torch.arange(length)) % n_items + 1
    real = torch.randint(4, length + 1, (n_seqs, 1), generator=generator)
    pad = torch.arange(length).unsqueeze(0) < (length - real)
    return items.masked_fill(pad, 0)


def _masked_batch(
    seqs: torch.Tensor, model: Backbone, mask_prob: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    real = seqs != 0
    masked = (torch.rand(seqs.shape, generator=generator) < mask_prob) & real
    # Masking the last item as well matches the inference input (history + trailing mask).
    masked[:, -1] |= torch.rand(seqs.size(0), generator=generator) < LAST_MASK_PROB
    inputs = seqs.masked_fill(masked, model.mask_token)
    targets = seqs.masked_fill(~masked, 0)
    return inputs, targets


def train_tiny(
    model: Backbone,
    seqs: torch.Tensor,
    steps: int = 300,
    lr: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
) -> list[float]:
    """Full-softmax CE with tied embeddings at every non-padding position, Adam; returns losses."""
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        batch = seqs[torch.randint(0, seqs.size(0), (batch_size,), generator=generator)]
        if model.objective == "masked":
            mask_prob = float(getattr(model.config, "mask_prob", 0.2))
            inputs, targets = _masked_batch(batch, model, mask_prob, generator)
        else:
            inputs, targets = batch[:, :-1], batch[:, 1:].masked_fill(batch[:, :-1] == 0, 0)
        logits = model.encode(inputs) @ model.item_embeddings().T
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def next_item_accuracy(model: Backbone, seqs: torch.Tensor) -> float:
    """Accuracy of the top-1 prediction of each sequence's last item from its history."""
    model.eval()
    history, target = seqs[:, :-1], seqs[:, -1]
    if model.objective == "masked":
        mask = torch.full_like(history[:, :1], model.mask_token)
        history = torch.cat([history[:, 1:], mask], dim=1)
    logits = model.encode_last(history) @ model.item_embeddings().T
    logits[:, 0] = float("-inf")
    return (logits.argmax(dim=-1) == target).float().mean().item()


@pytest.fixture(autouse=True)
def _seed_and_threads() -> Iterator[None]:
    # One thread: these models are tiny, and on a shared 2-core machine two OpenMP threads
    # spin-wait against other jobs and run many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


# Helpers handed to the tests as fixtures (tests/ is not a package, so no cross-file imports).
@pytest.fixture
def make_small_model():
    return small_model


@pytest.fixture
def make_stride_sequences():
    return stride_sequences


@pytest.fixture
def tiny_train():
    return train_tiny


@pytest.fixture
def accuracy():
    return next_item_accuracy
