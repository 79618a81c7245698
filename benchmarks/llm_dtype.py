"""bfloat16 against float32 for the transformers chat backend on this CPU, one thread.

The LLM stages read long prompts (prefill) and write short answers (decode); ``dtype="auto"``
picks bfloat16 wherever the CPU has native bf16. This probe loads the packaged SmolLM2-135M
as the backend does, in each weight type twice (interleaved, so drift in the machine's load
shows), and prints prompt tokens/s over three prompts of 1,100-1,200 random tokens (logits of
the last position only, as the stage reads a prompt), and decode steps/s for four rows after a
1,000-token context.

    python benchmarks/llm_dtype.py

Results and the machines they ran on: ``benchmarks/results/llmser.notes.md`` (stop 48).
"""

from __future__ import annotations

import time

import torch

from llmseqrec.machine import cpu_model
from llmseqrec.text.llm import ChatConfig, TransformersBackend


def probe(dtype: str) -> tuple[float, float]:
    model, _ = TransformersBackend(
        ChatConfig(backend="transformers", dtype=dtype, threads=1)
    )._load()
    torch.manual_seed(0)
    with torch.inference_mode():
        model(torch.randint(100, 1000, (1, 64)))  # warm-up
        started, tokens = time.perf_counter(), 0
        for length in (1100, 1150, 1200):
            model(torch.randint(100, 1000, (1, length)), logits_to_keep=1)  # as the stage reads
            tokens += length
        prefill = tokens / (time.perf_counter() - started)
        cache = model(torch.randint(100, 1000, (4, 1000)), use_cache=True).past_key_values
        started = time.perf_counter()
        for _ in range(30):
            step = torch.randint(100, 1000, (4, 1))
            cache = model(step, past_key_values=cache, use_cache=True).past_key_values
        decode = 30 / (time.perf_counter() - started)
    return prefill, decode


def main() -> None:
    torch.set_num_threads(1)
    print(f"{cpu_model()}, torch {torch.__version__}, one thread, SmolLM2-135M")
    for dtype in ("bfloat16", "float32", "bfloat16", "float32"):
        prefill, decode = probe(dtype)
        print(
            f"{dtype}: prefill {prefill:.0f} prompt tokens/s, decode (4 rows) {decode:.1f} steps/s"
        )


if __name__ == "__main__":
    main()
