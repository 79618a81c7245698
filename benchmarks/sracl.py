"""SRA-CL next to SASRec, CL4SRec, DuoRec and its own ablations, protocol P-CL (max len 20), with
the paper's Table 2/3 figures alongside and the LLM stage cost. Resumable: finished runs are read
back, interrupted ones continue (run directories are named by config hash); the LLM stage resumes
from the response cache.

    python benchmarks/sracl.py --datasets office --rows sasrec,cl4srec,duorec,sracl-raw --seeds 42
    python benchmarks/sracl.py --datasets office --llm-stage [--llm-limit 500] [--llm-threads 1] [--llm-kinds user]
    python benchmarks/sracl.py --datasets office --llm-stage --llm-threads 1 --llm-kinds user --llm-shard 0/2
                                                     # and 1/2 in a second process: one core each
    bash benchmarks/llm_lanes.sh sracl beauty 16:45  # one such shard per core until 16:45,
                                                     # restarted every 30 min (commit the answers)
    python benchmarks/sracl.py --report-only                                     # rewrite the md

Rows: sasrec, gru4rec, cl4srec, duorec; sracl (LLM summaries) and its ablations sracl-wo-cs,
sracl-wo-is, sracl-unlearnable, sracl-gru4rec (SRA-CL on GRU4Rec); the same five with raw item
text instead of LLM summaries (sracl-raw, sracl-raw-wo-cs, ...). ``w/o CL`` is SASRec itself:
with both losses off the enhancer adds no loss, no parameter and draws no random number.
Every SRA-CL row encodes --cs-sample (default 3) of the k=10 neighbours per step for the
cross-sequence positive (the paper: all k); raw-text rows average the history items' text
embeddings for the user vector. Both are stated in the report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from run_records import (  # noqa: E402
    SECTIONS,
    SEEDS,
    add_run_arguments,
    epoch_seconds_by_device,
    keep,
    kept_blocks,
    llm_answers_travel,
    restore,
    seeds_to_train,
    with_run_settings,
    write_report,
)

from llmseqrec import paths  # noqa: E402
from llmseqrec.data.prepare import load, prepare_preset  # noqa: E402
from llmseqrec.errors import ConfigError  # noqa: E402
from llmseqrec.evaluation.significance import versus_same_seeds  # noqa: E402
from llmseqrec.training.config import build_run_config, protocol_line  # noqa: E402
from llmseqrec.training.run import run_directory, train_run  # noqa: E402

RUNS = ROOT / "runs"
OUT = ROOT / "benchmarks" / "results" / "sracl.md"
DATASETS = ["beauty", "yelp", "office"]
MULTI_SEED = {"sasrec", "duorec", "sracl"}
# The LLM stage as run here: shorter answers than the defaults (128/96 tokens) so that a 2-core
# machine gets through more users; part of the artefact hash, so rows always say what they used.
LLM = {"user_tokens": 64, "item_tokens": 48, "chat": {"parallel_slots": 8, "threads": 2}}
ALL_ROWS = [
    "sasrec", "cl4srec", "duorec", "sracl", "sracl-wo-cs", "sracl-wo-is", "sracl-unlearnable",
    "sracl-raw", "sracl-raw-wo-cs", "sracl-raw-wo-is", "sracl-raw-unlearnable",
    "gru4rec", "sracl-gru4rec", "sracl-raw-gru4rec",
]  # fmt: skip
# Raw-text rows average the history items' text embeddings for the user vector: embedding the
# concatenated history text of every user costs hours of MiniLM on 2 cores.
RAW = {"text_source": "raw", "raw_user": "mean"}
# Paper figures (HR@10, NDCG@10), SRA-CL paper Table 2 as noted in shared/design/benchmarks.md.
PAPER = {
    "beauty": {"sasrec": (0.0612, 0.0336), "duorec": (0.0841, 0.0444), "sracl": (0.0924, 0.0469)},
    "yelp": {"sasrec": (0.0572, 0.0308), "duorec": (0.0747, 0.0380), "sracl": (0.0817, 0.0419)},
    "office": {"sasrec": (0.0791, 0.0348), "sracl": (0.1111, 0.0575)},
}
LABEL = {
    "sasrec": "SASRec (= SRA-CL w/o CL)",
    "cl4srec": "CL4SRec",
    "duorec": "DuoRec",
    "sracl": "SRA-CL (LLM summaries)",
    "sracl-raw": "SRA-CL raw-text (no LLM)",
    "sracl-wo-cs": "SRA-CL w/o L_CS",
    "sracl-wo-is": "SRA-CL w/o L_IS",
    "sracl-unlearnable": "SRA-CL unlearnable",
    "sracl-raw-wo-cs": "SRA-CL raw-text w/o L_CS",
    "sracl-raw-wo-is": "SRA-CL raw-text w/o L_IS",
    "sracl-raw-unlearnable": "SRA-CL raw-text unlearnable",
    "gru4rec": "GRU4Rec",
    "sracl-gru4rec": "SRA-CL on GRU4Rec",
    "sracl-raw-gru4rec": "SRA-CL raw-text on GRU4Rec",
}


def row_spec(row: str) -> tuple[str, str, dict]:
    """(model, method, enhancer options)."""
    text = RAW if "-raw" in row else dict(LLM)
    ablation = row.replace("-raw", "")
    return {
        "sasrec": ("sasrec", "none", {}),
        "gru4rec": ("gru4rec", "none", {}),
        "cl4srec": ("sasrec", "cl4srec", {}),
        "duorec": ("sasrec", "duorec", {}),
        "sracl": ("sasrec", "sracl", text),
        "sracl-wo-cs": ("sasrec", "sracl", {**text, "use_cs": False}),
        "sracl-wo-is": ("sasrec", "sracl", {**text, "use_is": False}),
        "sracl-unlearnable": ("sasrec", "sracl", {**text, "unlearnable": True}),
        "sracl-gru4rec": ("gru4rec", "sracl", text),
    }[ablation]


def backbone_row(row: str) -> str | None:
    """The plain-backbone row a row is compared with (None for the backbones themselves)."""
    model = row_spec(row)[0]
    return None if row == model else model


def make_config(dataset: str, row: str, seed: int, args: argparse.Namespace):
    model, method, options = row_spec(row)
    overrides = {
        "backbone": {"max_len": 20},
        "train": {"seed": seed, "threads": 1},
        "enhancer": options,
    }
    if method != "none":
        # Stated explicitly so the run hash differs from the runs made while dot product was
        # the default (those collapsed; see benchmarks/results/sracl.md).
        overrides["enhancer"] = {**options, "similarity": "cosine"}
    if args.epochs:
        overrides["train"]["epochs"] = args.epochs
    if method == "sracl" and args.cs_sample and options.get("use_cs", True):
        overrides["enhancer"] = {**overrides["enhancer"], "cs_sample": args.cs_sample}
    if args.patience:
        overrides["train"]["patience"] = args.patience
    config = build_run_config(dataset, model, method, protocol="p-cl", overrides=overrides)
    return with_run_settings(config, args)


def run_line(
    dataset: str, row: str, config, data, result: dict, directory: Path, started: float
) -> str:
    """What a run printed when it stopped: its figures and, beside them, its full protocol."""
    status = "finished" if result.get("finished") else "paused (rerun to continue)"
    test = result.get("test", {})
    figures = f"HR@10 {test.get('hr@10', float('nan')):.4f} NDCG@10 {test.get('ndcg@10', float('nan')):.4f}"
    seconds = time.perf_counter() - started
    return (
        f"{dataset} {row} seed {config.train.seed}: {status} in {seconds:.0f}s {figures}\n"
        f"  {protocol_line(config, data.metadata, run_dir=directory)}"
    )


def ensure_prepared(name: str, data_root: Path = ROOT.parent / "shared" / "data"):
    try:
        return load(name)
    except ConfigError:
        return prepare_preset(name, data_root)


def read_result(config) -> dict | None:
    path = run_directory(config, RUNS) / "metrics.json"
    if path.exists():
        result = json.loads(path.read_text())
        return result if result.get("finished") else None
    return None


def llm_stage(
    dataset_name: str,
    limit: int | None,
    threads: int | None = None,
    kinds: tuple[str, ...] = ("item", "user"),
    shard: tuple[int, int] = (0, 1),
) -> dict:
    from llmseqrec.enhancers.sracl import (
        LlmStageIncomplete,
        SraclOptions,
        make_chat,
        prepare_artefacts,
        run_llm_stage,
    )

    dataset = ensure_prepared(dataset_name)
    # Threads only change how the stage runs, so they stay out of LLM (training runs hash it).
    stage = {**LLM, "chat": {**LLM["chat"], **({"threads": threads} if threads else {})}}
    options = SraclOptions(**stage, llm_limit=limit)
    workdir = paths.cache_root() / dataset.name / "sracl"
    if set(kinds) != {"item", "user"} or shard != (0, 1):
        # a partial stage: the artefacts wait for the full one
        with make_chat(options) as chat:
            return run_llm_stage(dataset, options, chat, kinds=kinds, shard=shard)["cost"]
    try:
        directory = prepare_artefacts(dataset, options, workdir)
        return json.loads((directory / "cost.json").read_text())
    except LlmStageIncomplete as error:
        print(error)
    with make_chat(options) as chat:
        return run_llm_stage(dataset, SraclOptions(**stage, llm_limit=0), chat, progress=False)[
            "cost"
        ]


STAGE_COST_FILES = ("cost.json", "llm_cost.json")  # written beside a dataset's artefacts


def coverage(dataset_name: str) -> dict | None:
    """LLM stage coverage from the response cache (no model call), plus the artefact costs."""
    from llmseqrec.enhancers.sracl import SraclOptions, artefact_directory

    try:
        dataset = load(dataset_name)
    except ConfigError:
        return None
    options = SraclOptions(**LLM)
    directory = artefact_directory(dataset, options, paths.cache_root() / dataset.name / "sracl")
    info: dict = {
        "directory": str(directory.relative_to(ROOT))
        if directory.is_relative_to(ROOT)
        else str(directory)
    }
    for name in STAGE_COST_FILES:
        if (directory / name).exists():
            info[name] = json.loads((directory / name).read_text())
    info.update(_cache_counts(dataset, options))
    return info


def stage_table(cov: dict | None) -> list[str]:
    """The LLM stage's cost table, or one line saying no summary is cached (a header over no row
    read as a stage that ran and cost nothing)."""
    if not cov:
        return []
    counts = {t: c for t in ("item_summary@v1", "user_summary@v1") if (c := cov.get(t))}
    rows = [
        f"| {template} | {c['answers']} / {c['prompts']} | {c['tokens_in']} | {c['tokens_out']} | "
        f"{c['model_seconds']} | {c['model']} ({c['backend']}) |"
        for template, c in counts.items()
    ]
    costs = [name for name in STAGE_COST_FILES if name in cov]
    # Once any dataset's summaries are cached, every dataset gets counts, zeros included: a
    # table of zeros alone would read as a stage that ran and cost nothing.
    if not any(c["answers"] for c in counts.values()) and not costs:
        return ["LLM stage: no summary of this dataset in the response cache (not run).", ""]
    lines = [
        "LLM stage (packaged SmolLM2-135M-Instruct via xllamacpp, in-process on this "
        "machine's CPU cores; model column = the weights as loaded, `+q4_0` = the "
        "re-quantised copy; user summaries <= 64 answer tokens, item summaries <= 48):",
        "",
        "| template | answers in cache / prompts | prompt tokens | answer tokens | model seconds (summed over parallel slots) | model |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    for name in costs:
        lines += ["", f"`{cov['directory']}/{name}`: `{json.dumps(cov[name])}`"]
    return [*lines, ""]


def _cache_counts(dataset, options) -> dict:
    """This dataset's summaries in the response cache (keys rebuilt from its prompts; no model
    is loaded): answers held, tokens, model seconds, against the number of prompts."""
    import sqlite3

    from llmseqrec.enhancers.sracl import SUMMARY_TEMPLATES, prompt_keys
    from llmseqrec.text.cache import default_cache_path

    path = default_cache_path()
    if not path.exists():
        return {}
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        models = conn.execute(
            "SELECT DISTINCT backend, model FROM responses WHERE template = 'item_summary@v1'"
        ).fetchall()
        if not models:
            return {}
        workdir = paths.cache_root() / dataset.name / "sracl"
        keys_by_kind = prompt_keys(dataset, options, workdir, models)
        out = {}
        for kind in ("item", "user"):
            template = SUMMARY_TEMPLATES[kind]
            best = None
            for backend, model in models:
                keys = keys_by_kind[f"{backend}\t{model}\t{kind}"]
                rows = []
                for start in range(0, len(keys), 500):
                    chunk = keys[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    rows += conn.execute(
                        f"SELECT tokens_in, tokens_out, seconds FROM responses WHERE key IN ({marks})",
                        chunk,
                    ).fetchall()
                found = {
                    "prompts": len(keys),
                    "answers": len(rows),
                    "tokens_in": sum(r[0] for r in rows),
                    "tokens_out": sum(r[1] for r in rows),
                    "model_seconds": round(sum(r[2] for r in rows), 1),
                    "model": model,
                    "backend": backend,
                }
                if best is None or found["answers"] > best["answers"]:
                    best = found
            out[template] = best
    return out


def agreement_table(dataset_name: str) -> list[str]:
    """How often the neighbours each text source retrieved share training purchases."""
    from llmseqrec.enhancers.sracl import SraclOptions, artefact_directory, neighbour_agreement

    try:
        dataset = load(dataset_name)
    except ConfigError:
        return []
    rows = []
    for label, text in (("LLM summaries", LLM), ("raw text", RAW)):
        directory = artefact_directory(
            dataset, SraclOptions(**text), paths.cache_root() / dataset.name / "sracl"
        )
        if not (directory / "user_neighbours.npy").exists():
            continue
        a = neighbour_agreement(dataset, directory)
        rows.append(
            f"| {label} | {a['users_sharing_an_item']:.3f} | {a['users_sharing_an_item_random']:.3f} "
            f"| {a['items_bought_together']:.3f} | {a['items_bought_together_random']:.3f} |"
        )
    if not rows:
        return []
    return [
        "Neighbour agreement with the training interactions (k = 10; training prefixes only): "
        "share of (user, neighbour) pairs with a purchase in common, and of (item, neighbour) "
        "pairs bought by a common user, each beside as many random partners:",
        "",
        "| neighbours from | users: share an item | random users | items: bought together | random items |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]


def llm_stage_section(dataset: str, store: Path = SECTIONS) -> list[str]:
    """The LLM stage table and the neighbour-agreement table of one dataset, each kept in git
    on its own: a machine ahead on the summaries but without the neighbour artefacts in its
    ``cache/`` keeps an earlier machine's agreement table instead of dropping it."""
    cov = coverage(dataset)
    answers = sum(
        c["answers"] for c in (cov or {}).values() if isinstance(c, dict) and "answers" in c
    )
    agreement = agreement_table(dataset)
    rows = sum(row.startswith("| ") for row in agreement[4:])
    stage = stage_table(cov) or [
        "LLM stage: not counted here (the dataset is not prepared on the machine that wrote "
        "this report).",
        "",
    ]
    blocks = [("stage", stage, answers), ("agreement", agreement, rows)]
    return kept_blocks(f"sracl-{dataset}-llm-stage", blocks, store)


