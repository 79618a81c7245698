"""Memory of the transformers chat backend on CPU when every forward has a new input shape.

The LLMSeR stage reads each prompt alone, so each prompt length is a new matrix shape, and
oneDNN (PyTorch's bf16 matmuls on CPU) keeps a compiled primitive per shape, 1,024 of them by
default. This probe runs forwards of the packaged SmolLM2-135M (bf16, one thread) on random
tokens, either with a new length each time (``distinct``: 64, 71, 78, ... tokens) or always 64
(``same``), and prints resident memory and time per token every 25 forwards.

    python benchmarks/onednn_shapes.py distinct 150
    ONEDNN_PRIMITIVE_CACHE_CAPACITY=0 python benchmarks/onednn_shapes.py distinct 150
    python benchmarks/onednn_shapes.py same 150

Results and the machine they ran on: ``benchmarks/results/llmser.notes.md`` (stop 47).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from llmseqrec.text.llm import ChatConfig, TransformersBackend


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmRSS line (Linux only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["distinct", "same"])
    parser.add_argument("forwards", type=int)
    parser.add_argument("--rows", type=int, default=4, help="sequences per forward")
    args = parser.parse_args()
    backend = TransformersBackend(ChatConfig(backend="transformers", dtype="bfloat16", threads=1))
    model, _ = backend._load()
    capacity = os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "default (1024)")
    print(f"mode {args.mode}, {args.rows} rows per forward, oneDNN cache capacity {capacity}")
    torch.manual_seed(0)
    with torch.inference_mode():
        for _ in range(3):  # warm-up at the first shape
            model(torch.randint(100, 1000, (args.rows, 64)))
        start_mb, started, per_token = resident_mb(), time.perf_counter(), []
        for i in range(args.forwards):
            length = 64 + (7 * i if args.mode == "distinct" else 0)
            tokens = torch.randint(100, 1000, (args.rows, length))
            began = time.perf_counter()
            model(tokens)
            per_token.append((time.perf_counter() - began) / length)
            if (i + 1) % 25 == 0:
                now = resident_mb()
                print(
                    f"{i + 1:4d} forwards (last length {length}): resident {now:.0f} MB "
                    f"(+{now - start_mb:.0f}), {1000 * sum(per_token[-25:]) / 25:.2f} ms per "
                    "token position",
                    flush=True,
                )
    print(f"total {time.perf_counter() - started:.0f} s, growth {resident_mb() - start_mb:.0f} MB")


if __name__ == "__main__":
    main()
