"""Finished benchmark runs, kept in git so the grids grow across sessions and fresh clones.

``runs/`` is scratch: checkpoints and resume state, ignored by git, gone in a fresh clone. The
small record of every *finished* benchmark run (its config, metrics, epoch log, resolved method
options and per-user ranks, compressed) is copied to ``benchmarks/results/runs/<dataset>/<method>-<model>/<hash>/``.
Each benchmark script restores those records into ``runs/`` before it starts, so ``train_run``
returns a finished run's result instead of training it again, every report regenerates from a
fresh clone, and every figure in a results file stays traceable to the config that produced it.

A run longer than a session (an ML-1M ``p-lru`` run takes 3-6 core-hours here, a session 3 hours,
and a new session may get a new machine without ``runs/``) is carried *in flight*: a paused or
stopped run's resume state (``state.pt``, the best ``checkpoint.pt``, its log and config) is
copied to ``benchmarks/results/inflight/<dataset>/<method>-<model>/<hash>/`` and committed; the
next session's ``restore`` puts it back into ``runs/`` and the run continues where it stopped
(the trainer restores model, optimiser, RNG and early-stopping state, so it is the same run).
The in-flight copy is deleted once the run finishes and its small record is kept.

Offline artefacts that are small but slow to compute (CLLMRec's importance scores) are mirrored
from ``cache/`` into ``benchmarks/results/artefacts/`` once finished, and restored where missing.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import lzma
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from llmseqrec.text.cache import ResponseCache

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "benchmarks" / "results" / "runs"
# Report sections read from cache/ (LLM stages, embedding timings), which a new machine lacks.
SECTIONS = ROOT / "benchmarks" / "results" / "sections"
# Everything a report reads; checkpoints and resume state stay in runs/.
KEPT = ("config.yaml", "metrics.json", "log.jsonl", "enhancer.json")
# What an unfinished run needs to continue on another machine (see the module docstring).
RESUME = ("config.yaml", "log.jsonl", "enhancer.json", "state.pt", "checkpoint.pt")
INFLIGHT_NAME = "inflight"  # beside the records folder: benchmarks/results/inflight
# Finished offline artefacts that are small but slow to recompute (CLLMRec's importance scores:
# ~40 core-minutes for Beauty, ~600 KB), mirrored from cache/ so a new machine skips the step.
ARTEFACTS = ROOT / "benchmarks" / "results" / "artefacts"
# LLM answers (the response cache), exported in parts: an LLM stage of many core-hours (Beauty's
# SRA-CL summaries) runs over several sessions and machines, each adding the answers it got.
# Beside ARTEFACTS, not in it: restore_artefacts mirrors that folder into cache/ file by file.
LLM_ANSWERS = ROOT / "benchmarks" / "results" / "llm-answers"
# Per-user ranks (group tables, paired tests) go into one compressed file: ~10x smaller in git.
RANKS = ("ranks_valid", "ranks_test")
PACKED_RANKS = "ranks.npz"
# The seeds of the multi-seed rows; the other rows run SEEDS[0] unless --seeds asks for more.
# Reports show every finished seed of every row.
SEEDS = (42, 43, 44)


def _finished(directory: Path) -> bool:
    path = directory / "metrics.json"
    return path.exists() and bool(json.loads(path.read_text()).get("finished"))


def epoch_seconds_by_device(directory: Path) -> dict[str, float]:
    """Mean seconds per epoch on each device a run's epochs ran on, in order of first use, from
    its log (runs logged before devices were recorded: cpu). A run moved from the CPU to a GPU
    gets one figure per device, never their blend."""
    log = directory / "log.jsonl"
    events = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    device, seconds = "cpu", {}
    for event in events:
        if event.get("event") in ("start", "resume"):
            device = event.get("device", "cpu")
            seconds.setdefault(device, [])
        elif event.get("event") == "epoch" and "seconds" in event:
            seconds.setdefault(device, []).append(event["seconds"])
    return {d: float(np.mean(s)) for d, s in seconds.items() if s} or {"cpu": float("nan")}


def speed_note(per_seed: list[dict[str, float]]) -> str:
    """Seconds per epoch for a row: one mean when every seed ran on the CPU, else per seed and
    per device (GPU epochs are two orders faster, so a mean over both would describe neither)."""
    if all(list(timing) == ["cpu"] for timing in per_seed):
        mean = np.mean([timing["cpu"] for timing in per_seed])
        return f"{mean:.1f} s/epoch (1 thread, shared machine)"
    seeds = [" + ".join(f"{sec:.1f} {device}" for device, sec in t.items()) for t in per_seed]
    return "s/epoch per seed " + " / ".join(seeds)


def staged(dataset: str, data_root: Path):
    """The prepared dataset, or None where it is not staged: a report written on a machine that
    holds only some datasets (a lent GPU gets the ones its runs need) covers the rest from the
    run records alone, and --report-only at home fills in what needs the data."""
    from llmseqrec.data.prepare import prepare_preset

    try:
        return prepare_preset(dataset, data_root)
    except Exception:  # missing files, or the device's polars stand-in cannot read raw data
        return None


def with_run_settings(config, args: argparse.Namespace):
    """The config with this invocation's --max-minutes and --device (neither is in a run's name,
    so a run paused on one machine or device continues on another)."""
    settings = {"max_minutes": args.max_minutes, "device": getattr(args, "device", None)}
    settings = {key: value for key, value in settings.items() if value}
    if not settings:
        return config
    return config.model_copy(update={"train": config.train.model_copy(update=settings)})


def run_progress(directory: Path, select_metric: str, metric: str | None = None) -> str | None:
    """How far an unfinished run has got, for a report's row (None: it never started). Validation
    only: its test figure is read once, when the run ends."""
    log = directory / "log.jsonl"
    if not log.exists():
        return None
    epochs = [
        json.loads(line) for line in log.read_text().splitlines() if '"event": "epoch"' in line
    ]
    validated = [e for e in epochs if "valid" in e]
    if not validated:
        return f"{len(epochs)} epochs, not validated yet"
    metric = metric or select_metric
    best = max(validated, key=lambda e: e["valid"][select_metric])
    return (
        f"{len(epochs)} epochs so far, best validation {metric} {best['valid'][metric]:.4f} at "
        f"epoch {best['epoch'] + 1} (test not read until it ends)"
    )


def _copy(source: Path, target: Path, names: tuple[str, ...], fresh: bool = False) -> None:
    """Copy those of ``names`` that ``source`` has into ``target`` (emptied first if ``fresh``)."""
    if fresh and target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (source / name).exists():
            shutil.copy2(source / name, target / name)


@contextmanager
def _one_process_at_a_time(place: Path) -> Iterator[None]:
    """Hold an exclusive lock named after ``place`` for the duration. Two benchmarks started
    together on a fresh machine (one per core) restore into the same runs/ and cache/: unlocked,
    one empties a run folder the other is copying into, or reads a file half written."""
    digest = hashlib.sha1(str(place.resolve()).encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"llmseqrec-{digest}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def restore(runs: Path, records: Path = RECORDS) -> int:
    """Copy every kept record into ``runs`` where that run is not finished there; returns the count."""
    with _one_process_at_a_time(runs):
        return _restore_finished(runs, records) + _restore_inflight(runs, records)


def _restore_finished(runs: Path, records: Path) -> int:
    restored = 0
    for metrics in sorted(records.glob("*/*/*/metrics.json")):
        source = metrics.parent
        target = runs / source.relative_to(records)
        if _finished(target):
            continue
        # An interrupted scratch run of the same config is replaced by the finished record.
        _copy(source, target, KEPT, fresh=True)
        if (source / PACKED_RANKS).exists():
            with np.load(source / PACKED_RANKS) as packed:
                for name in packed.files:
                    np.save(target / f"{name}.npy", packed[name])
        restored += 1
    return restored


def _inflight_root(records: Path) -> Path:
    return records.parent / INFLIGHT_NAME


def _epochs_logged(directory: Path) -> int:
    log = directory / "log.jsonl"
    if not log.exists():
        return 0
    return sum('"event": "epoch"' in line for line in log.read_text().splitlines())


def _restore_inflight(runs: Path, records: Path) -> int:
    """Put every kept in-flight run back into ``runs`` unless ``runs`` already holds it as far
    (or finished, or a finished record of it exists); returns the count."""
    restored = 0
    for state in sorted(_inflight_root(records).glob("*/*/*/state.pt")):
        source = state.parent
        relative = source.relative_to(_inflight_root(records))
        target = runs / relative
        if (records / relative / "metrics.json").exists() or _finished(target):
            continue
        if (target / "state.pt").exists() and _epochs_logged(target) >= _epochs_logged(source):
            continue
        _copy(source, target, RESUME, fresh=True)
        restored += 1
    return restored


def keep_inflight(directory: Path, runs: Path, records: Path = RECORDS) -> Path | None:
    """Copy an unfinished run's resume state beside the records, to be committed so that the run
    continues on the next machine; no-op (None) for a run without resume state or a finished one."""
    if _finished(directory) or not (directory / "state.pt").exists():
        return None
    target = _inflight_root(records) / directory.relative_to(runs)
    _copy(directory, target, RESUME)
    return target


def keep(directory: Path, runs: Path, records: Path = RECORDS) -> Path | None:
    """Record a finished run of ``runs`` and drop its in-flight copy; returns the record folder.
    An unfinished (paused) run is kept in flight instead (``keep_inflight``), and None returned."""
    if not _finished(directory):
        keep_inflight(directory, runs, records)
        return None
    inflight = _inflight_root(records) / directory.relative_to(runs)
    if inflight.exists():
        shutil.rmtree(inflight)
    target = records / directory.relative_to(runs)
    _copy(directory, target, KEPT)
    ranks = {n: np.load(directory / f"{n}.npy") for n in RANKS if (directory / f"{n}.npy").exists()}
    if ranks:
        np.savez_compressed(target / PACKED_RANKS, **ranks)
    return target


def keep_artefact(
    directory: Path, cache: Path, names: tuple[str, ...], artefacts: Path = ARTEFACTS
) -> Path:
    """Copy the files ``names`` of a finished artefact folder under ``cache`` to be committed."""
    target = artefacts / directory.relative_to(cache)
    _copy(directory, target, names, fresh=True)
    return target


def _copy_missing(files: list[Path], source_root: Path, target_root: Path) -> int:
    """Copy each of ``files`` (under ``source_root``) to the same place under ``target_root``
    unless a file is there already; returns how many were copied."""
    copied = 0
    for source in files:
        target = target_root / source.relative_to(source_root)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            copied += 1
    return copied


def keep_files(files: list[Path], cache: Path, artefacts: Path = ARTEFACTS) -> int:
    """Copy each file under ``cache`` that is not kept yet into ``artefacts``; returns the count.
    For stages that grow file by file (finished chunks are never rewritten)."""
    return _copy_missing(files, cache, artefacts)


def restore_artefacts(cache: Path, artefacts: Path = ARTEFACTS) -> int:
    """Put every kept artefact file back under ``cache`` where it is missing; returns the count.
    An artefact folder is named by the hash of everything it depends on (data, encoder, options),
    so a kept file is exactly what this machine would compute."""
    kept = sorted(p for p in artefacts.rglob("*") if p.is_file())
    with _one_process_at_a_time(cache):
        return _copy_missing(kept, artefacts, cache)


def _kept_answer_keys(store: Path) -> set[str]:
    keys: set[str] = set()
    for part in sorted(store.glob("*.jsonl.xz")):
        with lzma.open(part, "rt", encoding="utf-8") as lines:
            keys.update(json.loads(line)["key"] for line in lines)
    return keys


def keep_llm_answers(cache: ResponseCache, store: Path = LLM_ANSWERS) -> Path | None:
    """Export the answers of ``cache`` not yet kept into a new part file; None if none is new."""
    # Shards of one stage share a response cache and stop together: one at a time, so the
    # second sees the first's part and does not write the same answers again.
    with _one_process_at_a_time(store):
        # Sorted by time; the process id keeps two parts written in the same microsecond apart.
        part = store / f"part-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}.jsonl.xz"
        return part if cache.export_answers(part, skip=_kept_answer_keys(store)) else None


def restore_llm_answers(cache: ResponseCache, store: Path = LLM_ANSWERS) -> int:
    """Add every kept answer that ``cache`` lacks; returns how many."""
    return sum(cache.import_answers(part) for part in sorted(store.glob("*.jsonl.xz")))


def stop_on_sigterm(signum: int, frame: object) -> None:
    """A SIGTERM handler that unwinds like Ctrl-C, so finally blocks keep a stage's work."""
    raise KeyboardInterrupt(f"signal {signum}")


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


