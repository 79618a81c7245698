"""LLM-ESR baseline (Liu et al., NeurIPS 2024): dual view + retrieval-augmented self-distillation.

On the same parts as LLM-CFSR (:mod:`llmseqrec.enhancers.dualview`):

* semantic view: the RAW sentence-encoder embeddings of the item texts (frozen) through the
  adapter; collaborative view: ID embeddings initialised from their PCA; one shared encoder;
* LLM-ESR's cross-attention between the two views' input embeddings (its ``llm2id`` /
  ``id2llm``), but CAUSAL: the public code masks padding only, so a position reads the next
  item of the other view (the label); we do not reproduce that;
* retrieval-augmented self-distillation: each user's semantic representation is the mean of the
  item embeddings of its TRAINING prefix; its top-``k`` most similar users (cosine, FAISS,
  itself excluded) are retrieved once. At every step the user's sequence representation (the
  last position's state) is pulled (MSE, weight ``alpha``) toward the mean of the detached
  representations of ``sim_users_per_step`` of those neighbours, encoded by the same model
  from their training prefixes.

Only training prefixes reach the similarity, the neighbour rows and the loss.

Ablations: ``no_distill`` (dual view only), ``no_cross_attention``, ``semantic_only``,
``collaborative_only``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from llmseqrec import atomic
from llmseqrec.data.dataset import Dataset
from llmseqrec.enhancers.base import Enhancer, parse_options, register_enhancer
from llmseqrec.enhancers.dualview import DualViewOptions, DualViewRecommender
from llmseqrec.enhancers.llmcfsr import semantic_root
from llmseqrec.enhancers.llmcfsr_finetune import FinetuneOptions, semantic_item_embeddings
from llmseqrec.enhancers.views import represent_by_length
from llmseqrec.errors import ConfigError
from llmseqrec.training.batches import Batch, left_pad

ABLATIONS = ("none", "no_distill", "no_cross_attention", "semantic_only", "collaborative_only")


class LLMESROptions(DualViewOptions):
    fusion_embedding: bool = Field(True, description="LLM-ESR's cross-attention (made causal)")
    adapter_activation: Literal["gelu", "none"] = "none"
    alpha: float = Field(0.1, ge=0.0, description="weight of the self-distillation loss")
    sim_users: int = Field(10, ge=1, description="k similar users retrieved per user")
    sim_users_per_step: int | None = Field(
        None, ge=1, description="neighbours encoded per user and step; None = all k"
    )
    encoder: FinetuneOptions = Field(
        default_factory=lambda: FinetuneOptions(enabled=False),
        description="text encoder for the semantic view (raw, not fine-tuned, by default)",
    )
    ablation: Literal[ABLATIONS] = "none"  # type: ignore[valid-type]
    progress: bool | None = None

    def effective(self) -> LLMESROptions:
        update: dict[str, Any] = {}
        if self.ablation == "no_distill":
            update["alpha"] = 0.0
        elif self.ablation == "no_cross_attention":
            update["fusion_embedding"] = False
        elif self.ablation in ("semantic_only", "collaborative_only"):
            update.update(
                views=self.ablation.removesuffix("_only"), fusion_embedding=False, alpha=0.0
            )
        return self.model_copy(update=update)


def user_semantic_vectors(dataset: Dataset, embeddings: np.ndarray) -> np.ndarray:
    """Mean item embedding of each user's TRAINING prefix -> ``[U, D]``."""
    split = dataset.split
    users = split.train_users_of()
    sums = np.zeros((dataset.n_users, embeddings.shape[1]), dtype=np.float64)
    np.add.at(sums, users, embeddings[split.train_items])
    return (sums / np.maximum(split.train_lengths, 1)[:, None]).astype(np.float32)


@register_enhancer
class LLMESR(Enhancer):
    name = "llmesr"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.opts: LLMESROptions = parse_options(LLMESROptions, self.options, self.name).effective()
        self.embeddings: np.ndarray | None = None
        self.neighbours: np.ndarray | None = None
        self._teacher_rows: torch.Tensor | None = None
        self._neighbours_t: torch.Tensor | None = None

    def prepare(self, dataset: Dataset, workdir: Path) -> None:
        self.embeddings, emb_dir = semantic_item_embeddings(
            dataset, semantic_root(workdir), self.opts.encoder, progress=self.opts.progress
        )
        if self.opts.alpha == 0.0:
            return
        split = dataset.split
        key = hashlib.sha256(
            json.dumps(
                {
                    "embeddings": emb_dir.name,
                    "k": self.opts.sim_users,
                    "train": hashlib.sha256(
                        split.train_items.tobytes() + split.train_offsets.tobytes()
                    ).hexdigest(),
                }
            ).encode()
        ).hexdigest()[:12]
        path = Path(workdir) / f"neighbours-{key}.npy"
        if path.exists():
            self.neighbours = np.load(path)
            return
        from llmseqrec.text.retrieval import topk_neighbours

        vectors = user_semantic_vectors(dataset, self.embeddings)
        k = min(self.opts.sim_users, dataset.n_users - 1)
        neighbours, _ = topk_neighbours(vectors, k)
        # Ties/too few users leave -1: fall back to the best neighbour.
        neighbours = np.where(neighbours < 0, neighbours[:, :1], neighbours)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.save_npy(path, neighbours.astype(np.int64))
        self.neighbours = neighbours.astype(np.int64)

    def wrap(self, recommender: nn.Module) -> nn.Module:
        if self.embeddings is None:
            raise ConfigError(f"{self.name}: prepare() must run before the model is built")
        return DualViewRecommender(recommender, self.embeddings, self.opts)

    def bind(self, dataset: Dataset, max_len: int, seed: int) -> None:
        super().bind(dataset, max_len, seed)
        if self.opts.alpha > 0.0 and self.neighbours is not None:
            split = dataset.split
            self._teacher_rows = torch.from_numpy(
                left_pad(split.train_offsets, split.train_items, max_len)
            )
            self._neighbours_t = torch.from_numpy(self.neighbours)

    def extra_loss(
        self, model: nn.Module, batch: Batch, states: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        if self.opts.alpha == 0.0 or self._teacher_rows is None:
            return {}
        users = batch.users.cpu()  # the neighbour and teacher tables stay on the CPU
        neighbours = self._neighbours_t[users]  # [B, k]
        k = neighbours.shape[1]
        m = min(self.opts.sim_users_per_step or k, k)
        if m < k:
            pick = torch.rand(len(users), k, generator=self.generator).argsort(1)[:, :m]
            neighbours = neighbours.gather(1, pick)
        rows = self._teacher_rows[neighbours.reshape(-1)].to(states.device)
        with torch.no_grad():
            # Grouped by length, each group trimmed to its longest row: on sparse data most
            # neighbour prefixes are far shorter than the longest one in the batch.
            teacher = represent_by_length(lambda part: model.encode(part)[:, -1, :], rows)
        teacher = teacher.view(len(users), m, -1).mean(1)
        student = states[:, -1, :]
        return {"distill": self.opts.alpha * F.mse_loss(student.float(), teacher.float())}
