"""Training and evaluation speed side by side with RecBole 1.2.1, in one run on one machine.

    python benchmarks/speed.py [--data ../shared/data] [--recbole-python PATH] [--epochs 1]

RecBole is installed in its own venv (it pins old libraries):
    python -m venv ../recbole-venv && ../recbole-venv/bin/pip install torch==2.13.0 recbole==1.2.1
    ../recbole-venv/bin/pip install "numpy<2" "scipy<1.14" "pandas<2.3"   # RecBole 1.2.1 predates NumPy 2
Writes benchmarks/results/speed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from llmseqrec.data.prepare import prepare_preset  # noqa: E402
from llmseqrec.evaluation.config import EvalConfig  # noqa: E402
from llmseqrec.evaluation.ranking import rank_users  # noqa: E402
from llmseqrec.training.config import build_run_config  # noqa: E402
from llmseqrec.training.trainer import Trainer  # noqa: E402


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def sasrec_epoch_flops(trainer: Trainer) -> float:
    """Analytic FLOPs of one SASRec epoch (forward x3 for backward), matmuls only."""
    cfg = trainer.model.backbone.config
    d, layers, n = cfg.hidden_size, cfg.num_layers, trainer.dataset.n_items
    rows = trainer.windows[:, 1:]
    positions = float((rows > 0).sum())
    # per real position: QKV+O (4 d^2) + FFN (2 d^2) per layer, attention ~ 2 L d, head d N.
    length = rows.shape[1]
    per_position = layers * (6 * d * d + 2 * length * d) + d * n
    return 3 * 2 * per_position * positions


def time_epoch(
    dataset, model: str, protocol: str, bf16: bool, seed: int = 42, bucket: bool = False
) -> dict:
    config = build_run_config(
        dataset.name,
        model,
        protocol=protocol,
        overrides={"train": {"epochs": 1, "bf16": bf16, "seed": seed, "bucket_by_length": bucket}},
    )
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, dataset, Path(tmp), progress=False)
        # warm-up: a few batches
        from llmseqrec.training.batches import iterate_batches

        for i, batch in enumerate(
            iterate_batches(trainer.windows, trainer.window_users, 128, np.random.default_rng(0))
        ):
            if i == 2:
                break
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss, _ = trainer.recommendation_loss(batch)
            loss.backward()
        trainer.optimiser.zero_grad()
        start = time.perf_counter()
        rng = np.random.default_rng(1)
        for batch in iterate_batches(
            trainer.windows, trainer.window_users, config.train.batch_size, rng, bucket=bucket
        ):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss, _ = trainer.recommendation_loss(batch)
            trainer.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            trainer.optimiser.step()
        seconds = time.perf_counter() - start
        positions = int((trainer.windows[:, 1:] > 0).sum())
        flops = sasrec_epoch_flops(trainer) if model == "sasrec" else None
        start = time.perf_counter()
        ranks = rank_users(
            trainer.model,
            dataset,
            EvalConfig(ranking="full", mask_history=True),
            "test",
            trainer.max_len,
            autocast_bf16=bf16,
        )
        eval_seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "positions": positions,
        "flops": flops,
        "eval_users_per_s": len(ranks) / eval_seconds,
    }


def write_recbole_atomic(dataset, folder: Path) -> None:
    """ML-1M as a RecBole .inter file, the within-user order as the timestamp."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{dataset.name}.inter", "w") as handle:
        handle.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for user in range(dataset.n_users):
            for position, item in enumerate(dataset.sequence(user).tolist()):
                handle.write(f"{user + 1}\t{item}\t{position}\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument(
        "--recbole-python", default=str(ROOT.parent / "recbole-venv" / "bin" / "python")
    )
    parser.add_argument("--recbole-batches", type=int, default=40)
    parser.add_argument("--models", default="sasrec,gru4rec,bert4rec")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "speed.md"))
    args = parser.parse_args()
    cache = ROOT / "cache"
    dataset = prepare_preset("ml-1m", Path(args.data), cache=cache)
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(
        f"matmul peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s", flush=True
    )
    rows = []
    recbole_names = {"sasrec": "SASRec", "gru4rec": "GRU4Rec", "bert4rec": "BERT4Rec"}
    atomic = Path(tempfile.mkdtemp()) / "recbole"
    write_recbole_atomic(dataset, atomic / "ml-1m")
    for model in args.models.split(","):
        ours = {}
        for bf16 in (False, True):
            ours[bf16] = time_epoch(dataset, model, "p-lru", bf16)
            print(model, "bf16" if bf16 else "fp32", json.dumps(ours[bf16]), flush=True)
        ours["bucket"] = time_epoch(dataset, model, "p-lru", True, bucket=True)
        print(model, "bf16 + length buckets", json.dumps(ours["bucket"]), flush=True)
        recbole = None
        if Path(args.recbole_python).exists():
            out = atomic / f"{model}.json"
            cmd = [
                args.recbole_python,
                str(ROOT / "benchmarks" / "_recbole_epoch.py"),
                str(atomic),
                "ml-1m",
                recbole_names[model],
                "200",
                str(args.recbole_batches),
                str(out),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=atomic)
            if proc.returncode == 0:
                recbole = json.loads(out.read_text())
                print(model, "recbole", json.dumps(recbole), flush=True)
            else:
                print(proc.stderr[-2000:], flush=True)
        rows.append((model, ours, recbole))
    load = os.getloadavg()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    lines = [
        "# Training and evaluation speed (ML-1M)",
        "",
        f"Machine: {os.cpu_count()} cores, {cpu}; torch {torch.__version__}, {torch.get_num_threads()} threads; {date.today()}.",
        "Command: `python benchmarks/speed.py` (one run, same machine, same data for every row).",
        "",
        "Protocol: ML-1M (6,040 users / 3,706 items, leave-one-out), max length 200, d = 64, 2 blocks (GRU4Rec 1 layer),",
        "full-softmax CE, batch 128, one epoch over the training prefixes after 2 warm-up batches; evaluation = full",
        "ranking of the test item over all items with history masking.",
        "",
        f"Dense matmul peak measured in this run (2048x2048): fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s.",
        "",
        "| model | ours fp32 s/epoch | ours bf16 s/epoch | ours bf16 + length buckets s/epoch | RecBole 1.2.1 s/epoch (extrapolated) | speed-up (ours bf16 vs RecBole) | loss positions/s ours bf16 | RecBole samples/s | eval users/s (bf16) | share of bf16 peak |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, ours, recbole in rows:
        f32, b16, bucketed = ours[False], ours[True], ours["bucket"]
        share = f"{b16['flops'] / b16['seconds'] / 1e9 / peak['bf16']:.1%}" if b16["flops"] else "-"
        if recbole:
            rb = f"{recbole['epoch_seconds']:.0f}"
            ratio = f"{recbole['epoch_seconds'] / b16['seconds']:.1f}x"
            rb_rate = f"{128 / recbole['seconds_per_batch']:.0f}"
        else:
            rb, ratio, rb_rate = "not run", "-", "-"
        lines.append(
            f"| {model} | {f32['seconds']:.1f} | {b16['seconds']:.1f} | {bucketed['seconds']:.1f} | {rb} | {ratio} | {b16['positions'] / b16['seconds']:.0f} | {rb_rate} | {b16['eval_users_per_s']:.0f} | {share} |"
        )
    lines += [
        "",
        f"Peak memory of this benchmark process (max RSS): {peak_rss:.0f} MB.",
        f"Load average at the end of the run: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min; above 2 means",
        "other work shared the 2 cores, which slows every row of this run alike but inflates absolute seconds).",
        "",
        "Notes:",
        "- RecBole trains on every prefix of every training sequence as a separate sample (about 1M samples per",
        "  ML-1M epoch, loss at the last position of each), while we train each sequence once with the loss at every",
        "  position (SASRec's own scheme), histories longer than 200 cut into windows (p-lru, as LRURec's loader): both",
        "  see every training interaction as a target once per epoch. RecBole's epoch time is",
        f"  extrapolated from {args.recbole_batches} timed batches of 128 after 3 warm-up batches.",
        "- 'length buckets' (train.bucket_by_length=true) batches rows of similar length so padded columns are trimmed;",
        "  it is an option, off by default, because batch composition is no longer uniformly random.",
        "- 'share of bf16 peak' counts only the matmul FLOPs of SASRec (projections, attention, FFN, output head; x3",
        "  for the backward pass) against the bf16 square-matmul throughput measured above.",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
