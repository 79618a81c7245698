"""The plug-in interface every method (and contrastive / augmentation baseline) implements.

An enhancer never forks the trainer. It may:

* ``prepare(dataset, workdir)`` — offline, cached, resumable artefacts (LLM calls, embeddings,
  neighbours), computed from TRAINING prefixes only;
* ``wrap(recommender)`` — return a model that changes encoding (dual-view methods);
* ``trainable_modules()`` — extra parameters (e.g. attention synthesis) for the optimiser;
* ``augment_batch(batch, step)`` — add views, extra rows (augmented sequences) or sequence weights;
* ``extra_loss(model, batch, states)`` — named extra losses, already scaled by the method's lambdas.

Randomness must come from ``self.rng`` / ``self.generator`` (seeded in ``bind``), never the global
torch RNG, so that a method with zero loss weight trains exactly like the plain backbone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from llmseqrec.data.dataset import Dataset
from llmseqrec.training.batches import Batch


class Enhancer:
    name: ClassVar[str] = "none"
    # The paper's ablation rows as option overrides: ``--ablation wo_llm`` on the CLI.
    ablations: ClassVar[dict[str, dict[str, Any]]] = {}
    # Options added after runs were recorded, each with the value that does what those runs did:
    # a run's record without the key reads as that value, so the run is still reused or resumed.
    options_added_later: ClassVar[dict[str, Any]] = {}

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = dict(options or {})
        self.rng = np.random.default_rng(0)
        self.generator = torch.Generator().manual_seed(0)
        self.dataset: Dataset | None = None
        self.max_len = 50
        self.run_config: Any = None

    def configure(self, run_config: Any) -> None:
        """The whole run's config (a ``RunConfig``), set before ``prepare``: offline steps that train
        a backbone (LLMSeR's reverse model) or window histories need the model and max length."""
        self.run_config = run_config

    def bind(self, dataset: Dataset, max_len: int, seed: int) -> None:
        self.dataset = dataset
        self.max_len = max_len
        self.rng = np.random.default_rng([seed, 7919])
        self.generator = torch.Generator().manual_seed(seed + 7919)

    def prepare(self, dataset: Dataset, workdir: Path) -> None:
        """Offline artefacts; default: nothing."""

    def wrap(self, recommender: nn.Module) -> nn.Module:
        return recommender

    def trainable_modules(self) -> list[nn.Module]:
        return []

    def augment_batch(self, batch: Batch, step: int) -> Batch:
        return batch

    def extra_loss(
        self, model: nn.Module, batch: Batch, states: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        return {}

    def resolved_options(self) -> dict[str, Any]:
        """Every option with its default filled in (saved with each run: the run name hashes only
        the options a user set, so this is what records the defaults a run was trained with)."""
        opts = getattr(self, "opts", None)
        return opts.model_dump(mode="json") if isinstance(opts, BaseModel) else dict(self.options)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


ENHANCERS: dict[str, type[Enhancer]] = {"none": Enhancer}


def register_enhancer(cls: type[Enhancer]) -> type[Enhancer]:
    ENHANCERS[cls.name] = cls
    return cls


def enhancer_class(name: str) -> type[Enhancer]:
    import importlib
    import pkgutil

    import llmseqrec.enhancers as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name != "base":
            importlib.import_module(f"llmseqrec.enhancers.{module.name}")
    if name not in ENHANCERS:
        from llmseqrec.errors import ConfigError

        raise ConfigError(f"unknown method {name!r}; choose one of: {', '.join(sorted(ENHANCERS))}")
    return ENHANCERS[name]


def make_enhancer(name: str, options: dict[str, Any] | None = None) -> Enhancer:
    return enhancer_class(name)(options)


def parse_options(model: type[BaseModel], options: dict[str, Any], method: str) -> Any:
    """A method's typed options; a bad one stops with one line naming the field."""
    from llmseqrec.errors import ConfigError

    try:
        return model.model_validate(options)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "enhancer"
        raise ConfigError(f"{method} option enhancer.{where}: {first['msg']}") from None


def ablation_overrides(method: str, ablation: str) -> list[str]:
    """``--set`` overrides of a method's named ablation row (clear error for unknown names)."""
    from llmseqrec.errors import ConfigError

    rows = enhancer_class(method).ablations
    if ablation not in rows:
        known = ", ".join(sorted(rows)) or "none (this method has no ablation switches)"
        raise ConfigError(f"--ablation {ablation!r} is not one of {method}'s: {known}")
    return [f"enhancer.{key}={value}" for key, value in rows[ablation].items()]
