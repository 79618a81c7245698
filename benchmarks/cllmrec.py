"""CLLMRec vs its backbone vs the w/o-LLM ablation under protocol p-lru, next to the paper.

    python benchmarks/cllmrec.py [--datasets beauty,ml-1m] [--models lrurec,sasrec]
        [--variants backbone,wo_llm,cllmrec] [--seeds 42,43,44] [--epochs N] [--max-minutes M]
        [--stage all|score|train] [--report-only]
    python benchmarks/cllmrec.py --sweeps --datasets beauty --models lrurec [--max-minutes M]
        [--sweep-points lambda1=0.3,alpha=0.5] [--seeds 43,44]

Resumable: the scoring step continues from its saved chunks, finished runs are read back and
interrupted ones continue (run directories are named by their config hash). Writes
benchmarks/results/cllmrec.md from whatever has finished; rows that have not run say so.
``w/o CL`` is the plain backbone (method ``none``), so the backbone row doubles as that ablation.
``--sweeps`` trains CLLMRec (seed 42) with one option at a time moved from the paper's defaults
(``SWEEPS``: alpha, lambda1, w_i, encoder layer) and reports each point's validation figure,
which is what a choice may be made on. The point with the best seed-42 validation figure is then
confirmed on the other seeds (``--sweeps --sweep-points P --seeds 43,44``): its test figures over
three seeds, paired against the backbone, are the honest answer to "does a tuned CLLMRec help".
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from itertools import product
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from run_records import (  # noqa: E402
    ARTEFACTS,
    SEEDS,
    add_run_arguments,
    epoch_seconds_by_device,
    keep,
    keep_artefact,
    keep_files,
    kept_section,
    restore,
    restore_artefacts,
    run_progress,
    seeds_to_train,
    staged,
    whole_grid,
    with_run_settings,
    write_report,
)

from llmseqrec import paths  # noqa: E402
from llmseqrec.data.prepare import prepare_preset  # noqa: E402
from llmseqrec.enhancers.base import make_enhancer  # noqa: E402
from llmseqrec.enhancers.cllmrec import attention_encoder_profile  # noqa: E402
from llmseqrec.evaluation.significance import (  # noqa: E402
    paired_seed_test,
    same_seed_difference,
)
from llmseqrec.training.config import build_run_config, protocol_line  # noqa: E402
from llmseqrec.training.run import enhancer_workdir, run_directory, train_run  # noqa: E402

DATASETS = ["beauty", "ml-1m"]
MODELS = ["lrurec", "sasrec"]
RUNS = ROOT / "runs"
RESULTS = ROOT / "benchmarks" / "results" / "cllmrec.md"
# The scoring artefact as committed (benchmarks/results/artefacts/): scores and their provenance.
SCORING_FILES = ("scores.npy", "options.json", "cost.json")
COST = ROOT / "benchmarks" / "results" / "cllmrec_step_cost.json"
METRICS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")
VARIANTS = {  # name -> (method, extra enhancer options)
    "backbone": ("none", None),
    "wo_llm": ("cllmrec", {"crops": "random"}),
    "cllmrec": ("cllmrec", {}),
}
LABEL = {"backbone": "backbone (= w/o CL)", "wo_llm": "CLLMRec w/o LLM", "cllmrec": "CLLMRec"}
# One option at a time around the paper's defaults (alpha .75, lambda1 .1, w_i .5, last encoder
# layer), CLLMRec only, seed 42: what the issue asks to have tried when there is no gain. A layer
# other than the last scores the histories again (a scoring artefact of its own).
SWEEPS = {
    "alpha": [0.5, 0.9],
    "lambda1": [0.05, 0.3],
    "negative_weight": [0.25, 1.0],
    "layer": [2],
}
SCORING_OPTIONS = ("layer", "lambda_a")  # options that change the importance scores
SWEEP_LABEL = {"alpha": "alpha", "lambda1": "lambda1", "negative_weight": "w_i", "layer": "layer"}
# Paper figures (Recall@10 / NDCG@10) from ../shared/design/benchmarks.md.
PAPER = {
    ("ml-1m", "lrurec", "backbone"): (0.3232, 0.1904, "CLLMRec paper Table 1 (LRURec)"),
    ("ml-1m", "lrurec", "cllmrec"): (0.3352, 0.2001, "CLLMRec paper Table 1"),
    ("ml-1m", "sasrec", "backbone"): (0.3152, 0.1821, "Klenitskiy & Vasilev (SASRec-CE)"),
    ("beauty", "lrurec", "cllmrec"): (
        0.0538, 0.0315, "CLLMRec paper (their Beauty version; HR@10/NDCG@10)",
    ),
}  # fmt: skip


def variant_config(dataset, model, variant, seed, epochs, enhancer_options):
    method, extra = VARIANTS[variant]
    overrides = {"train": {"seed": seed, "threads": 1}}
    if epochs:
        overrides["train"]["epochs"] = epochs
    if method != "none":
        overrides["enhancer"] = {**enhancer_options, **(extra or {})}
    return build_run_config(dataset, model, method, "p-lru", overrides)


def sweep_point(option: str, value) -> str:
    """A sweep point's name on the command line (``--sweep-points``), e.g. ``lambda1=0.3``."""
    return f"{option}={value}"


