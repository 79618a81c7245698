"""Agreement of two CLLMRec scoring artefacts, on hand-computed cases."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from cllmrec_scores import agreement  # noqa: E402


def test_identical_and_reversed_scores():
    # user 0: 4 items; user 1: 3 items (too short, skipped); user 2: 4 items
    offsets = np.array([0, 4, 7, 11])
    first = np.array([4.0, 3, 2, 1, 9, 9, 9, 1, 2, 3, 4])
    reversed_within_users = np.array([1.0, 2, 3, 4, 0, 0, 0, 4, 3, 2, 1])
    same = agreement(offsets, first, first, alpha=0.75)
    assert same["users"] == 2
    assert same["spearman_mean"] == pytest.approx(1.0)
    assert same["kept_shared"] == pytest.approx(1.0)
    assert same["kept_shared_random_crop"] == pytest.approx(3 / 4)
    flipped = agreement(offsets, first, reversed_within_users, alpha=0.75)
    assert flipped["spearman_mean"] == pytest.approx(-1.0)
    # keep floor(.75 * 4) = 3: {0, 1, 2} against {1, 2, 3} share 2 of 3
    assert flipped["kept_shared"] == pytest.approx(2 / 3)
