"""Fixtures shared across test folders: a small generated dataset and an isolated home."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llmseqrec.data import cache as cache_mod
from llmseqrec.data.build import PrepareOptions, build_dataset
from llmseqrec.data.dataset import Dataset
from llmseqrec.data.synthetic import generate

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def make_tiny(n_users: int = 300, n_items: int = 240, seed: int = 3, name: str = "tiny") -> Dataset:
    raw = generate(seed=seed, n_users=n_users, n_items=n_items)
    return build_dataset(
        raw, name=name, options=PrepareOptions(), source={"format": "synthetic", "seed": seed}
    )


@pytest.fixture(scope="session")
def tiny() -> Dataset:
    return make_tiny()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """LLMSEQREC_HOME in a temp dir with the tiny dataset prepared under the name ``tiny``."""
    monkeypatch.setenv("LLMSEQREC_HOME", str(tmp_path))
    monkeypatch.delenv("LLMSEQREC_CACHE", raising=False)
    dataset = make_tiny()
    directory = cache_mod.dataset_root(tmp_path / "cache", "tiny") / "k0"
    cache_mod.save_dataset(dataset, directory)
    cache_mod.set_current(tmp_path / "cache", "tiny", "k0")
    return tmp_path


@pytest.fixture(
    params=[
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here"),
        ),
    ]
)
def device(request: pytest.FixtureRequest) -> str:
    """Where a training test runs: always the CPU, and a GPU wherever torch sees one (a lent
    device machine), so every method's training path is checked on both."""
    return request.param