def sweep_configs(dataset, model, seed, epochs, enhancer_options):
    """(option, value, config) of every sweep point."""
    return [
        (option, value, variant_config(
            dataset, model, "cllmrec", seed, epochs, {**enhancer_options, option: value}
        ))
        for option, values in SWEEPS.items()
        for value in values
    ]  # fmt: skip


def sweep_settings(enhancer_options) -> list[tuple[str, dict]]:
    """(label, enhancer options) of the paper's defaults and of every sweep point."""
    return [("paper defaults", enhancer_options)] + [
        (f"{SWEEP_LABEL[option]} = {value}", {**enhancer_options, option: value})
        for option, values in SWEEPS.items()
        for value in values
    ]


def sweep_choice(dataset, model, epochs, enhancer_options) -> dict | None:
    """The setting with the best seed-42 validation Recall@10 among the paper's defaults and the
    finished sweep points (None before any has finished): its label, enhancer options and
    validation figure, and how many candidates are still missing (then the choice is
    provisional)."""
    best, missing = None, 0
    for label, options in sweep_settings(enhancer_options):
        result = read_result(variant_config(dataset, model, "cllmrec", 42, epochs, options))
        if result is None:
            missing += 1
            continue
        if best is None or result["valid"]["recall@10"] > best["valid"]:
            best = {"label": label, "options": options, "valid": result["valid"]["recall@10"]}
    return best and {**best, "missing": missing}


def read_result(config) -> dict | None:
    path = run_directory(config, RUNS) / "metrics.json"
    if path.exists():
        result = json.loads(path.read_text())
        return result if result.get("finished") else None
    return None


def run_state(config) -> str:
    progress = run_progress(run_directory(config, RUNS), config.train.select_metric)
    return f"unfinished ({progress})" if progress else "not run"


def scoring(dataset, data, model, enhancer_options) -> dict:
    """Run (or resume, or reuse) the scoring step, keep its finished artefact in git; return its
    cost record."""
    config = build_run_config(dataset, model, "cllmrec", "p-lru", {"enhancer": enhancer_options})
    enhancer = make_enhancer("cllmrec", config.enhancer)
    enhancer.configure(config)
    started = time.perf_counter()
    try:
        enhancer.prepare(data, enhancer_workdir(config, data))
    except BaseException:  # Ctrl-C and kill -INT included: the next machine resumes from here
        kept = keep_partial_scoring(scoring_directory(data, config), paths.cache_root())
        print(f"{kept} scoring files kept in benchmarks/results/artefacts", flush=True)
        raise
    keep_artefact(enhancer.artefact_dir, paths.cache_root(), SCORING_FILES)  # chunks dropped
    cost = json.loads((enhancer.artefact_dir / "cost.json").read_text())
    cost["wall_seconds_this_call"] = time.perf_counter() - started
    return cost


def keep_partial_scoring(directory: Path | None, cache: Path, artefacts: Path = ARTEFACTS) -> int:
    """Keep the finished chunks of an interrupted scoring step (with its options and cost) in
    ``benchmarks/results/artefacts/``, so that a step longer than a session resumes on the next
    machine; ``keep_artefact`` replaces them by the scores once the step finishes."""
    if directory is None:
        return 0
    files = [directory / "options.json", directory / "cost.json"]
    files += sorted((directory / "chunks").glob("chunk-*.npy"))
    return keep_files([f for f in files if f.exists()], cache, artefacts)


