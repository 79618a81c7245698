"""LLM-CFSR vs LLM-ESR vs the plain backbone, with LLM-CFSR's ablations, long-tail items and short
users. Resumable: finished runs are read back, interrupted ones continue (run directories are
named by config hash), the semantic-embedding stage is cached per dataset.

    python benchmarks/llmcfsr.py [--datasets beauty,yelp] [--protocols p-cl,p-s100]
        [--rows sasrec,llmesr,llmcfsr,no_finetune,...] [--seeds 42,43,44] [--epochs 30]
        [--max-minutes 20] [--model sasrec] [--esr-sim-per-step 2] [--report-only]

Writes benchmarks/results/llmcfsr.md (+ llmcfsr.png) from every finished run it finds; rows not
run (or not finished) say so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from run_records import (  # noqa: E402
    SEEDS,
    add_run_arguments,
    epoch_seconds_by_device,
    keep,
    restore,
    run_progress,
    seeds_to_train,
    speed_note,
    staged,
    whole_grid,
    with_run_settings,
    write_report,
)

from llmseqrec import paths  # noqa: E402
from llmseqrec.data.prepare import prepare_preset  # noqa: E402
from llmseqrec.evaluation.significance import versus_same_seeds  # noqa: E402
from llmseqrec.training.config import build_run_config, protocol_line  # noqa: E402
from llmseqrec.training.run import run_directory, train_run  # noqa: E402

DATASETS = ["beauty", "yelp"]
# The report shows every backbone that has a finished run, whatever --model this call trains.
BACKBONES = ["sasrec", "gru4rec"]
PROTOCOLS = ["p-s100", "p-cl"]
# row key -> (label, method, enhancer options, main row = 3 seeds)
ROWS = {
    "sasrec": ("backbone", "none", {}, True),
    "llmesr": ("LLM-ESR (causal)", "llmesr", {}, True),
    "llmcfsr": ("LLM-CFSR", "llmcfsr", {}, True),
    "no_finetune": ("LLM-CFSR w/o fine-tuning", "llmcfsr", {"ablation": "no_finetune"}, False),
    "no_emb_fusion": ("w/o embedding fusion", "llmcfsr", {"ablation": "no_emb_fusion"}, False),
    "no_seq_fusion": ("w/o sequence fusion", "llmcfsr", {"ablation": "no_seq_fusion"}, False),
    "no_pred_fusion": ("w/o prediction gate", "llmcfsr", {"ablation": "no_pred_fusion"}, False),
    "no_fusion": ("w/o any fusion (summed views)", "llmcfsr", {"ablation": "no_fusion"}, False),
}
# LLM-ESR's code encodes all 10 retrieved neighbours of every user at every step (forward only),
# which makes its epoch several times an LLM-CFSR epoch here. A random 2 of the 10 per step gives
# the same expected gradient: d/dh ||h - m||^2 = 2(h - m) is linear in the teacher mean m, and the
# mean of a uniform 2-subset is an unbiased estimate of the mean of all 10 (only its variance
# differs). The report's protocol line names the value.
ESR_SIM_PER_STEP = 2
RUNS = ROOT / "runs"
RESULTS = ROOT / "benchmarks" / "results"
# The semantic stage's timing and view-check files, kept beside the run records.
MEASUREMENTS = RESULTS / "sections" / "llmcfsr-semantic"
# Neither paper's numbers are reproduced here: LLM-CFSR has only an abstract (no tables in our
# sources), and LLM-ESR's tables use its own Yelp/Beauty preprocessing and text-embedding-ada-002.
PAPER_NOTE = (
    "Paper numbers: LLM-CFSR's seed is an abstract without tables, so there is nothing to put "
    "alongside; LLM-ESR's published tables (NeurIPS'24) use their own Yelp/Beauty filtering and "
    "OpenAI ada-002 embeddings, so they are not comparable cell by cell and are not copied here."
)


def config_for(dataset, protocol, row, seed, args, model: str | None = None):
    _, method, options, _ = ROWS[row]
    options = dict(options)
    if method == "llmesr" and args.esr_sim_per_step:
        options["sim_users_per_step"] = args.esr_sim_per_step
    if method != "none":
        options["progress"] = False
    overrides = {"train": {"seed": seed, "threads": 1}, "enhancer": options}
    if args.epochs:
        overrides["train"]["epochs"] = args.epochs
    config = build_run_config(dataset, model or args.model, method, protocol, overrides)
    return with_run_settings(config, args)


def seeds_for(row, args):
    return seeds_to_train(args, multi_seed=ROWS[row][3])


def read_result(config) -> dict | None:
    path = run_directory(config, RUNS) / "metrics.json"
    if path.exists():
        result = json.loads(path.read_text())
        return result if result.get("finished") else None
    return None


def fmt(values: np.ndarray) -> str:
    if len(values) == 0:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"


def view_check(dataset_name: str, data_root: Path, n: int = 512) -> dict:
    """Held views of ``n`` items: top-1 retrieval of the other view of the same item, with the
    raw and the fine-tuned encoder (cached in the semantic directory)."""
    import torch

    from llmseqrec.enhancers import llmcfsr_finetune as ft

    data = prepare_preset(dataset_name, data_root)
    options = ft.FinetuneOptions()
    directory = (
        paths.cache_root()
        / dataset_name
        / "semantic"
        / f"semantic-{ft.artefact_hash(data, options)}"
    )
    out_path = directory / "view_check.json"
    if out_path.exists():
        return json.loads(out_path.read_text())
    attrs = ft.item_attributes(data)
    rng = np.random.default_rng(2024)
    items = rng.choice(np.arange(1, data.n_items + 1), n, replace=False)
    view_rng = np.random.default_rng(7)  # not the training views' streams
    a = [ft.attribute_view(attrs[i], view_rng, 0.4) for i in items]
    b = [ft.attribute_view(attrs[i], view_rng, 0.4) for i in items]
    result = {"items": n}
    tok, model = ft.load_encoder(None)
    for name in ("raw", "fine-tuned"):
        if name == "fine-tuned":
            state = torch.load(directory / "checkpoint.pt", weights_only=True)
            model.load_state_dict(state["weights"], strict=False)
        model.eval()
        with torch.no_grad():
            va = torch.nn.functional.normalize(ft.mean_pool(model, tok, a, 32), dim=-1)
            vb = torch.nn.functional.normalize(ft.mean_pool(model, tok, b, 32), dim=-1)
        sim = va @ vb.T
        result[name] = {
            "top1": float((sim.argmax(1) == torch.arange(n)).float().mean()),
            "same_item_cos": float(sim.diagonal().mean()),
            "other_item_cos": float((sim.sum() - sim.diagonal().sum()) / (n * n - n)),
        }
    out_path.write_text(json.dumps(result, indent=2))
    return result


def kept_measurements(
    dataset: str, kind: str, store: Path = MEASUREMENTS
) -> list[tuple[str, dict]]:
    """Every ``<kind>.json`` the semantic stage wrote for ``dataset``, on this machine or earlier.

    The stage's timing and view-check files live in ``cache/``, which a new machine lacks; each
    distinct one is copied into git (``store/<dataset>/<artefact>/<kind>-<digest>.json``), so a
    report shows every measurement ever made, not only this machine's.
    """
    for path in sorted((paths.cache_root() / dataset / "semantic").glob(f"*/{kind}.json")):
        text = path.read_text(encoding="utf-8")
        digest = hashlib.sha256(text.encode()).hexdigest()[:10]
        target = store / dataset / path.parent.name / f"{kind}-{digest}.json"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
    found = sorted((store / dataset).glob(f"*/{kind}-*.json"))
    return [(path.parent.name, json.loads(path.read_text(encoding="utf-8"))) for path in found]


def timing_lines(datasets) -> list[str]:
    lines = [
        "## Semantic embedding stage (fine-tuning and embedding time)",
        "",
        "| dataset | embeddings | items | fields | steps | torch threads | fine-tune s | embed s "
        "| load average (1 min) after fine-tune / embed | loss first -> last | dir |",
        "|---|---|---:|---|---:|---:|---:|---:|---|---|---|",
    ]
    found = False
    for dataset in datasets:
        for artefact, t in kept_measurements(dataset, "timing"):
            enabled = t["options"]["enabled"]
            loss = f"{t['loss_first']:.3f} -> {t['loss_last']:.3f}" if t.get("loss_first") else "-"
            loads = " / ".join(
                f"{t[key]:.1f}" if key in t else ("not recorded" if ran else "-")
                for key, ran in (("finetune_load_average", enabled), ("embed_load_average", True))
            )
            lines.append(
                f"| {dataset} | {'fine-tuned' if enabled else 'raw MiniLM'} | {t['items']} | "
                f"{', '.join(t['fields'])} | {t.get('finetune_steps', '-')} | {t['threads']} | "
                f"{t.get('finetune_seconds', 0):.0f} | {t['embed_seconds']:.0f} | {loads} | {loss} | "
                f"{artefact} |"
            )
            found = True
    if not found:
        lines.append("| - | not run yet | | | | | | | | | |")
    for dataset in datasets:
        for _, c in kept_measurements(dataset, "view_check"):
            lines += [
                "",
                f"View check on {dataset} ({c['items']} random items, fresh views): top-1 retrieval "
                "of an item's other view / mean cosine same item / other items: raw "
                f"{c['raw']['top1']:.3f} / {c['raw']['same_item_cos']:.3f} / "
                f"{c['raw']['other_item_cos']:.3f}; fine-tuned {c['fine-tuned']['top1']:.3f} / "
                f"{c['fine-tuned']['same_item_cos']:.3f} / {c['fine-tuned']['other_item_cos']:.3f}.",
            ]
    lines += [
        "",
        "Fine-tuning options (defaults): 1 epoch over all items, batch 64 (63 in-batch negatives), "
        "views of <= 32 tokens, shuffled attribute order with 40% of the attributes dropped, "
        "InfoNCE (cosine / 0.05, symmetric), AdamW 5e-5 with 10% warm-up, top 2 of MiniLM's 6 "
        "layers trained, token embeddings frozen; items embedded from their canonical text "
        "(all fields, <= 64 tokens, length-sorted batches). Wall times are as measured on this "
        "machine; a load average above the thread count means other jobs shared the cores, so "
        "the time is an upper bound.",
        "",
    ]
    return lines


# The report table's columns (the second is the hit-rate metric) and their alignment after "row".
COLUMNS = [
    "row", "hr@10", "ndcg@10", "tail-item ndcg@10", "head-item ndcg@10", "short-user ndcg@10",
    "ndcg@10 vs backbone, same seeds", "ndcg@10 vs LLM-ESR, same seeds", "seeds", "notes",
]  # fmt: skip
# The metric columns (HR@10 to short-user NDCG@10) are right-aligned; the rest are text.
NUMERIC_COLUMNS = 5
ALIGN = "|---|" + "---:|" * NUMERIC_COLUMNS + "---|" * (len(COLUMNS) - 1 - NUMERIC_COLUMNS)


def report(args, data_root: Path) -> str:
    args = whole_grid(
        args, datasets=list(DATASETS), protocols=list(PROTOCOLS), rows=list(ROWS), seeds=list(SEEDS)
    )
    lines = [
        "# LLM-CFSR and LLM-ESR vs the backbone",
        "",
        f"Generated {date.today()} by `python benchmarks/llmcfsr.py` from the finished runs under "
        "`runs/`; CPU. Test metrics of the checkpoint selected on validation "
        "(mean ± std over the seeds listed). Tail items = the least popular 80% of items by "
        "training frequency (the test target's group); short users = training prefix < 4 items. "
        "All cross-attention is causal (the public LLM-ESR code's padding-only mask is not "
        "reproduced).",
        "",
        PAPER_NOTE,
        "",
    ]
    lines += timing_lines(args.datasets)
    plot_data = {}
    sections = [(m, d, p) for m in BACKBONES for d in args.datasets for p in args.protocols]
    for model, dataset, protocol in sections:
        metric = "hr@10"
        body, first = [], None
        table_seeds = set()  # the protocol line names the seeds shown
        backbone: dict[int, float] = {}  # seed -> the backbone's test ndcg@10
        llmesr: dict[int, float] = {}  # seed -> LLM-ESR's, LLM-CFSR's baseline
        for row in args.rows:
            label = ROWS[row][0] if row != "sasrec" else model
            results, seeds, run_dirs = [], [], []
            for seed in SEEDS:  # every finished seed, main row or not
                config = config_for(dataset, protocol, row, seed, args, model)
                first = first or config
                result = read_result(config)
                if result:
                    results.append(result)
                    seeds.append(seed)
                    run_dirs.append(run_directory(config, RUNS))
                    table_seeds.add(seed)
            if not results:
                progress = []
                for seed in SEEDS:
                    config = config_for(dataset, protocol, row, seed, args, model)
                    text = run_progress(run_directory(config, RUNS), config.train.select_metric)
                    if text:
                        progress.append(f"seed {seed}: {text}")
                if progress:
                    empty = " |" * (len(COLUMNS) - 3)
                    body.append(f"| {label} | unfinished |{empty} {'; '.join(progress)} |")
                else:
                    body.append(f"| {label} | not run |" + " |" * (len(COLUMNS) - 2))
                continue
            per_seed = {s: r["test"]["ndcg@10"] for s, r in zip(seeds, results, strict=True)}
            if row == "sasrec":
                backbone = per_seed
            if row == "llmesr":
                llmesr = per_seed
            vs_backbone = versus_same_seeds(per_seed, backbone) if row != "sasrec" else "-"
            vs_llmesr = versus_same_seeds(per_seed, llmesr) if ROWS[row][1] == "llmcfsr" else "-"

            def col(get, results=results):
                return np.array([get(r) for r in results])

            overall = col(lambda r: r["test"]["ndcg@10"])
            tail = col(lambda r: r["test_groups"]["item_popularity"]["tail"]["ndcg@10"])
            head = col(lambda r: r["test_groups"]["item_popularity"]["head"]["ndcg@10"])
            short = col(
                lambda r: r["test_groups"]["user_length"].get("[0,4)", {}).get("ndcg@10", np.nan)
            )
            hr = col(lambda r, m=metric: r["test"][m])
            speed = speed_note([epoch_seconds_by_device(d) for d in run_dirs])
            epochs = "/".join(f"{r['best_epoch'] + 1}of{r['epochs_run']}" for r in results)
            body.append(
                f"| {label} | {fmt(hr)} | {fmt(overall)} | {fmt(tail)} | {fmt(head)} | "
                f"{fmt(short)} | {vs_backbone} | {vs_llmesr} | {','.join(map(str, seeds))} | best epoch {epochs}, "
                f"{speed} |"
            )
            plot_data.setdefault((dataset, protocol, model), {})[label] = {
                "all": overall.mean(),
                "tail items": tail.mean(),
                "head items": head.mean(),
                "short users": float(np.nanmean(short)),
            }
        if first is None or (model != BACKBONES[0] and not table_seeds):
            continue
        data = staged(dataset, data_root)
        meta = data.metadata if data is not None else {}
        groups = ""
        r0 = next(
            (
                read_result(config_for(dataset, protocol, r, SEEDS[0], args, model))
                for r in args.rows
            ),
            None,
        )
        if r0:
            g = r0["test_groups"]
            groups = (
                f" Group sizes (test users): tail {g['item_popularity']['tail']['users']}, "
                f"head {g['item_popularity']['head']['users']}, short "
                f"{g['user_length'].get('[0,4)', {}).get('users', 0)}."
            )
        lines += [
            f"## {dataset} under `{protocol}` ({model})",
            "",
            f"Protocol: {protocol_line(first, meta, seeds=sorted(table_seeds) or None)}"
            + (f"; epochs capped at {args.epochs}" if args.epochs else "")
            + (
                f"; LLM-ESR sim_users_per_step {args.esr_sim_per_step}"
                if args.esr_sim_per_step
                else ""
            ),
            f"{groups}",
            "",
            "| " + " | ".join(["row", metric, *COLUMNS[2:]]) + " |",
            ALIGN,
            *body,
            "",
        ]
    if plot_data:
        plot(plot_data, RESULTS / "llmcfsr.png")
        lines += ["![ndcg@10 by group](llmcfsr.png)", ""]
    return "\n".join(lines) + "\n"


def plot(data, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(data), figsize=(6 * len(data), 4), squeeze=False)
    for ax, ((dataset, protocol, model), rows) in zip(axes[0], data.items(), strict=True):
        groups = ["all", "tail items", "head items", "short users"]
        width = 0.8 / max(len(rows), 1)
        for i, (label, values) in enumerate(rows.items()):
            ax.bar(
                np.arange(len(groups)) + i * width,
                [values[g] for g in groups],
                width,
                label=label,
            )
        ax.set_xticks(np.arange(len(groups)) + width * (len(rows) - 1) / 2, groups)
        ax.set_title(f"{dataset} {protocol} ({model}): test ndcg@10")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--model", default="sasrec")
    parser.add_argument(
        "--esr-sim-per-step",
        type=int,
        default=ESR_SIM_PER_STEP,
        help=f"LLM-ESR neighbours encoded per user and step, of its 10 (default {ESR_SIM_PER_STEP})",
    )
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--view-check", action="store_true", help="held-view retrieval, raw vs fine-tuned encoder"
    )
    args = parser.parse_args()
    restore(RUNS)  # finished runs kept in git: skipped, not retrained
    args.datasets = args.datasets.split(",")
    args.protocols = args.protocols.split(",")
    args.rows = args.rows.split(",")
    unknown = [r for r in args.rows if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    data_root = Path(args.data)
    out = RESULTS / "llmcfsr.md"
    if args.view_check:
        for dataset in args.datasets:
            print(dataset, view_check(dataset, data_root), flush=True)
    if not args.report_only:
        for dataset in args.datasets:
            data = prepare_preset(dataset, data_root)
            for protocol in args.protocols:
                for row in args.rows:
                    for seed in seeds_for(row, args):
                        config = config_for(dataset, protocol, row, seed, args)
                        print(
                            f"== {dataset} {protocol} {row} seed {seed} -> "
                            f"{run_directory(config, RUNS)}",
                            flush=True,
                        )
                        result, directory = train_run(config, data, root=RUNS, progress=False)
                        keep(directory, RUNS)
                        if result.get("finished"):
                            print(
                                json.dumps(
                                    {
                                        k: round(v, 4)
                                        for k, v in result["test"].items()
                                        if "@10" in k
                                    }
                                ),
                                flush=True,
                            )
                        write_report(out, report(args, data_root))
    write_report(out, report(args, data_root))


if __name__ == "__main__":
    main()
