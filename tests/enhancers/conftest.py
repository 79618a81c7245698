"""Fixtures shared by the enhancer tests: one-epoch p-cl run configs on the tiny dataset, and
stand-in LLM item embeddings for the methods whose text encoder is tested on its own."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import numpy as np
import pytest

from llmseqrec.data.dataset import Dataset
from llmseqrec.training.config import RunConfig, build_run_config


@pytest.fixture
def pcl_config() -> Callable[..., RunConfig]:
    """``make(method, model, device, **enhancer_options)``: a one-epoch, one-thread run of
    ``method`` on ``tiny`` under protocol p-cl (max length 20)."""

    def make(method: str, model: str = "sasrec", device: str = "cpu", **options) -> RunConfig:
        return build_run_config(
            "tiny",
            model=model,
            method=method,
            protocol="p-cl",
            overrides={
                "backbone": {"max_len": 20},
                "train": {"epochs": 1, "threads": 1, "device": device},
                "enhancer": options,
            },
        )

    return make


@pytest.fixture
def fake_item_embeddings(tiny: Dataset) -> Callable[..., np.ndarray]:
    """``make(seed)``: unit-norm random vectors, one per tiny item, row 0 (padding) zero."""

    def make(seed: int = 0, dim: int = 24) -> np.ndarray:
        rng = np.random.default_rng(seed)
        vectors = rng.normal(size=(tiny.n_items + 1, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors[0] = 0
        return vectors

    return make


@pytest.fixture
def patch_item_embeddings(
    fake_item_embeddings: Callable[..., np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> Callable[[ModuleType, int], np.ndarray]:
    """``patch(module, seed)``: ``module.semantic_item_embeddings`` returns fake vectors, so a
    training test skips the text encoder; returns those vectors."""

    def patch(module: ModuleType, seed: int) -> np.ndarray:
        vectors = fake_item_embeddings(seed)

        def fake(dataset, workdir, options=None, progress=None):
            return vectors, workdir / "fake"

        monkeypatch.setattr(module, "semantic_item_embeddings", fake)
        return vectors

    return patch
