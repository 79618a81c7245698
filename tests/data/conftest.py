"""Fixtures for the data-layer tests: a fresh cache and a one-call prepare (file helpers are in
``data_helpers``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmseqrec.data.prepare import prepare
from llmseqrec.data.readers.spec import SourceSpec


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def run(cache: Path):
    """``run(format, path, **spec_fields)`` -> Dataset, prepared into the test's cache."""

    def _run(fmt: str, path: Path, name: str = "t", options=None, **fields):
        return prepare(SourceSpec(format=fmt, path=path, **fields), name, options, cache=cache)

    return _run
