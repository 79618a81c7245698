"""Data-preparation benchmark: cold and cached ``prepare()`` time and peak memory per staged dataset.

Every measurement runs in a fresh subprocess so that "cold" really is cold (no warm imports, no
in-process caches) and peak RSS (``resource.getrusage(...).ru_maxrss``) belongs to one dataset.

* cold:   a new, empty cache directory; ``prepare()`` reads the raw files, builds and saves.
* cached: a second process on the same cache; ``prepare()`` hashes the source files and loads
  the saved dataset.

Times are of the ``prepare()`` call itself (imports reported separately), median of
``--repeats`` runs. Peak RSS is the process maximum (includes the interpreter, NumPy, Polars).

    .venv/bin/python benchmarks/data_prep.py            # all staged presets, writes the results
    .venv/bin/python benchmarks/data_prep.py --presets beauty ml-1m --repeats 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "data_prep.md"
TARGETS = {  # preset -> (cold seconds, cached seconds)
    "beauty": (5.0, 0.5),
    "ml-1m": (10.0, None),
}


def shared_data_root() -> Path:
    override = os.environ.get("LLMSEQREC_SHARED_DATA")
    return Path(override) if override else REPO.parent / "shared" / "data"


def child(preset: str, root: str, cache: str) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    import resource

    started = time.perf_counter()
    from llmseqrec.data.prepare import prepare_preset

    imported = time.perf_counter()
    rss_after_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    dataset = prepare_preset(preset, Path(root), cache=Path(cache))
    done = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps(
            {
                "import_s": imported - started,
                "prepare_s": done - imported,
                "rss_import_mb": rss_after_import / 1024,
                "rss_peak_mb": peak / 1024,
                "users": dataset.n_users,
                "items": dataset.n_items,
                "interactions": dataset.n_interactions,
            }
        )
    )


def measure(preset: str, root: Path, cache: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", preset, str(root), str(cache)],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(presets: list[str], repeats: int, root: Path) -> list[dict]:
    rows = []
    for preset in presets:
        cold, cached = [], []
        for _ in range(repeats):
            cache = Path(tempfile.mkdtemp(prefix=f"bench-{preset}-"))
            try:
                cold.append(measure(preset, root, cache))
                cached.append(measure(preset, root, cache))
            finally:
                shutil.rmtree(cache, ignore_errors=True)
        row = {
            "preset": preset,
            "users": cold[0]["users"],
            "items": cold[0]["items"],
            "interactions": cold[0]["interactions"],
            "cold_s": statistics.median(r["prepare_s"] for r in cold),
            "cached_s": statistics.median(r["prepare_s"] for r in cached),
            "import_s": statistics.median(r["import_s"] for r in cold + cached),
            "cold_rss_mb": max(r["rss_peak_mb"] for r in cold),
            "cached_rss_mb": max(r["rss_peak_mb"] for r in cached),
            "import_rss_mb": statistics.median(r["rss_import_mb"] for r in cold),
        }
        rows.append(row)
        print(
            f"{preset:13s} cold {row['cold_s']:.3f}s cached {row['cached_s']:.3f}s "
            f"peak RSS {row['cold_rss_mb']:.0f}/{row['cached_rss_mb']:.0f} MB",
            flush=True,
        )
    return rows


def verdict(row: dict) -> str:
    target = TARGETS.get(row["preset"])
    if not target:
        return ""
    parts = []
    cold_t, cached_t = target
    parts.append(f"cold < {cold_t:g} s: {'met' if row['cold_s'] < cold_t else 'MISSED'}")
    if cached_t is not None:
        parts.append(
            f"cached < {cached_t:g} s: {'met' if row['cached_s'] < cached_t else 'MISSED'}"
        )
    return "; ".join(parts)


def render(rows: list[dict], repeats: int, command: str) -> str:
    from llmseqrec.machine import cpu_model  # here: the child's import time stays clean

    lines = [
        "# Data preparation benchmark",
        "",
        f"Protocol: machine {platform.node() or 'host'} ({os.cpu_count()} CPUs as seen by Python, "
        f"nproc {len(os.sched_getaffinity(0))}, {cpu_model()}), Python {platform.python_version()}, "
        f"date {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}, command `{command}`.",
        "",
        f"Each figure is the median of {repeats} runs, each run in a fresh subprocess. *Cold*: empty "
        "cache, read the raw files, filter, renumber, save. *Cached*: a new process on the same "
        "cache (hash the source files, load Parquet/NumPy). Times are the `prepare()` call only; "
        "importing `llmseqrec.data` costs the *import* column once per process. *Peak RSS* is the "
        "process maximum (`ru_maxrss`), including about "
        f"{statistics.median(r['import_rss_mb'] for r in rows):.0f} MB for Python + NumPy + Polars "
        "after import.",
        "",
        "| dataset | users | items | interactions | cold (s) | cached (s) | import (s) "
        "| peak RSS cold (MB) | peak RSS cached (MB) | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['users']:,} | {r['items']:,} | {r['interactions']:,} "
            f"| {r['cold_s']:.3f} | {r['cached_s']:.3f} | {r['import_s']:.2f} "
            f"| {r['cold_rss_mb']:.0f} | {r['cached_rss_mb']:.0f} | {verdict(r)} |"
        )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
        return
    from llmseqrec.data.prepare import PRESETS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="*", default=list(PRESETS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=shared_data_root())
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"staged datasets not found at {args.data} (set LLMSEQREC_SHARED_DATA or --data)")
    rows = run(args.presets, args.repeats, args.data)
    command = "python " + " ".join([os.path.relpath(__file__, REPO), *sys.argv[1:]])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(rows, args.repeats, command), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
