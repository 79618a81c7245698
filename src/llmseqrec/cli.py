"""The ``llmseqrec`` command line. Every failure the user can cause ends in one line, exit 1."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from llmseqrec.errors import LlmSeqRecError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="LLM-enhanced sequential recommendation."
)
console = Console()
err_console = Console(stderr=True)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "value"
        return f"invalid {where}: {first.get('msg')}"
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def friendly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn expected errors into ``error: <one line>`` and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (LlmSeqRecError, ValidationError, FileNotFoundError, KeyError) as exc:
            message = _one_line(exc)
            if isinstance(exc, KeyError):
                message = str(exc.args[0]) if exc.args else message
            err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values or []:
        if "=" not in value:
            raise LlmSeqRecError(f"{what} expects key=value, got {value!r}")
        key, _, val = value.partition("=")
        out[key.strip()] = val.strip()
    return out


try:  # the text/LLM commands live with the text layer
    from llmseqrec.text.cli import llm_app

    app.add_typer(llm_app, name="llm", help="language-model checks and cache statistics")
except ImportError:  # pragma: no cover - text layer not installed
    pass


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="log details")) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
@friendly
def prepare(
    name: str = typer.Option(..., "--name", "-n", help="name to store the dataset under"),
    path: Path = typer.Option(..., "--path", "-p", help="file or directory of the raw data"),
    format: str | None = typer.Option(
        None, "--format", "-f", help="movielens, sequence, pairs, rechorus, amazon, recbole, table"
    ),
    preset: str | None = typer.Option(
        None,
        "--preset",
        help="a staged dataset: ml-1m, ml-100k, beauty, yelp, office, office-pairs, lastfm",
    ),
    item_text: list[Path] = typer.Option(
        [], "--item-text", help="item text table / categories JSON / id::title file (repeatable)"
    ),
    meta: Path | None = typer.Option(
        None, "--meta", help="item metadata file (movies.dat, u.item, Amazon meta, .item)"
    ),
    text_field: list[str] = typer.Option(
        [], "--text-field", help="source column=canonical field, e.g. name=title (repeatable)"
    ),
    column: list[str] = typer.Option(
        [],
        "--column",
        help="role=column for tables: user, item, timestamp, order, title, ... (repeatable)",
    ),
    separator: str | None = typer.Option(
        None, "--separator", help="field separator (default: per format / sniffed)"
    ),
    string_ids: bool = typer.Option(
        False, "--string-ids", help="ids are not integers (e.g. ASINs in a sequence file)"
    ),
    kcore: int | None = typer.Option(None, "--kcore", help="iterative k-core for users and items"),
    kcore_user: int | None = typer.Option(None, "--kcore-user", help="default: 0, or the preset's"),
    kcore_item: int | None = typer.Option(None, "--kcore-item", help="default: 0, or the preset's"),
    min_seq_len: int = typer.Option(
        3, "--min-seq-len", help="drop users with fewer items (3 = leave-one-out)"
    ),
    no_timestamp_order: bool = typer.Option(
        False, "--file-order", help="keep file order even when timestamps exist"
    ),
    id_mapping: str = typer.Option("auto", "--id-mapping", help="auto, numeric, first-seen"),
    force: bool = typer.Option(False, "--force", help="rebuild even when cached"),
) -> None:
    """Read a raw dataset, filter it, cache it under NAME."""
    from llmseqrec.data.build import PrepareOptions
    from llmseqrec.data.prepare import prepare as run_prepare
    from llmseqrec.data.prepare import preset_options, preset_spec
    from llmseqrec.data.readers import SourceSpec

    if preset:
        spec = preset_spec(preset, path)
    elif format:
        spec = SourceSpec(
            format=format,
            path=path,
            item_text=item_text,
            meta=meta,
            text_fields=_pairs(text_field, "--text-field"),
            columns=_pairs(column, "--column"),
            separator=separator,
            numeric_ids=not string_ids,
        )
    else:
        raise LlmSeqRecError("give --format (or --preset for a staged dataset)")
    published = preset_options(preset) if preset else PrepareOptions()
    options = PrepareOptions(
        kcore_user=next(v for v in (kcore, kcore_user, published.kcore_user) if v is not None),
        kcore_item=next(v for v in (kcore, kcore_item, published.kcore_item) if v is not None),
        min_seq_len=min_seq_len,
        order_by_timestamp=not no_timestamp_order,
        id_mapping=id_mapping,
    )
    with console.status(f"preparing {name} from {path} ..."):
        dataset = run_prepare(spec, name, options, force=force)
    counts = dataset.metadata.get("counts", {})
    console.print(
        f"[bold]{name}[/bold]: {dataset.n_users:,} users, {dataset.n_items:,} items, "
        f"{dataset.n_interactions:,} interactions"
        + (f" (dropped {counts['dropped_users']:,} users)" if counts.get("dropped_users") else "")
    )
    for warning in dataset.metadata.get("warnings", []):
        err_console.print(f"[yellow]warning:[/yellow] {warning}")


def _stats_table(stats: list[dict[str, Any]]) -> Table:
    table = Table(title="prepared datasets")
    for header in (
        "name",
        "users",
        "items",
        "interactions",
        "mean len",
        "median len",
        "density",
        "text coverage",
    ):
        table.add_column(
            header, justify="right" if header not in ("name", "text coverage") else "left"
        )
    for s in stats:
        coverage = ", ".join(f"{k} {v:.0%}" for k, v in s["text_coverage"].items())
        table.add_row(
            s["name"],
            f"{s['users']:,}",
            f"{s['items']:,}",
            f"{s['interactions']:,}",
            f"{s['mean_length']:.1f}",
            f"{s['median_length']:.0f}",
            f"{s['density']:.4%}",
            coverage or "-",
        )
    return table


@app.command()
@friendly
def datasets() -> None:
    """Table of prepared datasets: size, lengths, density, text coverage per field."""
    from llmseqrec import paths
    from llmseqrec.data import cache as cache_mod

    root = paths.cache_root()
    names = cache_mod.list_prepared(root)
    if not names:
        console.print(f"no prepared datasets in {root}")
        return
    stats = [cache_mod.load_dataset(cache_mod.current_directory(root, n)).stats() for n in names]
    console.print(_stats_table(stats))


@app.command()
@friendly
def show(
    name: str = typer.Argument(..., help="prepared dataset"),
    user: str = typer.Option(..., "--user", "-u", help="user id as in the source file"),
) -> None:
    """A user's history with titles; the validation and test items are marked."""
    from llmseqrec.data.prepare import load

    dataset = load(name)
    index = dataset.user_index(user)
    titles = dataset.item_titles()
    sequence = dataset.sequence(index)
    table = Table(title=f"{name}: user {user} ({len(sequence)} items)")
    for header in ("#", "item", "raw id", "title", "split"):
        table.add_column(header)
    for position, item in enumerate(sequence.tolist()):
        role = (
            "test"
            if position == len(sequence) - 1
            else "valid"
            if position == len(sequence) - 2
            else "train"
        )
        table.add_row(str(position + 1), str(item), dataset.item_ids[item - 1], titles[item], role)
    console.print(table)