@contextmanager
def llm_answers_travel(store: Path = LLM_ANSWERS) -> Iterator[None]:
    """Around an LLM stage: start from every kept answer, and keep what it got even when it
    stops on an error, Ctrl-C or SIGTERM (a killed process: ``run_records.py keep-llm``)."""
    from llmseqrec.text.cache import ResponseCache

    with ResponseCache() as cache:
        added = restore_llm_answers(cache, store)
        if added:
            print(f"{added} LLM answers restored from {_shown(store)}", flush=True)
    # A background shell ignores SIGINT, and `timeout` or `kill` stop a lane with SIGTERM, whose
    # default action skips every finally: make it unwind like Ctrl-C, so the answers are kept.
    previous = signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        keep_this_machines_llm_answers(store)


def keep_this_machines_llm_answers(store: Path = LLM_ANSWERS) -> Path | None:
    """``keep_llm_answers`` on the default response cache, saying where they went."""
    from llmseqrec.text.cache import ResponseCache

    with ResponseCache() as cache:
        part = keep_llm_answers(cache, store)
    print(f"new LLM answers kept in {_shown(part)}" if part else "no new LLM answers")
    return part


def seed_list(text: str) -> list[int]:
    """``--seeds`` as every benchmark script reads it: seed values, comma-separated."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--seeds takes seed values such as 42,43,44; got {text!r}"
        ) from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds needs at least one seed, e.g. 42")
    if any(seed < 10 for seed in seeds):
        # the scripts once took a count here: '--seeds 3' must not silently train seed 3
        raise argparse.ArgumentTypeError(
            f"--seeds lists seed values (e.g. 42,43,44), not a count; got {text!r}"
        )
    return seeds


def add_seeds_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seeds",
        type=seed_list,
        default=None,
        help="train these seeds for every row asked for, e.g. 44 or 42,43,44 (default: "
        "42,43,44 for the multi-seed rows, 42 for the others)",
    )


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every training benchmark takes, spelled and meant the same in each (a lent GPU's
    benchmarks/device/grid.sh appends --data, --device and --max-minutes to any of them); apply
    --max-minutes and --device with ``with_run_settings``."""
    parser.add_argument(
        "--data",
        default=str(ROOT.parent / "shared" / "data"),
        help="the shared data folder (default: ../shared/data beside the project)",
    )
    add_seeds_argument(parser)
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="cap on epochs (default: the protocol's, with early stopping); part of a run's name",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="pause each run after this long; the next call resumes it",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="train on this device (cuda on a lent GPU); not part of a run's name, so a run "
        "paused on one machine continues on another",
    )


