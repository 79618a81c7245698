"""Atomic file writes: every artefact, checkpoint and record lands whole or not at all.

Each writer fills a temporary file beside the target (unique per process and call, so
concurrent writers never share one) and renames it over the target; a failed write leaves the
old file, never a truncated one, and removes its temporary file.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np


def replace_with(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through ``write(binary file)`` and rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: Path, data: bytes) -> None:
    replace_with(path, lambda handle: handle.write(data))


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any, **dumps: Any) -> None:
    """UTF-8 JSON, ``indent=2``, numpy scalars as floats, unless ``dumps`` says otherwise."""
    options = {"indent": 2, "default": float, "ensure_ascii": False, **dumps}
    write_text(path, json.dumps(obj, **options))


def save_npy(path: Path, array: np.ndarray) -> None:
    replace_with(path, lambda handle: np.save(handle, array, allow_pickle=False))


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    replace_with(path, lambda handle: np.savez(handle, **arrays))


def torch_save(path: Path, obj: Any) -> None:
    import torch

    replace_with(path, lambda handle: torch.save(obj, handle))
