"""Run directories and the small Python API: ``fit`` and ``Run.recommend``.

``runs/<dataset>/<method>-<model>/<name>/`` holds ``config.yaml``, ``log.jsonl``, ``state.pt``
(resume), ``checkpoint.pt`` (best on validation), ``metrics.json`` and per-user ranks.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmseqrec import atomic, paths
from llmseqrec.data.dataset import Dataset
from llmseqrec.enhancers.base import Enhancer, make_enhancer
from llmseqrec.errors import ConfigError
from llmseqrec.training.batches import left_pad
from llmseqrec.training.config import RunConfig, build_run_config
from llmseqrec.training.trainer import Trainer, build_model


def run_directory(config: RunConfig, root: Path | None = None) -> Path:
    root = Path(root) if root is not None else paths.runs_root()
    return (
        root
        / config.dataset
        / f"{config.method}-{config.model}"
        / (config.name or config.run_hash())
    )


def train_run(
    config: RunConfig,
    dataset: Dataset,
    root: Path | None = None,
    fresh: bool = False,
    progress: bool | None = None,
) -> tuple[dict[str, Any], Path]:
    """Train (or resume, or return the finished result of) the run this config names."""
    directory = run_directory(config, root)
    if fresh and directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    saved = directory / "config.yaml"
    new_run = not saved.exists()
    if saved.exists():
        previous = RunConfig.from_yaml(saved.read_text())
        if previous.run_hash() != config.run_hash():
            raise ConfigError(
                f"{directory} holds a run with a different config; use another --name or --fresh"
            )
    else:
        saved.write_text(config.to_yaml())
    check_enhancer_defaults(config, directory, new_run)
    metrics_path = directory / "metrics.json"
    if metrics_path.exists():
        result = json.loads(metrics_path.read_text())
        if result.get("finished"):
            return result, directory
    enhancer = prepare_enhancer(config, dataset)
    trainer = Trainer(config, dataset, directory, enhancer, progress=progress)
    return trainer.fit(), directory


def check_enhancer_defaults(config: RunConfig, directory: Path, new_run: bool) -> None:
    """Record the method's resolved options with a new run; refuse to resume or reuse a run whose
    method defaults have changed since (its name, a hash of the set options, would not show it).
    Runs made before this record existed have no file and are left as they are."""
    if config.method == "none":
        return
    enhancer = make_enhancer(config.method, config.enhancer)
    resolved = enhancer.resolved_options()
    path = directory / "enhancer.json"
    if path.exists():
        before = {**enhancer.options_added_later, **json.loads(path.read_text())}
        changed = sorted(k for k in set(before) | set(resolved) if before.get(k) != resolved.get(k))
        if changed:
            raise ConfigError(
                f"{directory} was trained with other {config.method} defaults "
                f"({', '.join(changed)}); use --fresh or another --name"
            )
    elif new_run:
        atomic.write_json(path, resolved)


def enhancer_workdir(config: RunConfig, dataset: Dataset) -> Path:
    """Where a method's offline artefacts live; shared by every run of that method on the dataset
    (artefacts name their own option hash inside it, so different options never collide)."""
    return paths.cache_root() / dataset.name / config.method


def prepare_enhancer(config: RunConfig, dataset: Dataset) -> Enhancer:
    """Build the run's enhancer and run (or reuse) its offline step."""
    enhancer = make_enhancer(config.method, config.enhancer)
    enhancer.configure(config)
    if config.method != "none":
        enhancer.prepare(dataset, enhancer_workdir(config, dataset))
    return enhancer


@dataclass
class Run:
    """A trained run loaded for inference."""

    directory: Path
    config: RunConfig
    dataset: Dataset
    model: torch.nn.Module

    @classmethod
    def load(cls, directory: Path, dataset: Dataset | None = None) -> Run:
        from llmseqrec.data.prepare import load

        directory = Path(directory)
        if not (directory / "config.yaml").exists():
            raise ConfigError(f"{directory}: not a run directory (no config.yaml)")
        if not (directory / "checkpoint.pt").exists():
            raise ConfigError(
                f"{directory}: no checkpoint.pt yet (training has not validated once)"
            )
        config = RunConfig.from_yaml((directory / "config.yaml").read_text())
        dataset = dataset or load(config.dataset)
        # Reuses the cached offline artefacts: dual-view methods need them to rebuild the model.
        enhancer = prepare_enhancer(config, dataset)
        model = build_model(config, dataset, enhancer)
        model.load_state_dict(
            torch.load(directory / "checkpoint.pt", map_location="cpu", weights_only=True)
        )
        model.eval()
        return cls(directory, config, dataset, model)

    @property
    def max_len(self) -> int:
        return self.model.backbone.config.max_len

    def metrics(self) -> dict[str, Any]:
        return json.loads((self.directory / "metrics.json").read_text())

    @torch.no_grad()
    def recommend(
        self,
        user: str | int | None = None,
        history: list[int] | None = None,
        k: int = 10,
        exclude_history: bool = True,
    ) -> list[tuple[int, str, float]]:
        """Top-k (item id, title, score) after a user's full history or a given item list."""
        if (user is None) == (history is None):
            raise ConfigError("give either a user or a history")
        if user is not None:
            items = self.dataset.sequence(self.dataset.user_index(user)).tolist()
        else:
            items = [int(i) for i in history]
            bad = [i for i in items if not 1 <= i <= self.dataset.n_items]
            if bad:
                raise ConfigError(
                    f"history holds unknown item ids {bad[:5]} (valid: 1..{self.dataset.n_items})"
                )
        offsets = np.array([0, len(items)], dtype=np.int64)
        histories = torch.from_numpy(
            left_pad(offsets, np.asarray(items, dtype=np.int64), self.max_len)
        )
        scores = self.model.score_last(histories)[0].float()
        scores[0] = -torch.inf
        if exclude_history:
            scores[torch.as_tensor(items)] = -torch.inf
        top = torch.topk(scores, min(k, self.dataset.n_items)).indices.tolist()
        titles = self.dataset.item_titles()
        return [(i, titles[i], float(scores[i])) for i in top]


def fit(
    dataset: Dataset | str,
    model: str = "sasrec",
    method: str = "none",
    protocol: str | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
    root: Path | None = None,
    progress: bool | None = None,
) -> Run:
    """Train a model on a prepared dataset and return the loaded best run.

    >>> run = fit("synthetic", model="sasrec", overrides={"train": {"epochs": 5}})
    >>> run.recommend(user="1", k=5)
    """
    from llmseqrec.data.prepare import load

    data = load(dataset) if isinstance(dataset, str) else dataset
    config = build_run_config(data.name, model, method, protocol, overrides)
    _, directory = train_run(config, data, root, progress=progress)
    return Run.load(directory, data)
