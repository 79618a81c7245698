"""ASReP baseline (Liu et al., SIGIR'21): reverse-pretrained pseudo-prior items, then fine-tuning.

1. Pretrain the backbone on REVERSED training prefixes (the same cached reverse model as LLMSeR's
   CCG: ``[v_k .. v_2]`` for training, ``v_1`` for early stopping; no validation/test item).
2. Generate ``n_pseudo`` (M) pseudo-prior items per user, top-1 repeatedly: each step appends the
   reverse model's best next item to the reversed sequence. Items already in the sequence (history
   or generated) and items never seen in training are excluded, so the chain cannot loop on one
   item. Only users with fewer than ``augment_below`` training items are augmented (ASReP augments
   short sequences); ``None`` augments every user whose prefix leaves room in the window.
3. Fine-tune on the augmented sequences ``[p_M .. p_1, v_1 .. v_k]``: the forward model starts
   from the reverse-pretrained weights (``pretrain_init``, when the offline model is the run's
   model) and the augmented row REPLACES the user's original row in each batch (``augment_batch``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from llmseqrec import atomic
from llmseqrec.data.dataset import Dataset
from llmseqrec.enhancers.base import Enhancer, parse_options, register_enhancer
from llmseqrec.enhancers.llmser import (
    LLMSeR,
    csr_from_lists,
    dual_channel,
    model_max_len,
    prepended_windows,
    short_hash,
    topk_next,
)
from llmseqrec.training.batches import Batch


class ASRePOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_pseudo: int = Field(15, ge=1, description="M: pseudo-prior items generated per user")
    augment_below: int | None = Field(
        18, ge=1, description="augment users with fewer training items (None: all)"
    )
    pretrain_init: bool = Field(True, description="fine-tune from the reverse-pretrained weights")
    offline_model: str | None = None
    offline_epochs: int = Field(30, ge=1)
    offline_patience: int = Field(5, ge=1)
    seed: int = 0


@register_enhancer
class ASReP(Enhancer):
    name = "asrep"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.opts: ASRePOptions = parse_options(ASRePOptions, self.options, self.name)
        self.pseudo_offsets: np.ndarray | None = None
        self.pseudo_items: np.ndarray | None = None
        self.reverse_state: dict[str, torch.Tensor] | None = None

    def _helper(self) -> LLMSeR:
        helper = LLMSeR(
            {
                "offline_model": self.opts.offline_model,
                "offline_epochs": self.opts.offline_epochs,
                "offline_patience": self.opts.offline_patience,
                "seed": self.opts.seed,
            }
        )
        helper.configure(self.run_config)
        return helper

    def prepare(self, dataset: Dataset, workdir: Path) -> None:
        helper = self._helper()
        helper._ensure_run_config(dataset)
        self.run_config = helper.run_config
        payload = {
            "models": helper._model_payload(dataset),
            "m": self.opts.n_pseudo,
            "below": self.opts.augment_below,
        }
        directory = Path(workdir) / short_hash(payload)
        directory.mkdir(parents=True, exist_ok=True)
        atomic.write_json(directory / "options.json", payload)
        model = helper.reverse_model(dataset, workdir)
        same_model = helper._offline_model() == self.run_config.model
        self.reverse_state = (
            {k: v.clone() for k, v in model.state_dict().items()}
            if self.opts.pretrain_init and same_model
            else None
        )
        path = directory / "pseudo.npz"
        if not path.exists():
            started = time.perf_counter()
            offsets, flat = self.generate(model, dataset)
            atomic.save_npz(
                path,
                pseudo_offsets=offsets,
                pseudo_items=flat,
                seconds=np.array(time.perf_counter() - started),
            )
        data = np.load(path)
        self.pseudo_offsets = data["pseudo_offsets"]
        self.pseudo_items = data["pseudo_items"]
        atomic.write_json(
            directory / "cost.json",
            {
                "generation_seconds": float(data["seconds"]),
                "augmented_users": int((np.diff(self.pseudo_offsets) > 0).sum()),
                "users": dataset.split.n_users,
                "llm_calls": 0,
            },
        )

    def generate(self, model: nn.Module, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
        split = dataset.split
        lengths = split.train_lengths
        chosen = np.ones(split.n_users, dtype=bool)
        if self.opts.augment_below is not None:
            chosen = lengths < self.opts.augment_below
        users = np.flatnonzero(chosen)
        seen = np.bincount(split.train_items, minlength=dataset.n_items + 1) > 0
        seen[0] = False
        sequences = [split.train_sequence(int(u))[::-1].astype(np.int64) for u in users]
        generated: list[list[int]] = [[] for _ in users]
        max_len = model_max_len(model)
        for _ in range(self.opts.n_pseudo):
            nxt = topk_next(model, sequences, 1, max_len, seen)[:, 0]
            for i, item in enumerate(nxt):
                if item > 0:
                    generated[i].append(int(item))
                    sequences[i] = np.append(sequences[i], item)
        rows = [np.zeros(0, dtype=np.int32) for _ in range(split.n_users)]
        for u, g in zip(users, generated, strict=True):
            rows[u] = np.asarray(g, dtype=np.int32)  # in generation order: p_1 is next to v_1
        return csr_from_lists(rows)

    def wrap(self, recommender: nn.Module) -> nn.Module:
        if self.reverse_state is not None:
            recommender.load_state_dict(self.reverse_state)
        return recommender

    def bind(self, dataset: Dataset, max_len: int, seed: int) -> None:
        super().bind(dataset, max_len, seed)
        self.aug_windows, augmentable = prepended_windows(
            dataset, self.pseudo_offsets, self.pseudo_items, max_len
        )
        self.row_alpha = augmentable.astype(np.float32)

    def augment_batch(self, batch: Batch, step: int) -> Batch:
        return dual_channel(batch, self.row_alpha, self.aug_windows, self.dataset, mode="replace")