def scoring_directory(data, config) -> Path | None:
    """Where the scoring artefact of ``config``'s options lives in ``cache/`` (None: not begun)."""
    workdir = enhancer_workdir(config, data)
    if not workdir.exists():
        return None
    enhancer = make_enhancer("cllmrec", config.enhancer)
    enhancer.configure(config)
    profile, _ = attention_encoder_profile(enhancer.opts)
    return workdir / enhancer.artefact_key(data, profile["identity"], profile["max_length"])


def scoring_cost(dataset, data, model, enhancer_options) -> dict | None:
    """The cost record of the scoring artefact, finished or partial, without computing."""
    config = build_run_config(dataset, model, "cllmrec", "p-lru", {"enhancer": enhancer_options})
    directory = scoring_directory(data, config)
    if directory is None or not (directory / "cost.json").exists():
        return None
    cost = json.loads((directory / "cost.json").read_text())
    cost["finished"] = (directory / "scores.npy").exists()
    cost["users_total"] = data.n_users
    cost["directory"] = str(directory)
    return cost


def fmt(values: np.ndarray) -> str:
    if len(values) > 1:
        return f"{values.mean():.4f} ± {values.std(ddof=1):.4f}"
    return f"{values.mean():.4f}"


def report(args, enhancer_options) -> str:
    args = whole_grid(
        args,
        datasets=list(DATASETS),
        models=list(MODELS),
        variants=list(VARIANTS),
        seeds=list(SEEDS),
    )
    lines = [
        "# CLLMRec vs backbone vs w/o LLM (protocol p-lru)",
        "",
        f"Generated {date.today()} by `python benchmarks/cllmrec.py` from the runs under `runs/`",
        "(CPU, 2 cores shared with other jobs; 1 torch thread per run). Test metrics of the",
        "checkpoint selected on validation Recall@10; mean ± std over the seeds listed. Paired",
        "t-test over seeds against the backbone with the same seeds (needs >= 2 seeds).",
        f"Enhancer options: `{json.dumps(enhancer_options)}` (paper defaults otherwise: alpha",
        "0.75, w_i 0.5, lambda1 0.1, lambda2 1, tau 1, last encoder layer, lambda_a 1; cosine",
        "similarity: the dot product collapsed the representation, see README). `w/o CL` = the",
        "backbone row (method none).",
        "",
    ]
    for dataset in args.datasets:
        data = staged(dataset, Path(args.data))
        lines += [f"## {dataset}", ""]
        cost = scoring_cost(dataset, data, args.models[0], enhancer_options) if data else None
        scoring_lines = ["Scoring step: not run.", ""]
        if cost:
            rate = cost["users_scored"] / max(cost["seconds"], 1e-9)
            status = "finished" if cost["finished"] else "PARTIAL (resumable)"
            scoring_lines = [
                f"Scoring step ({status}): {cost['users_scored']} / {cost['users_total']} users, "
                f"{cost['items_scored']} items, {cost['encoder_sequences']} encoder passes in "
                f"{cost['seconds']:.0f} s ({rate:.2f} users/s"
                + (
                    f"; full set ~{cost['users_total'] / rate / 60:.0f} min at this rate"
                    if not cost["finished"]
                    else ""
                )
                + f"). Artefact `{Path(cost['directory']).relative_to(paths.cache_root())}`.",
                "",
            ]
        seen = cost["users_scored"] if cost else 0
        lines += kept_section(f"cllmrec-{dataset}-scoring", scoring_lines, seen)
        if COST.exists():
            costs = json.loads(COST.read_text()).get(dataset, {})
            for model, cost in costs.items():
                base = cost["backbone"]
                parts = [
                    f"{LABEL[v]} {sec * 1000:.0f} ms ({sec / base:.2f}x)" for v, sec in cost.items()
                ]
                lines += [
                    f"Training step cost, {model}, measured side by side in one process "
                    f"(`--time-steps`, interleaved rounds, median per step, batch 128): "
                    + "; ".join(parts)
                    + ". The target is at most 1.5x the backbone.",
                    "",
                ]
        first = None
        table_seeds = set()  # the protocol line names the seeds shown
        for model in args.models:
            rows, backbone = [], {}
            for variant in args.variants:
                results, seeds, missing, timings = [], [], [], []
                for seed in args.seeds:
                    config = variant_config(
                        dataset, model, variant, seed, args.epochs, enhancer_options
                    )
                    first = first or config
                    result = read_result(config)
                    if result:
                        results.append(result)
                        seeds.append(seed)
                        table_seeds.add(seed)
                        timings.append(epoch_seconds_by_device(run_directory(config, RUNS)))
                    else:
                        missing.append(f"seed {seed}: {run_state(config)}")
                paper = PAPER.get((dataset, model, variant))
                paper_text = f"{paper[0]:.4f} / {paper[1]:.4f} ({paper[2]})" if paper else "-"
                if not results:
                    rows.append(
                        f"| {LABEL[variant]} | {'; '.join(missing)} | | | | | | | {paper_text} |"
                    )
                    continue
                values = {m: np.array([r["test"][m] for r in results]) for m in METRICS}
                # The ratio to the backbone compares CPU epochs only: a seed that ran on a lent GPU
                # (100x faster) would make it meaningless.
                cpu = [t["cpu"] for t in timings if "cpu" in t]
                sec = float(np.mean(cpu)) if cpu else float("nan")
                on_gpu = [str(s) for s, t in zip(seeds, timings, strict=True) if set(t) - {"cpu"}]
                gpu_note = f"; seeds {','.join(on_gpu)} wholly or partly on a GPU" if on_gpu else ""
                if variant == "backbone":
                    backbone = {"values": values, "seeds": seeds, "sec": sec}
                ratio = f"{sec / backbone['sec']:.2f}x" if backbone else "-"
                test = "-"
                if backbone and variant != "backbone":
                    difference = same_seed_difference(
                        dict(zip(seeds, values["recall@10"], strict=True)),
                        dict(zip(backbone["seeds"], backbone["values"]["recall@10"], strict=True)),
                    )
                    if difference and difference["p"] is not None:
                        test = (
                            f"Δ {difference['mean_diff']:+.4f}, p = {difference['p']:.3f}"
                            f" (n={difference['n']})"
                        )
                    elif difference:
                        test = f"Δ {difference['mean_diff']:+.4f} (1 seed, no test)"
                epochs = "/".join(f"{r['best_epoch'] + 1}of{r['epochs_run']}" for r in results)
                rows.append(
                    f"| {LABEL[variant]} | {','.join(map(str, seeds))} | "
                    + " | ".join(fmt(values[m]) for m in METRICS)
                    + f" | {sec:.0f} s ({ratio}; CPU epochs{gpu_note}), best epoch {epochs} | {test} | {paper_text} |"
                )  # fmt: skip
            lines += [
                f"### {dataset}, backbone {model}",
                "",
                "| variant | seeds | Recall@10 | NDCG@10 | Recall@20 | NDCG@20 | s/epoch as run (shared, load-dependent; the step-cost line is the fair ratio) | Recall@10 vs backbone | paper R@10 / N@10 |",
                "|---|---|---:|---:|---:|---:|---|---|---|",
                *rows,
                "",
            ]  # fmt: skip
        if first is not None:
            lines += [
                f"Protocol: {protocol_line(first, data.metadata if data else {}, seeds=sorted(table_seeds) or None)}",
                "",
            ]
    lines += sweep_section(args, enhancer_options)
    lines += [
        "## Not run here",
        "",
        "The full grid of the issue (ML-1M and Beauty, LRURec and SASRec, 3 seeds, protocol",
        "epochs with early stopping) is",
        "`python benchmarks/cllmrec.py --datasets beauty,ml-1m --models lrurec,sasrec`;",
        "everything above that is missing from it has not run (or not finished) yet.",
        "",
    ]
    return "\n".join(lines) + "\n"


