"""Metrics by user group (training length) and item group (training popularity, head/tail)."""

from __future__ import annotations

import numpy as np

from llmseqrec.data.dataset import Dataset
from llmseqrec.evaluation.metrics import metrics_from_ranks

DEFAULT_LENGTH_BINS = (0, 4, 6, 10, 20, 50, np.inf)


def user_length_groups(
    dataset: Dataset, bins: tuple[float, ...] = DEFAULT_LENGTH_BINS
) -> dict[str, np.ndarray]:
    lengths = dataset.split.train_lengths
    groups = {}
    for low, high in zip(bins[:-1], bins[1:], strict=True):
        label = f"[{int(low)},{'inf' if high == np.inf else int(high)})"
        mask = (lengths >= low) & (lengths < high)
        if mask.any():
            groups[label] = mask
    return groups


def item_popularity_groups(
    dataset: Dataset, targets: np.ndarray, head_share: float = 0.2
) -> dict[str, np.ndarray]:
    """Head = the most popular ``head_share`` of items by training frequency; tail = the rest."""
    counts = np.bincount(dataset.split.train_items, minlength=dataset.n_items + 1)[1:]
    order = np.argsort(-counts, kind="stable")
    head = np.zeros(dataset.n_items + 1, dtype=bool)
    head[order[: int(round(head_share * dataset.n_items))] + 1] = True
    return {"head": head[targets], "tail": ~head[targets]}


def grouped_metrics(
    ranks: np.ndarray, groups: dict[str, np.ndarray], ks=(10, 20)
) -> dict[str, dict[str, float]]:
    return {
        name: {"users": int(mask.sum()), **metrics_from_ranks(ranks[mask], ks)}
        for name, mask in groups.items()
    }
