"""Shared helpers for the data-layer tests: handmade files in the real schemas, a fresh cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmseqrec.data.prepare import prepare
from llmseqrec.data.readers.spec import SourceSpec


def write(path: Path, content: str | bytes, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode(encoding))
    return path


def loadable_datasets(cache: Path) -> list[Path]:
    """Every directory under ``cache`` that a later run would load (has a meta.json)."""
    if not cache.exists():
        return []
    return sorted(p.parent for p in cache.rglob("meta.json"))


def leftovers(cache: Path) -> list[Path]:
    """Every file or directory under ``cache`` (an error must leave nothing behind)."""
    if not cache.exists():
        return []
    return sorted(cache.rglob("*"))


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def run(cache: Path):
    """``run(format, path, **spec_fields)`` -> Dataset, prepared into the test's cache."""

    def _run(fmt: str, path: Path, name: str = "t", options=None, **fields):
        return prepare(SourceSpec(format=fmt, path=path, **fields), name, options, cache=cache)

    return _run
