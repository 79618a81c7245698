"""The backbone interface every model and every method shares.

A backbone turns a batch of LEFT-padded item sequences ``[B, L]`` (0 = padding, the most recent
item at position ``L-1``) into hidden states ``[B, L, d]``: ``encode(item_seq)``. The trainer owns
the scoring head: ``logits = states @ item_embeddings().T`` over items ``0..N`` (tied weights;
column 0 is padding and is never a target), plus a learned per-item bias when ``item_bias`` is
set. Causal backbones (``objective = "causal"``) must not let position ``t`` see positions
``> t``; the trainer reads position ``t`` as the prediction of item ``t+1``. Bidirectional backbones (BERT4Rec, ``objective = "masked"``) are trained on
masked items, with ``mask_token`` = ``n_items + 1``, and predict by a trailing mask token.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn


class BackboneConfig(BaseModel):
    """Hyper-parameters shared by all backbones; each model's subclass sets its paper defaults."""

    model_config = ConfigDict(extra="forbid")

    name: str
    hidden_size: int = Field(64, ge=1)
    max_len: int = Field(50, ge=1)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    emb_dropout: float | None = Field(None, description="embedding dropout; None = same as dropout")
    item_bias: bool = Field(
        False, description="learned per-item score bias in the head (LRURec's code has one)"
    )


class Backbone(nn.Module):
    """Base class: owns the item embedding table (row 0 padding; a mask row when masked)."""

    config_class: ClassVar[type[BackboneConfig]] = BackboneConfig
    objective: ClassVar[Literal["causal", "masked"]] = "causal"

    def __init__(self, n_items: int, config: BackboneConfig) -> None:
        super().__init__()
        self.n_items = n_items
        self.config = config
        rows = n_items + 2 if self.objective == "masked" else n_items + 1
        self.item_embedding = nn.Embedding(rows, config.hidden_size, padding_idx=0)
        self.item_score_bias = nn.Parameter(torch.zeros(n_items + 1)) if config.item_bias else None

    @property
    def mask_token(self) -> int:
        return self.n_items + 1

    def item_embeddings(self) -> torch.Tensor:
        """Scoring matrix ``[N+1, d]`` (row 0 = padding, excluded from targets by the trainer)."""
        return self.item_embedding.weight[: self.n_items + 1]

    def item_biases(self) -> torch.Tensor | None:
        """Per-item score bias ``[N+1]`` added to the logits, or None (the default head)."""
        return self.item_score_bias

    def embed_items(self, item_seq: torch.Tensor) -> torch.Tensor:
        """Input embeddings; wrappers (dual-view methods) may override this or ``encode``."""
        return self.item_embedding(item_seq)

    def encode(self, item_seq: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode_last(self, item_seq: torch.Tensor) -> torch.Tensor:
        """Representation used to rank the next item: the state at the last position."""
        return self.encode(item_seq)[:, -1, :]
