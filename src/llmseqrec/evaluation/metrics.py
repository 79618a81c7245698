"""Ranking metrics from 0-based ranks of the target item.

Ties are broken pessimistically: the rank of the target counts every other item whose score is
greater OR EQUAL. A model that scores everything alike therefore ranks the target last, not
first (optimistic tie-breaking inflates constant models).
"""

from __future__ import annotations

import numpy as np

DEFAULT_KS = (5, 10, 20)


def rank_of_target(
    scores: np.ndarray, target_scores: np.ndarray, target_is_candidate: np.ndarray | None = None
) -> np.ndarray:
    """0-based pessimistic rank of each row's target among the row's scores.

    ``scores``: [U, C] (excluded candidates must be ``-inf``); ``target_scores``: [U].
    The target's own column is counted once by ``>=`` and removed again.
    """
    ge = (scores >= target_scores[:, None]).sum(1)
    return (ge - 1).astype(np.int64)


def metrics_from_ranks(
    ranks: np.ndarray, ks: tuple[int, ...] | list[int] = DEFAULT_KS
) -> dict[str, float]:
    """HR@K (= Recall@K under leave-one-out), NDCG@K, MRR@K, averaged over users."""
    ranks = np.asarray(ranks)
    out: dict[str, float] = {}
    n = max(len(ranks), 1)
    for k in ks:
        hit = ranks < k
        out[f"hr@{k}"] = float(hit.sum() / n)
        out[f"recall@{k}"] = out[f"hr@{k}"]
        out[f"ndcg@{k}"] = float((hit / np.log2(ranks + 2.0)).sum() / n)
        out[f"mrr@{k}"] = float((hit / (ranks + 1.0)).sum() / n)
    return out


def per_user_metric(ranks: np.ndarray, metric: str) -> np.ndarray:
    """One metric per user (for paired tests and groups): e.g. ``ndcg@10``."""
    name, _, k = metric.partition("@")
    k = int(k)
    hit = ranks < k
    if name in ("hr", "recall"):
        return hit.astype(np.float64)
    if name == "ndcg":
        return hit / np.log2(ranks + 2.0)
    if name == "mrr":
        return hit / (ranks + 1.0)
    raise ValueError(f"unknown metric {metric!r}")
