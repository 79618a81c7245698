"""Padded training arrays built once per run, sliced per batch: no DataLoader, no Python loops
per sample."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch


def left_pad(
    offsets: np.ndarray, items: np.ndarray, length: int, rows: np.ndarray | None = None
) -> np.ndarray:
    """The last ``length`` items of each CSR row, left-padded with 0 -> [R, length] int64."""
    rows = np.arange(len(offsets) - 1) if rows is None else rows
    starts = offsets[rows]
    ends = offsets[rows + 1]
    take = np.minimum(ends - starts, length)
    out = np.zeros((len(rows), length), dtype=np.int64)
    if len(rows) == 0:
        return out
    # Column j of row r holds items[ends[r] - length + j] when that index is inside the row.
    cols = np.arange(length)
    src = ends[:, None] - length + cols[None, :]
    valid = cols[None, :] >= (length - take)[:, None]
    out[valid] = items[src[valid]]
    return out


def training_windows(
    offsets: np.ndarray,
    items: np.ndarray,
    max_len: int,
    mode: Literal["last", "all"] = "last",
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``max_len + 1`` items (inputs + shifted targets) and the user of each row.

    ``last``: one row per user, the most recent ``max_len + 1`` training items (SASRec).
    ``all``: also earlier non-overlapping chunks, so long histories are used whole.
    """
    lengths = np.diff(offsets)
    users = np.flatnonzero(lengths >= 2)
    if mode == "last":
        return left_pad(offsets, items, max_len + 1, users), users
    window_offsets, window_users = [], []
    for user in users:  # one entry per window, not per item: cheap
        end = offsets[user + 1]
        start = offsets[user]
        while end - start >= 2:
            window_users.append(user)
            window_offsets.append((max(start, end - max_len - 1), end))
            end = end - max_len
    starts = np.array([s for s, _ in window_offsets], dtype=np.int64)
    ends = np.array([e for _, e in window_offsets], dtype=np.int64)
    csr = np.zeros(len(starts) + 1, dtype=np.int64)
    np.cumsum(ends - starts, out=csr[1:])
    flat = np.concatenate([items[s:e] for s, e in zip(starts, ends, strict=True)])
    return left_pad(csr, flat, max_len + 1), np.array(window_users, dtype=np.int64)


@dataclass
class Batch:
    """One training step's data. Enhancers add views and weights; the trainer reads the rest.

    ``inputs``/``targets``: [B, L] (target 0 = no loss at that position); ``users``: [B];
    ``weights``: optional [B] per-sequence loss weights; ``views``: named extra tensors.
    """

    users: torch.Tensor
    inputs: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor | None = None
    views: dict[str, torch.Tensor] = field(default_factory=dict)
    extras: dict[str, object] = field(default_factory=dict)

    def to(self, device: torch.device) -> Batch:
        """The batch on ``device``: its tensors, every view and every tensor-valued extra (the
        enhancer builds them on the CPU, in ``augment_batch``, before the trainer moves the batch)."""
        if device.type == "cpu":
            return self

        def moved(value: object) -> object:
            return value.to(device) if isinstance(value, torch.Tensor) else value

        return replace(
            self,
            users=self.users.to(device),
            inputs=self.inputs.to(device),
            targets=self.targets.to(device),
            weights=self.weights.to(device) if self.weights is not None else None,
            views={name: view.to(device) for name, view in self.views.items()},
            extras={name: moved(value) for name, value in self.extras.items()},
        )

    def with_rows(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        users: torch.Tensor,
        weights: torch.Tensor | None,
    ) -> Batch:
        """Append rows (e.g. augmented sequences) to the recommendation loss."""
        base_w = self.weights if self.weights is not None else torch.ones(len(self.users))
        new_w = weights if weights is not None else torch.ones(len(users))
        return replace(
            self,
            users=torch.cat([self.users, users]),
            inputs=torch.cat([self.inputs, inputs]),
            targets=torch.cat([self.targets, targets]),
            weights=torch.cat([base_w, new_w]),
        )


def iterate_batches(
    windows: np.ndarray,
    users: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    shuffle: bool = True,
    bucket: bool = False,
):
    """Batches of training rows in a seeded random order.

    ``bucket``: group rows of similar length (sort within random pools of 50 batches, then shuffle
    the batches), so the padding trim below removes most of the padded work on long-tailed length
    distributions (ML-1M at max length 200: 46% of a random batch is padding).
    """
    order = rng.permutation(len(windows)) if shuffle else np.arange(len(windows))
    if bucket:
        lengths = (windows[order] != 0).sum(1)
        pool = 50 * batch_size
        for start in range(0, len(order), pool):
            part = slice(start, start + pool)
            order[part] = order[part][np.argsort(lengths[part], kind="stable")]
        starts = np.arange(0, len(order), batch_size)
        starts = starts[rng.permutation(len(starts))]
    else:
        starts = np.arange(0, len(order), batch_size)
    for start in starts:
        index = order[start : start + batch_size]
        rows = torch.from_numpy(windows[index])
        # Trim columns that are padding in every row of this batch: short-sequence batches get cheap.
        nonzero = (rows != 0).any(0)
        first = int(nonzero.nonzero()[0]) if nonzero.any() else rows.shape[1] - 1
        first = min(first, rows.shape[1] - 2)
        rows = rows[:, first:]
        yield Batch(
            users=torch.from_numpy(users[index]),
            inputs=rows[:, :-1].contiguous(),
            targets=rows[:, 1:].contiguous(),
        )
