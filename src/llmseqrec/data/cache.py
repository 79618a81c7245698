"""Prepared datasets on disk: NumPy arrays + Parquet text + JSON metadata, written atomically.

Layout: ``<cache>/<name>/dataset/<key>/`` where ``key`` hashes the source files' bytes, the
reader spec and the options; ``<cache>/<name>/dataset/CURRENT`` names the latest key. A
directory appears only after every file in it is complete (write to a temporary sibling,
then rename), so an interrupted ``prepare`` never leaves something a later run would load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from llmseqrec import atomic
from llmseqrec.data.dataset import Dataset

CACHE_FORMAT_VERSION = 2  # bump when reader output changes: stale caches are not reused
FULL_HASH_LIMIT = 512 * 1024 * 1024


def file_digest(path: Path) -> str:
    """Content hash; for very large files size + mtime + head and tail blocks."""
    stat = path.stat()
    h = hashlib.blake2b(digest_size=16)
    if stat.st_size <= FULL_HASH_LIMIT:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
    else:
        h.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
        with open(path, "rb") as handle:
            h.update(handle.read(1 << 20))
            handle.seek(-(1 << 20), os.SEEK_END)
            h.update(handle.read(1 << 20))
    return h.hexdigest()


def cache_key(payload: dict[str, Any]) -> str:
    blob = json.dumps(
        {**payload, "cache_format": CACHE_FORMAT_VERSION}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def dataset_root(cache: Path, name: str) -> Path:
    return Path(cache) / name / "dataset"


def save_dataset(dataset: Dataset, directory: Path) -> Path:
    """Write ``dataset`` into ``directory`` atomically; returns the final directory."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        np.save(tmp / "offsets.npy", dataset.offsets)
        np.save(tmp / "items.npy", dataset.items)
        if dataset.timestamps is not None:
            np.save(tmp / "timestamps.npy", dataset.timestamps)
        pl.DataFrame({"user": dataset.user_ids.astype(str)}).write_parquet(tmp / "users.parquet")
        dataset.item_text.write_parquet(tmp / "item_text.parquet")
        (tmp / "meta.json").write_text(
            json.dumps(dataset.metadata, indent=2, default=str), encoding="utf-8"
        )
        try:
            os.rename(tmp, directory)
        except OSError:
            if (directory / "meta.json").exists():  # another writer finished first: same content
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load_dataset(directory: Path) -> Dataset:
    directory = Path(directory)
    metadata = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
    item_text = pl.read_parquet(directory / "item_text.parquet")
    timestamps = (
        np.load(directory / "timestamps.npy") if (directory / "timestamps.npy").exists() else None
    )
    return Dataset(
        name=metadata["name"],
        user_ids=pl.read_parquet(directory / "users.parquet")["user"].to_numpy().astype(str),
        item_ids=item_text["raw_id"].to_numpy().astype(str),
        offsets=np.load(directory / "offsets.npy"),
        items=np.load(directory / "items.npy"),
        item_text=item_text,
        timestamps=timestamps,
        metadata=metadata,
    )


def set_current(cache: Path, name: str, key: str) -> None:
    root = dataset_root(cache, name)
    root.mkdir(parents=True, exist_ok=True)
    atomic.write_text(root / "CURRENT", key + "\n")


def current_directory(cache: Path, name: str) -> Path | None:
    pointer = dataset_root(cache, name) / "CURRENT"
    if not pointer.exists():
        return None
    directory = dataset_root(cache, name) / pointer.read_text().strip()
    return directory if (directory / "meta.json").exists() else None


def list_prepared(cache: Path) -> list[str]:
    cache = Path(cache)
    if not cache.exists():
        return []
    return sorted(p.name for p in cache.iterdir() if current_directory(cache, p.name) is not None)
