"""The LLMSeR LLM stage on two chat backends, same users, same prompts, one run.

    python benchmarks/llm_backends.py [--dataset office] [--users 16] [--threads 2]

The real SNF + ARV calls (grammar-constrained, with reason) for the first ``--users`` users of
the dataset's full LLMSeR stage (its offline models and candidate pools, built or restored as
``benchmarks/llmser.py --stage`` does), answered by
- ``llamacpp``: the packaged SmolLM2-135M-Instruct as its Q4_0 copy, 16 parallel slots (the
  stage's default), and
- ``transformers``: the same packaged GGUF dequantised by transformers, batches of 16 (on CPU
  each prompt read alone, unpadded, then decoded as a batch that drops its ended rows), in each
  weight type asked for (bf16 uses AVX512-BF16/AMX where the CPU has them); the grammar is held
  by llguidance token masks.
No response cache. Writes ``benchmarks/results/llm_backends.md``: wall time, tokens, seconds per
user, the speed ratio against llama.cpp, how often each backend's answers ground (SNF/ARV
fallbacks), and how often two backends pick the same items. The weight types differ (4-bit
llama.cpp kernels vs dequantised bf16/fp32), so their greedy answers differ too: a faster
backend is a different LLM row, not the same row sooner.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from llmser import llmser_options, make_config  # noqa: E402
from run_records import restore_artefacts  # noqa: E402

from llmseqrec import paths  # noqa: E402
from llmseqrec.data.prepare import prepare_preset  # noqa: E402
from llmseqrec.enhancers.llmser import LLMSeR  # noqa: E402
from llmseqrec.machine import cpu_model  # noqa: E402
from llmseqrec.text import ChatConfig, ChatModel  # noqa: E402
from llmseqrec.training.run import enhancer_workdir  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--dataset", default="office")
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--dtypes", default="bfloat16,float32", help="transformers weight types")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/llm_backends.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    restore_artefacts(paths.cache_root())
    data = prepare_preset(args.dataset, Path(args.data))
    config = make_config(args.dataset, "sasrec", "llmser", llmser_options(None), "p-s100", 42, None)
    enhancer = LLMSeR(dict(config.enhancer))
    enhancer.configure(config)
    workdir = enhancer_workdir(config, data)
    directory = enhancer.stage_dir(data, workdir)
    directory.mkdir(parents=True, exist_ok=True)
    candidates = enhancer.candidate_pools(data, workdir, directory)
    forward = enhancer.forward_model(data, workdir)
    texts = enhancer.item_texts(data)
    users = np.arange(min(args.users, data.split.n_users))
    load_before = os.getloadavg()[0]

    backends = {"llama.cpp, Q4_0 copy, 16 slots": ChatConfig(threads=args.threads)}
    for dtype in args.dtypes.split(","):
        backends[f"transformers, {dtype}, batch 16"] = ChatConfig(
            backend="transformers", device="cpu", dtype=dtype, batch_size=16, context_length=2048
        )
    results: dict[str, dict] = {}
    for name, chat_config in backends.items():
        chat = ChatModel(chat_config, use_cache=False)
        chat.generate(["warm up"], max_tokens=4)  # loading is not the stage's cost
        chat.usage = type(chat.usage)()
        enhancer.chat_model = chat
        started = time.perf_counter()
        out = enhancer._process_chunk(data, users, candidates, forward, texts, True)
        wall = time.perf_counter() - started
        counters = json.loads(str(out["counters"]))
        offsets = out["pseudo_offsets"]
        pseudo = [
            tuple(out["pseudo_items"][offsets[i] : offsets[i + 1]]) for i in range(len(users))
        ]
        results[name] = {"wall": wall, **counters, "pseudo": pseudo, "picked": out["picked"],
                         "omega": out["omega"], "identity": chat.identity}  # fmt: skip
        print(name, f"{wall:.1f}s", {k: v for k, v in counters.items()}, flush=True)
        chat.close()
        enhancer.chat_model = None

    reference = next(iter(results))
    lines = [
        "# LLMSeR LLM stage: llama.cpp against transformers",
        "",
        f"Measured {date.today()} on {cpu_model()} ({os.cpu_count()} cores, {args.threads} threads "
        f"per backend, load average {load_before:.2f} before the run). Reproduce: "
        f"`.venv/bin/python benchmarks/llm_backends.py --dataset {args.dataset} --users "
        f"{args.users} --threads {args.threads}`.",
        "",
        f"Workload: the real LLMSeR SNF and ARV calls (with reason, answers held to the stage's "
        f"GBNF grammars) for the first {len(users)} users of `{args.dataset}` (`p-s100` stage "
        "options, offline models and candidate pools of `benchmarks/llmser.py --stage`), greedy, "
        "no response cache, model loading excluded. Same prompts for every backend (context "
        "2,048 tokens).",
        "",
        "| backend | model identity | wall s | s per user | calls | prompt tokens | answer tokens "
        "| speed vs llama.cpp | SNF fallback users | ARV fallback users | mean omega "
        "| same SNF items as llama.cpp | same ARV pick |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = results[reference]
    for name, row in results.items():
        same_snf = np.mean([a == b for a, b in zip(row["pseudo"], base["pseudo"], strict=True)])
        same_arv = float(np.mean(row["picked"] == base["picked"]))
        lines.append(
            f"| {name} | `{row['identity']}` | {row['wall']:.1f} | {row['wall'] / len(users):.2f} "
            f"| {row['calls']:.0f} | {row['tokens_in']:.0f} | {row['tokens_out']:.0f} "
            f"| {base['wall'] / row['wall']:.2f}x | {row['snf_fallback_users']:.0f} / "
            f"{row['snf_users']:.0f} | {row['arv_fallback_users']:.0f} / {row['arv_users']:.0f} "
            f"| {float(np.mean(row['omega'])):.3f} | {same_snf:.0%} | {same_arv:.0%} |"
        )
    lines += [
        "",
        "Fallback users: answers that grounded to fewer than M candidates (SNF, filled from the "
        "CCG ranking) or to none (ARV, forward top-1). The weight types differ, so the greedy "
        "answers differ: a backend switch makes a different LLM row, and the stage's options "
        "(hence its cache directory) name the backend.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
