import numpy as np
import pytest

from llmseqrec.errors import ConfigError
from llmseqrec.text.retrieval import topk_neighbours


def _brute_force(vectors: np.ndarray, k: int) -> np.ndarray:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return -np.sort(-similarity, axis=1)[:, :k]


def test_matches_exact_cosine_and_excludes_self():
    vectors = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
    indices, scores = topk_neighbours(vectors, 10)
    assert indices.shape == scores.shape == (300, 10) and indices.dtype == np.int64
    assert not (indices == np.arange(300)[:, None]).any()
    np.testing.assert_allclose(scores, _brute_force(vectors, 10), atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


def test_duplicates_never_list_themselves():
    vectors = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], dtype=np.float32)
    indices, scores = topk_neighbours(vectors, 2)
    for row, neighbours in enumerate(indices):
        assert row not in neighbours
    assert set(indices[0]) == {1, 2} and scores[0, 0] == pytest.approx(1.0)


def test_fewer_items_than_k_pads_and_queries_mode():
    vectors = np.eye(3, dtype=np.float32)
    indices, scores = topk_neighbours(vectors, 5)
    assert (indices[:, 2:] == -1).all() and np.isneginf(scores[:, 2:]).all()
    found, _ = topk_neighbours(vectors, 1, queries=np.array([[0, 2, 0]], dtype=np.float32))
    assert found.tolist() == [[1]]
    with pytest.raises(ConfigError):
        topk_neighbours(vectors, 0)
