"""Finished benchmark runs, kept in git so the grids grow across sessions and fresh clones.

``runs/`` is scratch: checkpoints and resume state, ignored by git, gone in a fresh clone. The
small record of every *finished* benchmark run (its config, metrics, epoch log, resolved method
options and per-user ranks, compressed) is copied to ``benchmarks/results/runs/<dataset>/<method>-<model>/<hash>/``.
Each benchmark script restores those records into ``runs/`` before it starts, so ``train_run``
returns a finished run's result instead of training it again, every report regenerates from a
fresh clone, and every figure in a results file stays traceable to the config that produced it.

A long run that a session cannot finish (hours on ML-1M) can be *parked*: its resume state
(config, log, ``state.pt``, ``checkpoint.pt``: a few MB) is copied to
``benchmarks/results/parked/`` and committed, and ``restore`` puts it back into ``runs/`` where
``runs/`` has less of that run, so the next session continues it instead of starting over.
Keeping the finished record deletes the parked copy.

    python benchmarks/run_records.py park runs/ml-1m/none-sasrec/46effc3408 [...]
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "benchmarks" / "results" / "runs"
# Everything a report reads; checkpoints and resume state stay in runs/.
KEPT = ("config.yaml", "metrics.json", "log.jsonl", "enhancer.json")
# Per-user ranks (group tables, paired tests) go into one compressed file: ~10x smaller in git.
RANKS = ("ranks_valid", "ranks_test")
PACKED_RANKS = "ranks.npz"
PARKED = ROOT / "benchmarks" / "results" / "parked"
PARKED_FILES = ("config.yaml", "log.jsonl", "enhancer.json", "state.pt", "checkpoint.pt")


def _finished(directory: Path) -> bool:
    path = directory / "metrics.json"
    return path.exists() and bool(json.loads(path.read_text()).get("finished"))


def _epochs_done(directory: Path) -> int:
    log = directory / "log.jsonl"
    if not (directory / "state.pt").exists() or not log.exists():
        return -1
    return sum('"event": "epoch"' in line for line in log.read_text().splitlines())


def park(directory: Path, runs: Path, parked: Path = PARKED) -> Path:
    """Copy the resume state of an unfinished run to ``parked``; returns the parked folder."""
    if _finished(directory):
        raise SystemExit(f"{directory}: finished; its record is kept by keep(), not parked")
    if not (directory / "state.pt").exists():
        raise SystemExit(f"{directory}: no state.pt, nothing to resume from")
    target = parked / directory.resolve().relative_to(runs.resolve())
    target.mkdir(parents=True, exist_ok=True)
    for name in PARKED_FILES:
        if (directory / name).exists():
            shutil.copy2(directory / name, target / name)
    return target


def _unpark(runs: Path, parked: Path) -> int:
    unparked = 0
    for state in sorted(parked.glob("*/*/*/state.pt")):
        source = state.parent
        target = runs / source.relative_to(parked)
        if _finished(target) or _epochs_done(target) >= _epochs_done(source):
            continue
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source, target)
        unparked += 1
    return unparked


def restore(runs: Path, records: Path = RECORDS, parked: Path = PARKED) -> int:
    """Copy every kept record into ``runs`` where that run is not finished there, and every
    parked run where ``runs`` has fewer of its epochs; returns the count."""
    restored = _unpark(runs, parked)
    for metrics in sorted(records.glob("*/*/*/metrics.json")):
        source = metrics.parent
        target = runs / source.relative_to(records)
        if _finished(target):
            continue
        # An interrupted scratch run of the same config is replaced by the finished record.
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for name in KEPT:
            if (source / name).exists():
                shutil.copy2(source / name, target / name)
        if (source / PACKED_RANKS).exists():
            with np.load(source / PACKED_RANKS) as packed:
                for name in packed.files:
                    np.save(target / f"{name}.npy", packed[name])
        restored += 1
    return restored


def keep(
    directory: Path, runs: Path, records: Path = RECORDS, parked: Path = PARKED
) -> Path | None:
    """Record a finished run of ``runs`` (no-op for an unfinished one); returns the record folder."""
    if not _finished(directory):
        return None
    target = records / directory.relative_to(runs)
    target.mkdir(parents=True, exist_ok=True)
    for name in KEPT:
        if (directory / name).exists():
            shutil.copy2(directory / name, target / name)
    ranks = {n: np.load(directory / f"{n}.npy") for n in RANKS if (directory / f"{n}.npy").exists()}
    if ranks:
        np.savez_compressed(target / PACKED_RANKS, **ranks)
    parked_copy = parked / directory.relative_to(runs)
    if parked_copy.exists():
        shutil.rmtree(parked_copy)
    return target


if __name__ == "__main__":
    import sys

    if len(sys.argv) < 3 or sys.argv[1] != "park":
        raise SystemExit("usage: python benchmarks/run_records.py park RUN_DIR [RUN_DIR ...]")
    for name in sys.argv[2:]:
        print(park(Path(name), ROOT / "runs"))
