"""Full-softmax cross-entropy on CPU: the fused chunked loss of ``llmseqrec.training.losses``
against the formulation it replaced (chunked, but with fresh tensors and ``logsumexp``'s own
temporary per chunk; kept here as the reference) and plain autograd over the whole logit
matrix, then one whole training step of the trainer with each loss, in one run, one thread.

    python benchmarks/fused_ce.py [--repeats 7] [--data ../shared/data]

Shapes are those of real batches: the mean number of loss positions per batch of the dataset
under the protocol (real positions only), d = 64, every item a class.
Writes benchmarks/results/fused_ce.md.
"""

from __future__ import annotations

import argparse
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

from run_records import write_report  # noqa: E402

from llmseqrec.data.prepare import prepare_preset  # noqa: E402
from llmseqrec.machine import cpu_model  # noqa: E402
from llmseqrec.training import trainer as trainer_module  # noqa: E402
from llmseqrec.training.batches import iterate_batches  # noqa: E402
from llmseqrec.training.config import build_run_config  # noqa: E402
from llmseqrec.training.losses import (  # noqa: E402
    DEFAULT_CHUNK_ROWS,
    fused_softmax_ce,
    reference_softmax_ce,
)
from llmseqrec.training.trainer import Trainer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "fused_ce.md"
# (dataset, protocol, model): Beauty-sized catalogue with short histories, ML-1M's long ones.
CASES = [("beauty", "p-lru", "lrurec"), ("ml-1m", "p-lru", "sasrec")]


class PreviousChunkedCE(torch.autograd.Function):
    """The formulation before 2026-12-02: per chunk a new logits tensor, ``logsumexp`` (which
    makes its own shifted copy), then softmax by subtract-and-exp in place."""

    @staticmethod
    def forward(ctx, hidden, table, targets, compute_dtype, chunk_rows):  # type: ignore[override]
        table_c = table.detach().to(compute_dtype)
        grad_hidden = torch.empty_like(hidden)
        grad_table = torch.zeros(table.shape, dtype=torch.float32)
        total = torch.zeros((), dtype=torch.float32)
        for start in range(0, hidden.shape[0], chunk_rows):
            stop = min(start + chunk_rows, hidden.shape[0])
            h = hidden[start:stop].detach().to(compute_dtype)
            logits = (h @ table_c.T).float()
            lse = torch.logsumexp(logits, dim=1)
            rows = torch.arange(stop - start)
            total += (lse - logits[rows, targets[start:stop]]).sum()
            probs = torch.exp_(logits.sub_(lse[:, None]))
            probs[rows, targets[start:stop]] -= 1.0
            probs_c = probs.to(compute_dtype)
            grad_hidden[start:stop] = (probs_c @ table_c).to(hidden.dtype)
            grad_table.add_((probs_c.T @ h).float())
        ctx.save_for_backward(grad_hidden, grad_table)
        ctx.normaliser = float(hidden.shape[0])
        return total / ctx.normaliser

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        grad_hidden, grad_table = ctx.saved_tensors
        scale = grad_output / ctx.normaliser
        return grad_hidden * scale, grad_table * scale, None, None, None


def previous_ce(
    hidden,
    table,
    targets,
    weights=None,
    normaliser=None,
    compute_dtype=None,
    chunk_rows=DEFAULT_CHUNK_ROWS,
):
    if weights is not None or normaliser not in (None, float(hidden.shape[0])):
        raise NotImplementedError("the benchmark's reference covers the unweighted mean only")
    return PreviousChunkedCE.apply(
        hidden, table, targets, compute_dtype or torch.float32, chunk_rows
    )


def plain_ce(hidden, table, targets, compute_dtype=torch.float32, **_):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=compute_dtype == torch.bfloat16):
        return reference_softmax_ce(hidden, table, targets)