def sweep_section(args, enhancer_options) -> list[str]:
    """One table per dataset and backbone that has a finished sweep point (seed 42)."""
    lines = []
    for dataset in DATASETS:
        for model in MODELS:
            settings = [
                (label, read_result(variant_config(dataset, model, "cllmrec", 42, args.epochs, o)))
                for label, o in sweep_settings(enhancer_options)
            ]
            if not any(result for _, result in settings[1:]):  # no sweep point finished
                continue
            backbone = read_result(
                variant_config(dataset, model, "backbone", 42, args.epochs, enhancer_options)
            )
            rows = []
            for label, result in [("backbone (= w/o CL), for reference", backbone)] + settings:
                if result is None:
                    rows.append(f"| {label} | not run | | | | |")
                    continue
                versus = (
                    f"{result['test']['recall@10'] - backbone['test']['recall@10']:+.4f}"
                    if backbone and result is not backbone
                    else "-"
                )
                rows.append(
                    f"| {label} | {result['valid']['recall@10']:.4f} | "
                    f"{result['test']['recall@10']:.4f} | {result['test']['ndcg@10']:.4f} | "
                    f"{versus} | {result['best_epoch'] + 1}of{result['epochs_run']} |"
                )
            lines += [
                f"## Sweep: {dataset}, CLLMRec on {model}, seed 42",
                "",
                "One option changed at a time from the paper's defaults. Choose on the validation",
                "column; the test columns are shown, never used to choose.",
                "",
                "| CLLMRec with | valid Recall@10 | test Recall@10 | test NDCG@10 | test R@10 vs backbone | best epoch |",
                "|---|---:|---:|---:|---:|---|",
                *rows,
                "",
            ]  # fmt: skip
            lines += confirmation_section(dataset, model, args.epochs, enhancer_options)
    return lines