def grid_seeds(multi_seed: bool) -> list[int]:
    """The grid's own seeds for a row: all of SEEDS for a multi-seed row, else the first."""
    return list(SEEDS) if multi_seed else [SEEDS[0]]


def seeds_to_train(args: argparse.Namespace, multi_seed: bool) -> list[int]:
    """The seeds one row trains: ``--seeds`` if given, else the grid's own for that row."""
    return list(args.seeds) if args.seeds else grid_seeds(multi_seed)


def whole_grid(args: argparse.Namespace, **grid) -> argparse.Namespace:
    """A copy of the invocation's arguments with the grid set to all of it: a report covers every
    row, whatever part of the grid this invocation trained, so one run never drops another's."""
    return argparse.Namespace(**{**vars(args), **grid})


def kept_section(name: str, fresh: list[str], seen: int, store: Path = SECTIONS) -> list[str]:
    """A report section built from ``cache/``, kept in git beside the run records.

    ``seen`` says how much of the cache went into ``fresh`` (answers, LLM users, timing rows).
    The fuller of this machine's section and the kept one wins, so a report regenerated on a
    machine whose cache is empty or behind never drops what an earlier machine measured.
    """
    record = store / f"{name}.json"
    kept = json.loads(record.read_text(encoding="utf-8")) if record.exists() else None
    if kept and kept["seen"] > seen:
        return [
            *kept["lines"],
            "",
            f"(Kept on {kept['date']} in `{record.relative_to(ROOT)}`: the `cache/` of the "
            f"machine that wrote this report held less ({seen} vs {kept['seen']}).)",
            "",
        ]
    if seen > 0:  # nothing measured here: nothing to keep
        store.mkdir(parents=True, exist_ok=True)
        text = {"date": str(date.today()), "seen": seen, "lines": fresh}
        record.write_text(json.dumps(text, indent=1) + "\n", encoding="utf-8")
    return fresh


