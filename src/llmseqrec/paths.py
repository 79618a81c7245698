"""Where caches and runs live: ``$LLMSEQREC_HOME`` (default: the current directory)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("LLMSEQREC_HOME", ".")).resolve()


def cache_root() -> Path:
    return Path(os.environ.get("LLMSEQREC_CACHE", home() / "cache")).resolve()


def runs_root() -> Path:
    return home() / "runs"
