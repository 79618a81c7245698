"""Paired tests between two methods run with the same seeds."""

from __future__ import annotations

import numpy as np
from scipy import stats


def paired_seed_test(a: list[float], b: list[float]) -> dict[str, float]:
    """Paired t-test over per-seed metric values (same seeds, same order)."""
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a_arr) != len(b_arr):
        raise ValueError("paired test needs the same number of seeds on both sides")
    diff = b_arr - a_arr
    if len(diff) < 2 or np.allclose(diff, diff[0]):
        p = 0.0 if len(diff) >= 2 and diff[0] != 0 else 1.0
        return {
            "mean_diff": float(diff.mean()) if len(diff) else 0.0,
            "t": float("nan"),
            "p": p,
            "n": len(diff),
        }
    result = stats.ttest_rel(b_arr, a_arr)
    return {
        "mean_diff": float(diff.mean()),
        "t": float(result.statistic),
        "p": float(result.pvalue),
        "n": len(diff),
    }


def same_seed_difference(
    row: dict[int, float], reference: dict[int, float]
) -> dict[str, float | int | None] | None:
    """A row's metric minus a reference row's on the seeds both finished: the mean difference,
    the number of common seeds and, with two or more, the paired t-test's p (else None).
    None when no seed is common."""
    common = [seed for seed in row if seed in reference]
    if not common:
        return None
    diffs = [row[seed] - reference[seed] for seed in common]
    p = None
    if len(common) >= 2:
        p = paired_seed_test([reference[s] for s in common], [row[s] for s in common])["p"]
    return {"mean_diff": float(np.mean(diffs)), "p": p, "n": len(common)}


def versus_same_seeds(row: dict[int, float], reference: dict[int, float]) -> str:
    """A report cell: a row's metric minus a reference row's (its backbone, say) on the seeds
    both finished, with a paired t-test over those seeds when there are two or more."""
    if not reference:
        return "reference not run"
    difference = same_seed_difference(row, reference)
    if difference is None:
        return "no common seed"
    text = f"{difference['mean_diff']:+.4f}"
    if difference["p"] is None:
        return f"{text} (1 seed: no test)"
    return f"{text} (paired t over {difference['n']} seeds, p {difference['p']:.3f})"


def paired_user_test(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Wilcoxon signed-rank test over per-user metric values of two runs."""
    diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if not np.any(diff):
        return {"mean_diff": 0.0, "p": 1.0, "n": len(diff)}
    result = stats.wilcoxon(b, a, zero_method="wilcox")
    return {"mean_diff": float(diff.mean()), "p": float(result.pvalue), "n": len(diff)}
