"""Dual-view sequential model shared by LLM-CFSR and the LLM-ESR baseline.

Two views of every item go through the backbone's encoder:

* **semantic**: frozen text embeddings ``[N+1, D]`` -> a trainable adapter MLP -> ``d``;
* **collaborative**: the backbone's own ID embeddings (optionally initialised from a PCA of the
  semantic embeddings, as LLM-ESR does).

The semantic view is fed into the backbone through its ``embed_items`` hook, so the same
architecture (SASRec, GRU4Rec, any causal backbone whose ``encode`` reads ``embed_items``) runs
both views. ``shared_encoder=True`` (default, as in LLM-ESR, whose "w/o share" row is an
ablation) runs both views through ONE set of encoder weights: half the parameters, and the two
views' hidden states live in one space, which the cross-attention relies on. ``False`` gives
the semantic view its own encoder of the same architecture (fresh initialisation).

Fusion (each level switchable):

* **embedding**: each view's input embeddings attend to the other view's (residual);
* **sequence**: each view's hidden states attend to the other's (residual + LayerNorm);
* **prediction**: a per-position gate ``g = sigmoid(w [h_sem, h_col])`` mixes the two views'
  logits as ``2g * logit_sem + 2(1-g) * logit_col`` (``g = 0.5`` at initialisation: the plain
  sum). Without it, the two logits are summed.

Every cross-attention is CAUSAL: the query at position ``t`` sees the other view's positions
``<= t`` only (and real items only). LLM-ESR's public code masks padding only, so position ``t``
reads item ``t+1`` of the other view, which is the label the position is trained to predict.

Prediction: the model's hidden state is ``[h_sem, h_col]`` (``2d``) and its item table is
``[E_sem, E_col]``: their dot product is ``h_sem . E_sem + h_col . E_col``, the sum of the two
views' logits, so the trainer's fused softmax CE, the sampled BCE and full / sampled ranking
work unchanged. The gate is folded into the hidden state.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from llmseqrec.errors import ConfigError
from llmseqrec.models.layers import MultiHeadAttention, attention_mask
from llmseqrec.training.recommender import Recommender


class DualViewOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    views: Literal["both", "semantic", "collaborative"] = Field(
        "both", description="single-view ablations train one branch as a plain backbone"
    )
    shared_encoder: bool = Field(True, description="one encoder for both views (LLM-ESR)")
    fusion_embedding: bool = False
    fusion_sequence: bool = False
    fusion_prediction: bool = False
    cross_heads: int = Field(2, ge=1)
    cross_dropout: float | None = Field(
        None, ge=0.0, lt=1.0, description="None = the backbone's dropout"
    )
    adapter_hidden: int | None = Field(None, ge=1, description="None = D / 2 (LLM-ESR)")
    adapter_activation: Literal["gelu", "none"] = Field(
        "gelu", description="none = LLM-ESR's two stacked linear layers"
    )
    pca_init: bool = Field(True, description="collaborative embeddings from a PCA of semantic")
    pca_scale: Literal["raw", "match"] = Field(
        "raw", description="raw PCA coordinates (LLM-ESR) or rescaled to the backbone's init std"
    )


class CrossAttention(nn.Module):
    """``query`` attends to ``context`` (the other view), causally; residual (+ LayerNorm)."""

    def __init__(self, d: int, heads: int, dropout: float, norm: bool) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(d, heads, dropout)
        self.drop = nn.Dropout(dropout)
        self.norm: nn.Module = nn.LayerNorm(d, eps=1e-8) if norm else nn.Identity()
        # Only tests flip this (to show the leak test catches LLM-ESR's padding-only mask).
        self.causal = True

    def forward(
        self, query: torch.Tensor, context: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        mask = attention_mask(valid, causal=self.causal)
        out = self.norm(query + self.drop(self.attn(query, context, mask)))
        return out * valid.unsqueeze(-1).to(out.dtype)


def pca_projection(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Top-``dim`` principal coordinates of the rows (centred); zero columns if ``dim > D``."""
    x = vectors.astype(np.float64) - vectors.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    k = min(dim, vt.shape[0])
    out = np.zeros((len(vectors), dim), dtype=np.float32)
    out[:, :k] = (x @ vt[:k].T).astype(np.float32)
    return out


def run_with_embeddings(encoder: nn.Module, item_seq: torch.Tensor, embedded: torch.Tensor):
    """``encoder.encode(item_seq)`` with its ``embed_items`` returning ``embedded``."""

    def embed_items(seq: torch.Tensor) -> torch.Tensor:
        if seq.shape != item_seq.shape:
            raise RuntimeError("the backbone embedded another sequence than the one encoded")
        return embedded

    encoder.__dict__["embed_items"] = embed_items
    try:
        return encoder.encode(item_seq)
    finally:
        encoder.__dict__.pop("embed_items", None)


