"""LRURec's linear recurrence on CPU: the chunked matrix form in ``llmseqrec.models.lrurec``
against the log-depth complex scan it replaced (kept here as the reference), one layer,
forward + backward, one torch thread, in one run.

    python benchmarks/lru_recurrence.py [--repeats 7]

Writes benchmarks/results/lru_recurrence.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from llmseqrec.models import lrurec  # noqa: E402
from llmseqrec.models.lrurec import LRULayer, LRURecConfig  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "lru_recurrence.md"
# (batch, length): Beauty/Yelp/Office under every protocol (max length 50), ML-1M under p-lru (200).
SHAPES = [(256, 50), (128, 200)]


def log_depth_scan(u: torch.Tensor, log_mag: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """The previous implementation: Hillis-Steele scan over complex states, log2(L) steps."""
    h, k = u, 1
    while k < u.size(1):
        lam_k = torch.polar(torch.exp(k * log_mag), k * angle)
        h = torch.cat([h[:, :k], h[:, k:] + lam_k * h[:, :-k]], dim=1)
        k *= 2
    return h


def log_depth_forward(layer: LRULayer, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return layer._output(log_depth_scan(layer._input(x, keep), *layer.log_eigenvalues()), x)


def timed(step, repeats: int) -> float:
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    rows = []
    for batch, length in SHAPES:
        torch.manual_seed(0)
        layer = LRULayer(LRURecConfig(max_len=length, dropout=0.0, r_min=0.8, r_max=0.99))
        x = torch.randn(batch, length, 64, requires_grad=True)
        keep = torch.ones(batch, length, 1)
        keep[: batch // 2, : length // 2] = 0  # left padding on half the rows
        variants = {
            "log-depth complex scan (previous)": lambda layer=layer, x=x, keep=keep: (
                log_depth_forward(layer, x, keep)
            )
        }
        for chunk in (lrurec.CHUNK, 10_000):
            chunks = 1 if length <= 2 * chunk else -(-length // chunk)

            def chunked(chunk=chunk, layer=layer, x=x, keep=keep):
                saved, lrurec.CHUNK = lrurec.CHUNK, chunk
                try:
                    return layer(x, keep)
                finally:
                    lrurec.CHUNK = saved

            name = "matrix form, one chunk" if chunks == 1 else f"matrix form, {chunks} chunks"
            if chunk == lrurec.CHUNK:
                name += " (default)"
            elif chunks == 1 and any("one chunk" in key for key in variants):
                continue
            variants[name] = chunked
        reference = variants["log-depth complex scan (previous)"]().detach()
        base = None
        for name, forward in variants.items():
            seconds = timed(lambda f=forward: f().pow(2).sum().backward(), args.repeats)
            base = base or seconds
            error = (forward().detach() - reference).abs().max().item()
            rows.append((batch, length, name, seconds, base / seconds, error))
            print(rows[-1], flush=True)
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    lines = [
        "# LRURec linear recurrence: forward + backward of one layer (CPU)",
        "",
        f"Measured {date.today()} by `python benchmarks/lru_recurrence.py` on {cpu}, "
        f"{os.cpu_count()} cores, one torch thread (load average before the run "
        f"{load_before[0]:.2f}; background jobs were paused during it).",
        "Layer: d = 64, complex state 128, eigenvalues on the ring [0.8, 0.99], no dropout; half",
        "the rows left-padded by half the length. Median of "
        f"{args.repeats} timed steps after one warm-up.",
        "",
        "| batch | length | recurrence | ms / step | speed-up vs previous | max abs diff vs previous |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    for batch, length, name, seconds, speedup, error in rows:
        lines.append(
            f"| {batch} | {length} | {name} | {seconds * 1e3:.1f} | {speedup:.2f}x | {error:.1e} |"
        )
    lines += [
        "",
        "The log-depth scan moves the whole complex state through memory log2(L) times (slices,",
        "products, concatenations), so it is bound by memory traffic; the matrix form computes",
        "the input map, the recurrence (a lower-triangular lambda^(t-s) kernel per state channel)",
        "and the output map as dense matmuls with time and batch in the last axes, so only the",
        "d-wide input and output are transposed. Chunking keeps the kernel at chunk length for",
        "long sequences (the state entering each chunk is carried by the same kernel with",
        "lambda^C), which cuts the quadratic cost in L.",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
