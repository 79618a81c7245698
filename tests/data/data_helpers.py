"""Helpers the data-layer tests import by name: handmade files, and what a cache holds.

They live here, not in ``conftest.py``: every test folder has a ``conftest`` module, and which
one ``from conftest import ...`` finds depends on what pytest was asked to collect."""

from __future__ import annotations

from pathlib import Path


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