def interleaved(steps: dict, repeats: int) -> dict[str, float]:
    """Median seconds of each step, run in turns so that load hits every variant alike."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(repeats + 1):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            if round_:  # the first round warms up
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def trainer_for(dataset, name: str, protocol: str, model: str) -> Trainer:
    config = build_run_config(name, model, protocol=protocol)
    return Trainer(config, dataset, Path(tempfile.mkdtemp()), progress=False)


PREVIOUS, CURRENT = "chunked (previous)", "fused, in place (current)"
LOSSES = {"plain autograd": plain_ce, PREVIOUS: previous_ce, CURRENT: fused_softmax_ce}
STEP_LOSSES = {PREVIOUS: previous_ce, CURRENT: fused_softmax_ce}


def loss_timings(name: str, positions: int, items: int, dtype: torch.dtype, repeats: int):
    """Rows (dataset, positions, classes, dtype, loss, seconds, speed-up, grad error)."""
    torch.manual_seed(0)
    hidden = torch.randn(positions, 64, requires_grad=True)
    table = (torch.randn(items, 64) * 0.1).requires_grad_(True)
    targets = torch.randint(1, items, (positions,))

    def step(loss_fn):
        hidden.grad = table.grad = None
        loss_fn(hidden, table, targets, compute_dtype=dtype).backward()
        return hidden.grad.clone(), table.grad.clone()

    grads = {label: step(loss_fn) for label, loss_fn in LOSSES.items()}
    seconds = interleaved({label: lambda f=f: step(f) for label, f in LOSSES.items()}, repeats)
    rows = []
    for label, s in seconds.items():
        error = max(
            (grads[label][i] - grads["plain autograd"][i]).abs().max().item() for i in (0, 1)
        )
        dtype_name = str(dtype).split(".")[1]
        rows.append((name, positions, items, dtype_name, label, s, seconds[PREVIOUS] / s, error))
        print(rows[-1], flush=True)
    return rows


def step_timings(trainers: dict[str, Trainer], repeats: int) -> dict[str, float]:
    """One whole training step (forward, loss, backward, AdamW) of each trainer with its loss."""
    iterators = {
        label: iterate_batches(
            t.windows, t.window_users, t.config.train.batch_size, np.random.default_rng(0)
        )
        for label, t in trainers.items()
    }

    def train_step(label: str) -> None:
        saved = trainer_module.fused_softmax_ce
        trainer_module.fused_softmax_ce = STEP_LOSSES[label]
        try:
            t = trainers[label]
            loss, _ = t.recommendation_loss(next(iterators[label]))
            t.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            t.optimiser.step()
        finally:
            trainer_module.fused_softmax_ce = saved

    return interleaved({label: lambda lb=label: train_step(lb) for label in trainers}, repeats)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    loss_rows, step_rows = [], []
    for name, protocol, model in CASES:
        dataset = prepare_preset(name, Path(args.data))
        trainers = {label: trainer_for(dataset, name, protocol, model) for label in STEP_LOSSES}
        some = next(iter(trainers.values()))
        batches = -(-len(some.windows) // some.config.train.batch_size)
        positions = int(round(int((some.windows[:, 1:] > 0).sum()) / batches))
        for dtype in (torch.float32, torch.bfloat16):
            loss_rows += loss_timings(name, positions, dataset.n_items + 1, dtype, args.repeats)
        seconds = step_timings(trainers, args.repeats)
        for label, s in seconds.items():
            step_rows.append((name, protocol, model, label, s, seconds[PREVIOUS] / s))
            print(step_rows[-1], flush=True)
    cpu = cpu_model()
    load_after = os.getloadavg()
    lines = [
        "# Full-softmax cross-entropy: loss + gradients, and a whole training step (CPU)",
        "",
        f"Measured {date.today()} by `python benchmarks/fused_ce.py` on {cpu}, "
        f"{os.cpu_count()} cores, one torch thread; load average {load_before[0]:.2f} before and "
        f"{load_after[0]:.2f} after the run (above 1, other jobs shared the cores: absolute "
        "times are inflated, the variants of one row group ran in turns, so their ratios hold).",
        f"Median of {args.repeats} timed calls after one warm-up; chunks of {DEFAULT_CHUNK_ROWS} "
        "rows; d = 64.",
        "",
        "## Loss and both gradients",
        "",
        "| dataset | positions | classes | matmul dtype | loss | ms | speed-up vs previous "
        "| max abs grad diff vs plain |",
        "|---|---:|---:|---|---|---:|---:|---:|",
    ]
    for name, positions, items, dtype, label, s, speedup, error in loss_rows:
        lines.append(
            f"| {name} | {positions} | {items} | {dtype} | {label} | {s * 1e3:.1f} | "
            f"{speedup:.2f}x | {error:.1e} |"
        )
    lines += [
        "",
        "## One training step (forward, loss, backward, AdamW), fp32",
        "",
        "| dataset | protocol | model | loss | ms / step | speed-up vs previous |",
        "|---|---|---|---|---:|---:|",
    ]
    for name, protocol, model, label, s, speedup in step_rows:
        lines.append(
            f"| {name} | {protocol} | {model} | {label} | {s * 1e3:.0f} | {speedup:.2f}x |"
        )
    lines.append("")
    write_report(RESULTS, "\n".join(lines))  # the reading is in fused_ce.notes.md
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
