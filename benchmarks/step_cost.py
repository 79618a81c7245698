"""Cost of one training step of every backbone on a dataset under a protocol, and the epoch it
implies: what a row of ``backbones.py`` will take here, before it is started. One thread, fp32
(the benchmarks' setting), real batches of the protocol.

    python benchmarks/step_cost.py [--dataset ml-1m] [--protocol p-lru] [--steps 5]

Writes benchmarks/results/step_cost.md (one section per dataset and protocol).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from run_records import SECTIONS, kept_section, write_report  # noqa: E402

from llmseqrec.data.prepare import prepare_preset  # noqa: E402
from llmseqrec.training.batches import iterate_batches  # noqa: E402
from llmseqrec.training.config import build_run_config  # noqa: E402
from llmseqrec.training.trainer import Trainer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "step_cost.md"
# The backbones of backbones.py, in its order.
MODELS = "sasrec,gru4rec,bert4rec,lrurec,narm,fmlprec,hstu"


def step_seconds(trainer: Trainer, steps: int) -> float:
    """Median seconds of a training step (forward, loss, backward, optimiser) after one warm-up."""
    batches = iterate_batches(
        trainer.windows,
        trainer.window_users,
        trainer.config.train.batch_size,
        np.random.default_rng(0),
    )
    times = []
    for step in range(steps + 1):
        batch = next(batches)
        start = time.perf_counter()
        loss, _ = trainer.recommendation_loss(batch)
        trainer.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimiser.step()
        if step:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--protocol", default="p-lru")
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = prepare_preset(args.dataset, Path(args.data))
    load_before = os.getloadavg()[0]
    rows = []
    for model in args.models.split(","):
        config = build_run_config(args.dataset, model, protocol=args.protocol)
        trainer = Trainer(config, dataset, Path(tempfile.mkdtemp()), progress=False)
        batches = -(-len(trainer.windows) // config.train.batch_size)
        seconds = step_seconds(trainer, args.steps)
        rows.append((model, seconds, batches))
        print(f"{model}: {seconds * 1e3:.0f} ms/step x {batches} batches", flush=True)
    fastest = min(s for _, s, _ in rows)
    lines = [
        f"## {args.dataset} under `{args.protocol}`",
        "",
        f"Measured {date.today()} by `python benchmarks/step_cost.py --dataset {args.dataset} "
        f"--protocol {args.protocol}`: one torch thread, fp32, median of {args.steps} steps "
        f"after one warm-up; load average {load_before:.2f} before the run (above 1, other jobs "
        "shared the cores and every figure is inflated alike). The epoch figure is steps x "
        "batches, without the validation passes.",
        "",
        "| model | ms / step | batches / epoch | s / epoch (steps only) | vs fastest |",
        "|---|---:|---:|---:|---:|",
    ]
    for model, seconds, batches in rows:
        lines.append(
            f"| {model} | {seconds * 1e3:.0f} | {batches} | {seconds * batches:.0f} | "
            f"{seconds / fastest:.2f}x |"
        )
    lines.append("")
    # one kept section per dataset and protocol: a run for one never drops the others
    kept_section(f"step-cost-{args.dataset}-{args.protocol}", lines, 1)
    report = ["# Training step cost per backbone (CPU, one thread)", ""]
    for record in sorted(SECTIONS.glob("step-cost-*.json")):
        report += json.loads(record.read_text(encoding="utf-8"))["lines"]
    write_report(RESULTS, "\n".join(report))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
