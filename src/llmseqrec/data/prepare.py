"""``prepare``: read a raw source once, cache the canonical dataset, reload it in milliseconds."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from llmseqrec import paths
from llmseqrec.data import cache as cache_mod
from llmseqrec.data.build import PrepareOptions, build_dataset
from llmseqrec.data.dataset import Dataset
from llmseqrec.data.readers import SourceSpec, reader_for
from llmseqrec.data.readers._common import require_file
from llmseqrec.errors import ConfigError, DataFormatError

log = logging.getLogger(__name__)

# The staged benchmark datasets (../shared/data/<dir>): how each is read.
PRESETS: dict[str, dict] = {
    "ml-1m": {"dir": "ml-1m", "format": "movielens"},
    # The ML-1M of LRURec's and SASRec's published runs (min_sc=5 in their preprocessing): only
    # movies with at least 5 ratings, 3,416 of 3,706 (every user has 20+ ratings either way).
    "ml-1m-sc5": {"dir": "ml-1m", "format": "movielens", "options": {"kcore_item": 5}},
    "ml-100k": {"dir": "ml-100k", "format": "movielens"},
    "beauty": {
        "dir": "amazon-beauty",
        "format": "sequence",
        "file": "Beauty.txt",
        "item_text": ["derived_item_titles.tsv", "derived_item_attributes.tsv"],
        "text_fields": {"attributes": "brand+categories"},
    },
    "yelp": {
        "dir": "yelp",
        "format": "sequence",
        "file": "Yelp.txt",
        "item_text": ["derived_item_names.tsv", "closed_categories.json"],
    },
    "office": {"dir": "amazon-office-text", "format": "rechorus"},
    "office-pairs": {"dir": "amazon-office", "format": "pairs", "file": "Office.txt"},
    "lastfm": {
        "dir": "lastfm-llara",
        "format": "sequence",
        "file": "derived_user_sequences.tsv",
        "item_text": ["id2name.txt"],
        "columns": {"user": "user_idx", "items": "item_ids"},
    },
}


def preset_spec(preset: str, root: Path) -> SourceSpec:
    """A :class:`SourceSpec` for a staged dataset. ``root`` is its directory or the data root."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    entry = PRESETS[preset]
    root = Path(root)
    folder = root / entry["dir"] if (root / entry["dir"]).is_dir() else root
    return SourceSpec(
        format=entry["format"],
        path=folder / entry["file"] if "file" in entry else folder,
        item_text=[folder / p for p in entry.get("item_text", [])],
        text_fields=entry.get("text_fields", {}),
        columns=entry.get("columns", {}),
    )


def preset_options(preset: str) -> PrepareOptions:
    """The filtering a staged dataset is published with (default options unless it says)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    return PrepareOptions(**PRESETS[preset].get("options", {}))


def prepare_preset(preset: str, root: Path, cache: Path | None = None) -> Dataset:
    """Read (or reload) a staged dataset under its preset name, with the preset's filtering."""
    return prepare(preset_spec(preset, root), preset, preset_options(preset), cache=cache)


def prepare(
    spec: SourceSpec,
    name: str,
    options: PrepareOptions | None = None,
    cache: Path | None = None,
    force: bool = False,
) -> Dataset:
    """Read (or reload from cache) a dataset; the cache key covers file bytes, spec and options."""
    options = options or PrepareOptions()
    cache = Path(cache) if cache is not None else paths.cache_root()
    reader = reader_for(spec.format)
    files = reader.resolve(spec)
    for role, path in files.items():
        require_file(path, role.replace("_", " ") + " file")
    key = cache_mod.cache_key(
        {
            "spec": spec.model_dump(mode="json", exclude={"path", "item_text", "meta"}),
            "options": options.model_dump(),
            "files": {role: cache_mod.file_digest(p) for role, p in sorted(files.items())},
        }
    )
    directory = cache_mod.dataset_root(cache, name) / key
    if not force and (directory / "meta.json").exists():
        dataset = cache_mod.load_dataset(directory)
        cache_mod.set_current(cache, name, key)
        return dataset
    started = time.perf_counter()
    raw = reader.read(spec)
    if raw.interactions.height == 0:
        raise DataFormatError(files[next(iter(files))], "no interactions found")
    source = {
        "format": spec.format,
        "files": {k: str(Path(v).resolve()) for k, v in files.items()},
        "spec": spec.model_dump(mode="json"),
    }
    dataset = build_dataset(raw, name=name, options=options, source=source)
    if dataset.n_users == 0:
        raise DataFormatError(
            files[next(iter(files))],
            f"no user has at least {options.min_seq_len} items after filtering",
        )
    dataset.metadata["cache_key"] = key
    dataset.metadata["prepare_seconds"] = round(time.perf_counter() - started, 3)
    if force and directory.exists():
        import shutil

        shutil.rmtree(directory)
    cache_mod.save_dataset(dataset, directory)
    cache_mod.set_current(cache, name, key)
    return dataset


def load(name: str, cache: Path | None = None) -> Dataset:
    """A prepared dataset by name; ``synthetic`` is built (and cached) on demand."""
    cache = Path(cache) if cache is not None else paths.cache_root()
    directory = cache_mod.current_directory(cache, name)
    if directory is None:
        if name == "synthetic":
            from llmseqrec.data.synthetic import prepare_synthetic

            return prepare_synthetic(cache=cache)
        known = cache_mod.list_prepared(cache)
        raise ConfigError(
            f"dataset {name!r} is not prepared in {cache} (prepared: {', '.join(known) or 'none'}); "
            f"run `llmseqrec prepare --name {name} ...` first"
        )
    return cache_mod.load_dataset(directory)
