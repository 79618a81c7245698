"""How far two CLLMRec scoring artefacts agree on which positions a view keeps.

    python benchmarks/cllmrec_scores.py --dataset beauty cache/beauty/cllmrec/A cache/beauty/cllmrec/B
        [--alpha 0.75]

Prints, over users with at least 4 training items: the mean and median per-user Spearman
correlation of the two score vectors, and the share of the positive view's kept positions
(the top floor(alpha * n) by score) that both artefacts keep, beside what a random crop of the
same size shares with either (k / n on average). A sweep point that changes the scores (the
encoder layer) is only informative if its scores differ from the default's; this says how much.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from llmseqrec.data.prepare import prepare_preset  # noqa: E402


def kept_positions(scores: np.ndarray, n_keep: int) -> set[int]:
    return set(np.argsort(-scores, kind="stable")[:n_keep].tolist())


def agreement(
    offsets: np.ndarray, first: np.ndarray, second: np.ndarray, alpha: float
) -> dict[str, float]:
    """Per-user agreement of two score vectors laid out by ``offsets`` (training prefixes)."""
    correlations, shared, random_shared = [], [], []
    for user in range(len(offsets) - 1):
        start, end = int(offsets[user]), int(offsets[user + 1])
        n = end - start
        if n < 4:
            continue
        a, b = first[start:end], second[start:end]
        n_keep = max(int(np.floor(alpha * n)), 1)
        correlations.append(spearmanr(a, b).statistic)
        shared.append(len(kept_positions(a, n_keep) & kept_positions(b, n_keep)) / n_keep)
        random_shared.append(n_keep / n)
    correlations = np.array(correlations, dtype=float)
    return {
        "users": len(shared),
        "spearman_mean": float(np.nanmean(correlations)),
        "spearman_median": float(np.nanmedian(correlations)),
        "kept_shared": float(np.mean(shared)),
        "kept_shared_random_crop": float(np.mean(random_shared)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--alpha", type=float, default=0.75)
    parser.add_argument("first", type=Path, help="a scoring artefact directory (scores.npy)")
    parser.add_argument("second", type=Path)
    args = parser.parse_args()
    split = prepare_preset(args.dataset, Path(args.data)).split
    scores = []
    for directory in (args.first, args.second):
        path = directory / "scores.npy"
        if not path.exists():
            parser.error(f"{path}: no scores (the scoring step has not finished there)")
        scores.append(np.load(path))
        if len(scores[-1]) != len(split.train_items):
            parser.error(
                f"{path}: {len(scores[-1])} scores for {len(split.train_items)} training items "
                f"of {args.dataset}"
            )
    print(json.dumps(agreement(split.train_offsets, *scores, args.alpha)))


if __name__ == "__main__":
    main()