def partial_run(config) -> str:
    """'not run', or how far an unfinished run got (validation only: no test read)."""
    log = run_directory(config, RUNS) / "log.jsonl"
    if not log.exists():
        return "not run"
    epochs = [json.loads(x) for x in log.read_text().splitlines() if '"epoch"' in x]
    epochs = [e for e in epochs if e.get("event") == "epoch" and "valid" in e]
    if not epochs:
        return "started, no epoch yet"
    best = max(e["valid"]["ndcg@10"] for e in epochs)
    return f"unfinished: {len(epochs)} epochs, best valid NDCG@10 {best:.4f}, no test figure"


def fmt(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def _table(dataset: str, args: argparse.Namespace) -> tuple[list[str], str | None]:
    cap = f"epoch cap {args.epochs or 200}, early-stop patience {args.patience or 10}"
    lines = [
        f"**{cap}**",
        "",
        "| row | seeds | epochs run (best) | HR@10 | NDCG@10 | HR@20 | NDCG@20 "
        "| NDCG@10 vs its backbone, same seeds | paper HR@10 / NDCG@10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    proto = None
    finished: dict[str, list[tuple[int, dict, object]]] = {}
    for row in ALL_ROWS:
        finished[row] = []
        for seed in SEEDS:
            try:
                config = make_config(dataset, row, seed, args)
            except ConfigError:
                continue
            result = read_result(config)
            if result:
                finished[row].append((seed, result, config))
                proto = proto or result["protocol"]
    ndcg = {
        row: {seed: r["test"]["ndcg@10"] for seed, r, _ in runs} for row, runs in finished.items()
    }
    for row in ALL_ROWS:
        paper = PAPER.get(dataset, {}).get(row)
        paper_text = f"{paper[0]:.4f} / {paper[1]:.4f}" if paper else "not in our notes"
        if not finished[row]:
            partial = partial_run(make_config(dataset, row, SEEDS[0], args))
            lines.append(f"| {LABEL[row]} | {partial} | — | — | — | — | — | — | {paper_text} |")
            continue
        seeds = [seed for seed, _, _ in finished[row]]
        results = [result for _, result, _ in finished[row]]

        def get(key: str, results: list[dict] = results) -> list[float]:
            return [r["test"][key] for r in results]

        epochs = ", ".join(
            f"{r['epochs_run']} ({r['best_epoch'] + 1}){where_it_ran(config)}"
            for _, r, config in finished[row]
        )
        backbone = backbone_row(row)
        versus = versus_same_seeds(ndcg[row], ndcg[backbone]) if backbone else "—"
        lines.append(
            f"| {LABEL[row]} | {','.join(map(str, seeds))} | {epochs} | {fmt(get('hr@10'))} | "
            f"{fmt(get('ndcg@10'))} | {fmt(get('hr@20'))} | {fmt(get('ndcg@20'))} | {versus} "
            f"| {paper_text} |"
        )
    lines.append("")
    return lines, proto


def where_it_ran(config) -> str:
    """'' for a run wholly on the CPU, else the devices its epochs ran on (a lent GPU)."""
    devices = epoch_seconds_by_device(run_directory(config, RUNS))
    return "" if set(devices) == {"cpu"} else f" on {'+'.join(devices)}"


def report(args: argparse.Namespace) -> None:
    lines = [
        "# SRA-CL, CL4SRec, DuoRec (protocol P-CL)",
        "",
        f"Written {date.today().isoformat()} by `benchmarks/sracl.py` from the finished runs under "
        "`runs/`. Every figure: leave-one-out, full ranking over all items, history NOT masked, "
        "max len 20, d=64, 2 layers, 2 heads, dropout 0.5, Adam lr 1e-3, batch 256, CE loss, "
        "selection on validation NDCG@10 (patience as stated per table); test read once per run. "
        "Mean ± sample sd over the seeds listed. Machine: 2 shared CPU cores (1 thread per "
        "run), except where a row's epochs say they ran on a GPU. "
        f"SRA-CL rows: k = 10 neighbours, the cross-sequence positive synthesised from "
        f"{args.cs_sample or 'all'} of them per step (the paper: all); raw-text rows: items "
        "embedded from their own text, users as the mean of their training items' embeddings.",
        "",
    ]
    import copy

    for dataset in args.datasets_all:
        lines += [f"## {dataset}", ""]
        proto = None
        for epochs_cap, patience in args.settings:
            setting = copy.copy(args)
            setting.epochs, setting.patience = epochs_cap, patience
            table, found = _table(dataset, setting)
            lines += table
            proto = proto or found
        if proto:
            lines += [f"Protocol line (first finished run): `{proto}`", ""]
        lines += llm_stage_section(dataset)
    write_report(OUT, "\n".join(lines))  # + sracl.notes.md, hand-written
    print(f"wrote {OUT}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--rows", default=",".join(ALL_ROWS))
    add_run_arguments(parser)
    parser.add_argument(
        "--patience", type=int, default=None, help="early-stop patience (default 10)"
    )
    parser.add_argument(
        "--cs-sample",
        type=int,
        default=3,
        help="SRA-CL: neighbours whose sequences are encoded per step for the cross-sequence "
        "positive (default 3 of k=10, a CPU knob; 0 = all k, as the paper)",
    )
    parser.add_argument("--llm-stage", action="store_true", help="run only the LLM stage")
    parser.add_argument("--llm-limit", type=int, default=None)
    parser.add_argument(
        "--llm-threads",
        type=int,
        default=None,
        help="llama.cpp threads for --llm-stage (default 2; not part of any hash)",
    )
    parser.add_argument(
        "--llm-kinds",
        default="item,user",
        help="--llm-stage: which summaries to ask for (e.g. 'user' in a second process while "
        "another writes the item summaries; both share the response cache)",
    )
    parser.add_argument(
        "--llm-shard",
        default="0/1",
        help="--llm-stage: ask only for prompts k mod n (k/n), to split a kind over n processes",
    )
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--settings",
        default=None,
        help="report tables for these epoch-cap:patience pairs, e.g. 20:10,40:40 "
        "(default: the --epochs/--patience given)",
    )
    args = parser.parse_args()
    restore(RUNS)  # finished runs kept in git: skipped, not retrained
    datasets = args.datasets.split(",")
    args.datasets_all = DATASETS
    args.settings = (
        [tuple(int(x) for x in pair.split(":")) for pair in args.settings.split(",")]
        if args.settings
        else [(args.epochs, args.patience)]
    )
    if args.llm_stage:
        for dataset in datasets:
            kinds = tuple(args.llm_kinds.split(","))
            shard = tuple(int(x) for x in args.llm_shard.split("/"))
            with llm_answers_travel():
                cost = llm_stage(dataset, args.llm_limit, args.llm_threads, kinds, shard)
            print(dataset, json.dumps(cost))
        return
    if not args.report_only:
        for dataset in datasets:
            data = ensure_prepared(dataset, Path(args.data))
            for row in args.rows.split(","):
                multi = row.replace("-gru4rec", "") in MULTI_SEED and row != "sracl-gru4rec"
                seeds = seeds_to_train(args, multi)
                for seed in seeds:
                    config = make_config(dataset, row, seed, args)
                    started = time.perf_counter()
                    try:
                        result, directory = train_run(config, data, root=RUNS, progress=False)
                    except (
                        Exception
                    ) as error:  # one row failing (e.g. LLM stage incomplete) is reported
                        print(
                            f"{dataset} {row} seed {seed}: {type(error).__name__}: {error}",
                            flush=True,
                        )
                        continue
                    keep(directory, RUNS)
                    print(
                        run_line(dataset, row, config, data, result, directory, started), flush=True
                    )
                    report(args)
    report(args)


if __name__ == "__main__":
    main()