class DualViewRecommender(Recommender):
    """A ``Recommender`` (encode / item_table / score_last / objective / backbone) over two
    views; ``backbone`` is the collaborative view's backbone (the trainer reads its config)."""

    def __init__(
        self,
        recommender: Recommender,
        semantic: np.ndarray | torch.Tensor,
        options: DualViewOptions,
    ) -> None:
        backbone = recommender.backbone
        super().__init__(backbone)
        if backbone.objective != "causal":
            raise ConfigError(
                f"dual-view methods need a causal backbone (sasrec, gru4rec, ...), not "
                f"{backbone.config.name!r} (objective {backbone.objective!r})"
            )
        semantic = torch.as_tensor(np.asarray(semantic, dtype=np.float32))
        if semantic.shape[0] != backbone.n_items + 1:
            raise ConfigError(
                f"semantic embeddings have {semantic.shape[0]} rows, expected n_items + 1 = "
                f"{backbone.n_items + 1}"
            )
        self.options = options
        d = backbone.config.hidden_size
        big = semantic.shape[1]
        dropout = (
            options.cross_dropout if options.cross_dropout is not None else backbone.config.dropout
        )
        self.use_sem = options.views in ("both", "semantic")
        self.use_col = options.views in ("both", "collaborative")
        both = self.use_sem and self.use_col
        self.register_buffer("semantic", semantic.clone(), persistent=False)
        hidden = options.adapter_hidden or max(1, big // 2)
        self.adapter = nn.Sequential(
            nn.Linear(big, hidden),
            nn.GELU() if options.adapter_activation == "gelu" else nn.Identity(),
            nn.Linear(hidden, d),
        )
        if options.shared_encoder:
            self.sem_encoder = None
        else:
            encoder = type(backbone)(backbone.n_items, backbone.config)
            encoder.item_embedding = nn.Embedding(1, d)  # never read: the adapter feeds it
            self.sem_encoder = encoder
        self.emb_fusion = both and options.fusion_embedding
        self.seq_fusion = both and options.fusion_sequence
        self.pred_fusion = both and options.fusion_prediction
        if self.emb_fusion:
            self.emb_sem = CrossAttention(d, options.cross_heads, dropout, norm=False)
            self.emb_col = CrossAttention(d, options.cross_heads, dropout, norm=False)
        if self.seq_fusion:
            self.seq_sem = CrossAttention(d, options.cross_heads, dropout, norm=True)
            self.seq_col = CrossAttention(d, options.cross_heads, dropout, norm=True)
        if self.pred_fusion:
            self.gate = nn.Linear(2 * d, 1)
            nn.init.zeros_(self.gate.weight)
            nn.init.zeros_(self.gate.bias)
        if options.pca_init and self.use_col:
            self._pca_init(semantic.numpy())

    @torch.no_grad()
    def _pca_init(self, semantic: np.ndarray) -> None:
        table = self.backbone.item_embedding.weight
        n = self.backbone.n_items
        coords = torch.from_numpy(pca_projection(semantic[1:], table.shape[1]))
        if self.options.pca_scale == "match":
            coords = coords * (table[1 : n + 1].std() / coords.std().clamp_min(1e-12))
        table[1 : n + 1] = coords.to(table.dtype)

    @property
    def semantic_encoder(self) -> nn.Module:
        return self.sem_encoder if self.sem_encoder is not None else self.backbone

    def semantic_table(self) -> torch.Tensor:
        table = self.adapter(self.semantic)
        return torch.cat([torch.zeros_like(table[:1]), table[1:]])

    def views(self, item_seq: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Hidden states ``[B, L, d]`` of the semantic and collaborative views (after fusion)."""
        valid = item_seq != 0
        keep = valid.unsqueeze(-1)
        e_sem = e_col = h_sem = h_col = None
        if self.use_sem:
            e_sem = self.adapter(self.semantic[item_seq]) * keep
        if self.use_col:
            e_col = self.backbone.item_embedding(item_seq)
        if self.emb_fusion:
            e_sem, e_col = (
                self.emb_sem(e_sem, e_col, valid),
                self.emb_col(e_col, e_sem, valid),
            )
        if self.use_sem:
            h_sem = run_with_embeddings(self.semantic_encoder, item_seq, e_sem)
        if self.use_col:
            h_col = run_with_embeddings(self.backbone, item_seq, e_col)
        if self.seq_fusion:
            h_sem, h_col = self.seq_sem(h_sem, h_col, valid), self.seq_col(h_col, h_sem, valid)
        return h_sem, h_col

    def encode(self, item_seq: torch.Tensor) -> torch.Tensor:
        h_sem, h_col = self.views(item_seq)
        if h_sem is None:
            return h_col
        if h_col is None:
            return h_sem
        if self.pred_fusion:
            g = torch.sigmoid(self.gate(torch.cat([h_sem, h_col], dim=-1)))
            h_sem, h_col = 2 * g * h_sem, 2 * (1 - g) * h_col
        return torch.cat([h_sem, h_col], dim=-1)

    def item_table(self) -> torch.Tensor:
        parts = []
        if self.use_sem:
            parts.append(self.semantic_table())
        if self.use_col:
            parts.append(self.backbone.item_embeddings())
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
