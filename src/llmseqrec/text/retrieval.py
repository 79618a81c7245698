"""Top-k neighbours by exact inner product on L2-normalised vectors (cosine), with FAISS."""

from __future__ import annotations

import numpy as np

from llmseqrec.errors import ConfigError


def _normalised(vectors: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise ConfigError(f"vectors must be a 2-D array [n, d], got shape {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.maximum(norms, 1e-12)


def topk_neighbours(
    vectors: np.ndarray,
    k: int,
    *,
    exclude_self: bool = True,
    queries: np.ndarray | None = None,
    normalise: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest rows of ``vectors`` for every query (default: every row of ``vectors``).

    Returns ``(indices int64 [q, k], scores float32 [q, k])``, best first. With
    ``exclude_self`` (only meaningful when the queries are the vectors themselves) row ``i``
    never lists ``i``, even when a duplicate vector ties with it. Where fewer than ``k``
    neighbours exist, the tail is ``-1`` / ``-inf``.
    """
    import faiss

    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    base = _normalised(vectors) if normalise else np.ascontiguousarray(vectors, dtype=np.float32)
    self_search = queries is None
    query = (
        base
        if self_search
        else (_normalised(queries) if normalise else np.ascontiguousarray(queries, np.float32))
    )
    if query.shape[1] != base.shape[1]:
        raise ConfigError(f"queries have dimension {query.shape[1]}, vectors {base.shape[1]}")
    drop_self = exclude_self and self_search
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    wanted = min(k + (1 if drop_self else 0), base.shape[0])
    scores, indices = (
        index.search(query, wanted)
        if wanted
        else (
            np.zeros((len(query), 0), np.float32),
            np.zeros((len(query), 0), np.int64),
        )
    )
    if drop_self:
        own = np.arange(len(query))[:, None]
        is_self = indices == own
        # Rows where self was not among the hits (ties beyond k): drop the last hit instead.
        missing = ~is_self.any(axis=1)
        is_self[missing, -1] = True
        keep = ~is_self
        indices = indices[keep].reshape(len(query), wanted - 1)
        scores = scores[keep].reshape(len(query), wanted - 1)
    if indices.shape[1] < k:
        pad = k - indices.shape[1]
        indices = np.pad(indices, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return indices.astype(np.int64, copy=False), scores.astype(np.float32, copy=False)