def confirmation_section(dataset, model, epochs, enhancer_options) -> list[str]:
    """The validation-chosen setting's test figures on every seed, paired with the backbone."""
    choice = sweep_choice(dataset, model, epochs, enhancer_options)
    if choice is None:
        return []
    status = (
        f"provisional: {choice['missing']} candidate(s) have not finished"
        if choice["missing"]
        else "every candidate finished"
    )
    lines = [
        f"**Chosen on seed-42 validation: {choice['label']}** (Recall@10 {choice['valid']:.4f};"
        f" {status}). Its test figures on every seed, against the backbone on the same seed:",
        "",
        "| seed | backbone test R@10 / N@10 | chosen test R@10 / N@10 | Δ R@10 |",
        "|---|---:|---:|---:|",
    ]
    pairs = []
    for seed in SEEDS:
        backbone = read_result(
            variant_config(dataset, model, "backbone", seed, epochs, enhancer_options)
        )
        chosen = read_result(
            variant_config(dataset, model, "cllmrec", seed, epochs, choice["options"])
        )
        if backbone is None or chosen is None:
            lines.append(f"| {seed} | {cell(backbone)} | {cell(chosen)} | |")
            continue
        pairs.append((backbone["test"]["recall@10"], chosen["test"]["recall@10"]))
        lines.append(
            f"| {seed} | {cell(backbone)} | {cell(chosen)} | {pairs[-1][1] - pairs[-1][0]:+.4f} |"
        )
    if len(pairs) >= 2:
        t = paired_seed_test([a for a, _ in pairs], [b for _, b in pairs])
        lines += ["", f"Paired over seeds: Δ {t['mean_diff']:+.4f}, p = {t['p']:.3f} (n={t['n']})."]
    else:
        missing = [s for s in SEEDS if s != 42]
        lines += [
            "",
            "Confirm on the other seeds with `python benchmarks/cllmrec.py --sweeps --datasets "
            f"{dataset} --models {model} --sweep-points <point> --seeds "
            f"{','.join(map(str, missing))}` (the defaults' seeds are the main table's).",
        ]
    return lines + [""]


def cell(result: dict | None) -> str:
    if result is None:
        return "not run"
    return f"{result['test']['recall@10']:.4f} / {result['test']['ndcg@10']:.4f}"


def time_steps(dataset: str, data, model: str, variants, enhancer_options, steps: int) -> dict:
    """Median seconds per training step of each variant, interleaved so load hits all alike."""
    import tempfile

    from llmseqrec.training.batches import iterate_batches
    from llmseqrec.training.run import prepare_enhancer
    from llmseqrec.training.trainer import Trainer

    trainers = {}
    for variant in variants:
        config = variant_config(dataset, model, variant, 42, None, enhancer_options)
        trainer = Trainer(config, data, Path(tempfile.mkdtemp()), prepare_enhancer(config, data))
        trainer.model.train()
        batches = iterate_batches(
            trainer.windows, trainer.window_users, 128, np.random.default_rng(0)
        )
        trainers[variant] = (trainer, batches)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for round_ in range(steps + 2):
        for variant, (trainer, batches) in trainers.items():
            batch = next(batches)
            start = time.perf_counter()
            batch = trainer.enhancer.augment_batch(batch, round_)
            rec, states = trainer.recommendation_loss(batch)
            extras = trainer.enhancer.extra_loss(trainer.model, batch, states)
            loss = rec + sum(extras.values()) if extras else rec
            trainer.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            trainer.optimiser.step()
            if round_ >= 2:  # warm-up
                times[variant].append(time.perf_counter() - start)
    return {v: float(np.median(t)) for v, t in times.items()}