def _ablation(method: str, ablation: str | None) -> list[str]:
    if not ablation:
        return []
    from llmseqrec.enhancers.base import ablation_overrides

    return ablation_overrides(method, ablation)


def _load_dataset(name: str):
    from llmseqrec.data.prepare import load

    return load(name)


def _print_metrics(title: str, rows: dict[str, dict[str, float]], keys: tuple[str, ...]) -> None:
    table = Table(title=title)
    table.add_column("model")
    for key in keys:
        table.add_column(key, justify="right")
    for name, metrics in rows.items():
        table.add_row(name, *(f"{metrics[k]:.4f}" for k in keys))
    console.print(table)


METRIC_KEYS = ("hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr@10")


@app.command()
@friendly
def train(
    dataset: str = typer.Option(
        ..., "--dataset", "-d", help="prepared dataset name (or 'synthetic')"
    ),
    model: str = typer.Option(
        "sasrec", "--model", "-m", help="sasrec, gru4rec, bert4rec, lrurec, narm, fmlprec, hstu"
    ),
    method: str = typer.Option("none", "--method", help="enhancer plug-in (none = plain backbone)"),
    ablation: str | None = typer.Option(
        None, "--ablation", help="a paper ablation row of the method, e.g. wo_llm, wo_cs"
    ),
    protocol: str | None = typer.Option(None, "--protocol", "-P", help="p-lru, p-cl or p-s100"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
    set_: list[str] = typer.Option(
        [], "--set", help="override, e.g. train.lr=3e-4 backbone.dropout=0.5 (repeatable)"
    ),
    name: str | None = typer.Option(
        None, "--name", help="run directory name (default: config hash, so reruns resume)"
    ),
    fresh: bool = typer.Option(
        False, "--fresh", help="discard an existing run directory of the same name"
    ),
) -> None:
    """Train a backbone (optionally with a method); reruns of the same command resume."""
    from llmseqrec.training.config import build_run_config
    from llmseqrec.training.run import run_directory, train_run

    overrides = _ablation(method, ablation) + list(set_) + ([f"name={name}"] if name else [])
    run_config = build_run_config(dataset, model, method, protocol, overrides, config)
    data = _load_dataset(dataset)
    console.print(f"run directory: {run_directory(run_config)}")
    result, directory = train_run(run_config, data, fresh=fresh)
    if not result.get("finished"):
        console.print(
            f"paused after epoch {result['epoch'] + 1}; rerun the same command to continue"
        )
        return
    console.print(result["protocol"], highlight=False)
    _print_metrics(
        f"{dataset} / {method}-{model} (best epoch {result['best_epoch'] + 1})",
        {"valid": result["valid"], "test": result["test"]},
        METRIC_KEYS,
    )


@app.command()
@friendly
def enhance(
    method: str = typer.Option(..., "--method", help="cllmrec, sracl, llmser, llmcfsr, ..."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="prepared dataset name"),
    model: str = typer.Option("sasrec", "--model", "-m", help="backbone the method will train"),
    ablation: str | None = typer.Option(None, "--ablation", help="a paper ablation row"),
    protocol: str | None = typer.Option(None, "--protocol", "-P", help="p-lru, p-cl or p-s100"),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config file"),
    set_: list[str] = typer.Option(
        [], "--set", help="override, e.g. enhancer.alpha=0.75 (repeatable)"
    ),
) -> None:
    """Run (or resume, or reuse) a method's offline step: LLM calls, scores, embeddings."""
    from llmseqrec.training.config import build_run_config
    from llmseqrec.training.run import enhancer_workdir, prepare_enhancer

    overrides = _ablation(method, ablation) + list(set_)
    run_config = build_run_config(dataset, model, method, protocol, overrides, config)
    data = _load_dataset(dataset)
    prepare_enhancer(run_config, data)
    console.print(f"artefacts: {enhancer_workdir(run_config, data)}")


@app.command()
@friendly
def evaluate(
    run: Path = typer.Option(..., "--run", "-r", help="run directory"),
    stage: str = typer.Option("test", "--stage", help="valid or test"),
) -> None:
    """Re-evaluate a run's best checkpoint and print its metrics with the protocol line."""
    from llmseqrec.evaluation.metrics import metrics_from_ranks
    from llmseqrec.evaluation.ranking import rank_users
    from llmseqrec.training.config import protocol_line
    from llmseqrec.training.run import Run

    loaded = Run.load(run)
    ranks = rank_users(loaded.model, loaded.dataset, loaded.config.eval, stage, loaded.max_len)
    console.print(
        protocol_line(loaded.config, loaded.dataset.metadata, loaded.directory), highlight=False
    )
    _print_metrics(
        f"{loaded.config.dataset} / {loaded.config.method}-{loaded.config.model} ({stage})",
        {stage: metrics_from_ranks(ranks, loaded.config.eval.ks)},
        METRIC_KEYS,
    )


@app.command()
@friendly
def recommend(
    run: Path = typer.Option(..., "--run", "-r", help="run directory"),
    user: str | None = typer.Option(None, "--user", "-u", help="user id as in the source file"),
    history: str | None = typer.Option(None, "--history", help='item ids, e.g. "12 7 95"'),
    k: int = typer.Option(10, "-k", help="how many items"),
) -> None:
    """Top-k next items for a user's full history or for a given item list, with titles."""
    from llmseqrec.training.run import Run

    loaded = Run.load(run)
    items = None
    if history is not None:
        try:
            items = [int(tok) for tok in history.replace(",", " ").split()]
        except ValueError as exc:
            raise LlmSeqRecError(
                f"--history: expected item ids separated by spaces, got {history!r}"
            ) from exc
    table = Table(title=f"top {k} for " + (f"user {user}" if user else f"history {history}"))
    for header in ("#", "item", "title", "score"):
        table.add_column(header)
    for rank, (item, title, score) in enumerate(
        loaded.recommend(user=user, history=items, k=k), start=1
    ):
        table.add_row(str(rank), str(item), title, f"{score:.3f}")
    console.print(table)


@app.command()
@friendly
def quickstart(
    epochs: int = typer.Option(
        30, "--epochs", help="training epochs (early stopping may end sooner)"
    ),
) -> None:
    """The main job on the embedded dataset: no files, no network. Trains SASRec, compares with
    most-popular, shows a recommendation."""
    from llmseqrec.evaluation.baselines import MostPopular
    from llmseqrec.evaluation.metrics import metrics_from_ranks
    from llmseqrec.evaluation.ranking import rank_users
    from llmseqrec.training.config import build_run_config
    from llmseqrec.training.run import Run, train_run

    with console.status("building the embedded synthetic dataset ..."):
        dataset = _load_dataset("synthetic")
    console.print(_stats_table([dataset.stats()]))
    run_config = build_run_config(
        "synthetic",
        "sasrec",
        overrides={"train": {"epochs": epochs, "patience": 5}, "backbone": {"max_len": 50}},
    )
    console.print("training SASRec (full-softmax CE) ...")
    result, directory = train_run(run_config, dataset)
    popular = rank_users(MostPopular(dataset), dataset, run_config.eval, "test", 50)
    console.print(result["protocol"], highlight=False)
    rows = {
        "most popular": metrics_from_ranks(popular, run_config.eval.ks),
        "SASRec": result["test"],
    }
    _print_metrics("synthetic, test split", rows, METRIC_KEYS)
    lift = result["test"]["ndcg@10"] / max(rows["most popular"]["ndcg@10"], 1e-12)
    console.print(f"SASRec NDCG@10 is {lift:.1f}x most-popular's.")
    run = Run.load(directory, dataset)
    titles = dataset.item_titles()
    history = dataset.sequence(0).tolist()
    console.print("user 1 bought: " + " -> ".join(titles[i] for i in history[-4:]))
    console.print(
        "recommended next: "
        + "; ".join(t for _, t, _ in run.recommend(user=dataset.user_ids[0], k=3))
    )
    console.print(f"run directory: {directory}")


if __name__ == "__main__":  # pragma: no cover
    app()
