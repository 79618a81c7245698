"""Readers for original dataset formats. Each module offers ``resolve(spec)`` (the files it will
read, for the cache key) and ``read(spec) -> RawData``."""

from __future__ import annotations

from types import ModuleType

from llmseqrec.data.readers import amazon, movielens, pairs, recbole, rechorus, sequence, table
from llmseqrec.data.readers.spec import SourceSpec

FORMATS: dict[str, ModuleType] = {
    "movielens": movielens,
    "sequence": sequence,
    "pairs": pairs,
    "rechorus": rechorus,
    "amazon": amazon,
    "recbole": recbole,
    "table": table,
}


def reader_for(name: str) -> ModuleType:
    if name not in FORMATS:
        from llmseqrec.errors import ConfigError

        raise ConfigError(f"unknown format {name!r}; choose one of: {', '.join(FORMATS)}")
    return FORMATS[name]


__all__ = ["FORMATS", "SourceSpec", "reader_for"]
