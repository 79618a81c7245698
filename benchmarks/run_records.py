"""Finished benchmark runs, kept in git so the grids grow across sessions and fresh clones.

``runs/`` is scratch: checkpoints and resume state, ignored by git, gone in a fresh clone. The
small record of every *finished* benchmark run (its config, metrics, epoch log, resolved method
options and per-user ranks, compressed) is copied to ``benchmarks/results/runs/<dataset>/<method>-<model>/<hash>/``.
Each benchmark script restores those records into ``runs/`` before it starts, so ``train_run``
returns a finished run's result instead of training it again, every report regenerates from a
fresh clone, and every figure in a results file stays traceable to the config that produced it.
"""

from __future__ import annotations

import argparse
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


def _finished(directory: Path) -> bool:
    path = directory / "metrics.json"
    return path.exists() and bool(json.loads(path.read_text()).get("finished"))


def restore(runs: Path, records: Path = RECORDS) -> int:
    """Copy every kept record into ``runs`` where that run is not finished there; returns the count."""
    restored = 0
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


def keep(directory: Path, runs: Path, records: Path = RECORDS) -> Path | None:
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
    return target


def whole_grid(args: argparse.Namespace, **grid) -> argparse.Namespace:
    """A copy of the invocation's arguments with the grid set to all of it: a report covers every
    row, whatever part of the grid this invocation trained, so one run never drops another's."""
    return argparse.Namespace(**{**vars(args), **grid})


def notes_path(report: Path) -> Path:
    """The hand-written notes of a report: ``x.md`` -> ``x.notes.md`` beside it."""
    return report.with_name(report.stem + ".notes.md")


def write_report(report: Path, text: str) -> None:
    """Write a generated report, then its hand-written notes file (kept across regenerations).

    What the tables cannot say (provenance, what was tried, why a gap) lives in the notes file,
    so regenerating a report from the runs never loses it.
    """
    notes = notes_path(report)
    body = text.rstrip() + "\n"
    if notes.exists():
        body += "\n" + notes.read_text().rstrip() + "\n"
    report.write_text(body)