def kept_blocks(
    name: str, blocks: list[tuple[str, list[str], int]], store: Path = SECTIONS
) -> list[str]:
    """A report section of independent blocks (one stage's line, one table, ...), each kept in
    git like ``kept_section`` and chosen on its own: the fuller of this machine's block and
    the kept one wins. A machine that holds one stage in full and another not at all then
    shows the first as it is now and the second as an earlier machine measured it.

    ``blocks`` are ``(key, lines, seen)`` in report order; a kept block whose key is no longer
    produced is shown after them, so nothing measured is dropped.
    """
    record = store / f"{name}.json"
    kept = (
        json.loads(record.read_text(encoding="utf-8")).get("blocks", {}) if record.exists() else {}
    )
    lines: list[str] = []
    chosen: dict[str, dict] = {}
    older: set[str] = set()
    produced = {key for key, _, _ in blocks}
    gone = [(key, [], 0) for key in kept if key not in produced]
    for key, fresh, seen in [*blocks, *gone]:
        previous = kept.get(key)
        if previous and previous["seen"] > seen:
            lines += previous["lines"]
            chosen[key] = previous
            older.add(previous["date"])
            continue
        lines += fresh
        if seen > 0:  # nothing measured here: nothing to keep
            chosen[key] = {"date": str(date.today()), "seen": seen, "lines": fresh}
    if older:
        lines += [
            "",
            f"(Some blocks above are kept in `{record.relative_to(ROOT)}` from "
            f"{', '.join(sorted(older))}: the `cache/` of the machine that wrote this report held "
            "less for them.)",
            "",
        ]
    if chosen:
        store.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"blocks": chosen}, indent=1) + "\n"
        record.write_text(text, encoding="utf-8")
    return lines


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


def main(argv: list[str] | None = None) -> None:
    """``python benchmarks/run_records.py keep runs/D/M/HASH ...``: keep runs stopped from outside
    (a killed process leaves a consistent ``state.pt``: it is written atomically each epoch).
    ``python benchmarks/run_records.py keep-llm``: keep the LLM answers of a stopped LLM stage
    (every answer is in the response cache as soon as it arrives)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("action", choices=["keep", "keep-llm"])
    parser.add_argument("directories", nargs="*", type=Path)
    args = parser.parse_args(argv)
    if args.action == "keep-llm":
        keep_this_machines_llm_answers()
        return
    if not args.directories:
        parser.error("keep needs run directories")
    runs = ROOT / "runs"
    for directory in args.directories:
        directory = directory.resolve()
        if not directory.is_relative_to(runs) or not (directory / "config.yaml").exists():
            raise SystemExit(f"{directory}: not a run directory under {runs}")
        if _finished(directory):
            print(f"{directory.relative_to(ROOT)}: finished -> {keep(directory, runs)}")
            continue
        where = keep_inflight(directory, runs)
        print(
            f"{directory.relative_to(ROOT)}: {'in flight -> ' if where else 'no state.pt'}{where or ''}"
        )


if __name__ == "__main__":
    main()