def write_cllmrec_report(args, enhancer_options) -> None:
    write_report(RESULTS, report(args, enhancer_options))


def train_one(args, config, data, label: str) -> None:
    """Train (or resume, or read back) one run; keep its record; print its test metrics."""
    config = with_run_settings(config, args)
    print(f"== {label} -> {run_directory(config, RUNS)}", flush=True)
    result, directory = train_run(config, data, root=RUNS, progress=False)
    keep(directory, RUNS)
    if result.get("finished"):
        print(json.dumps({m: round(result["test"][m], 4) for m in METRICS}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--variants", default="backbone,wo_llm,cllmrec")
    parser.add_argument("--stage", choices=["all", "score", "train"], default="all")
    parser.add_argument("--encoder-dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--encoder-max-length", type=int, default=256)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument(
        "--sweeps",
        action="store_true",
        help="CLLMRec option sweeps instead of the grid (seed 42; --seeds to confirm a point)",
    )
    parser.add_argument(
        "--sweep-points",
        default=None,
        help="only these sweep points, e.g. 'lambda1=0.3,alpha=0.5' (split a sweep across cores)",
    )
    parser.add_argument(
        "--time-steps", type=int, default=0, help="measure the step cost side by side (N steps)"
    )
    args = parser.parse_args()
    restore(RUNS)  # finished runs kept in git: skipped, not retrained
    restore_artefacts(paths.cache_root())  # and the scoring step is not recomputed
    args.datasets = args.datasets.split(",")
    args.models = args.models.split(",")
    args.variants = [v for v in VARIANTS if v in args.variants.split(",")]
    if args.sweep_points:
        args.sweep_points = set(args.sweep_points.split(","))
        known = {
            sweep_point(option, value) for option, values in SWEEPS.items() for value in values
        }
        if unknown := sorted(args.sweep_points - known):
            parser.error(f"--sweep-points: unknown {unknown}; known: {sorted(known)}")
    enhancer_options = {
        "encoder_dtype": args.encoder_dtype,
        "encoder_max_length": args.encoder_max_length,
        # Explicit, so these runs never alias the ones made while dot product was the default
        # (those collapsed the representation; see benchmarks/results/sracl.md).
        "similarity": "cosine",
    }
    if args.time_steps:
        costs = json.loads(COST.read_text()) if COST.exists() else {}
        for dataset in args.datasets:
            data = prepare_preset(dataset, Path(args.data))
            for model in args.models:
                cost = time_steps(
                    dataset, data, model, args.variants, enhancer_options, args.time_steps
                )
                print(dataset, model, json.dumps(cost), flush=True)
                costs.setdefault(dataset, {})[model] = cost
        COST.write_text(json.dumps(costs, indent=1) + "\n")
        write_cllmrec_report(args, enhancer_options)
        return
    if not args.report_only:
        for dataset in args.datasets:
            data = prepare_preset(dataset, Path(args.data))
            if args.stage in ("all", "score") and "cllmrec" in args.variants:
                print(f"== {dataset}: scoring step", flush=True)
                print(
                    json.dumps(scoring(dataset, data, args.models[0], enhancer_options)), flush=True
                )
            if args.stage == "score":
                continue
            if args.sweeps:
                for model, seed in product(args.models, args.seeds or [42]):
                    for option, value, config in sweep_configs(
                        dataset, model, seed, args.epochs, enhancer_options
                    ):
                        if (
                            args.sweep_points
                            and sweep_point(option, value) not in args.sweep_points
                        ):
                            continue
                        if option in SCORING_OPTIONS:  # its own scores, kept like the default's
                            scoring(dataset, data, model, {**enhancer_options, option: value})
                        label = f"{dataset} {model} {option}={value} seed {seed}"
                        train_one(args, config, data, label)
                        write_cllmrec_report(args, enhancer_options)
                continue
            for seed in seeds_to_train(args, multi_seed=True):
                for model in args.models:
                    for variant in args.variants:
                        config = variant_config(
                            dataset, model, variant, seed, args.epochs, enhancer_options
                        )
                        train_one(args, config, data, f"{dataset} {model} {variant} seed {seed}")
                        write_cllmrec_report(args, enhancer_options)
    write_cllmrec_report(args, enhancer_options)


if __name__ == "__main__":
    main()
