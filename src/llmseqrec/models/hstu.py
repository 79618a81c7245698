"""HSTU (Zhai et al., ICML 2024, "Actions Speak Louder than Words"): causal pointwise
aggregated attention. Per layer: ``U, V, Q, K = SiLU(W x_norm)``; ``A = SiLU(Q K^T + rab) / n``
(no softmax), masked causally; ``y = W_o(dropout(U * LayerNorm(A V)))``; residual.

``rab`` is a learned relative-position bias (one per layer, shared by heads). The paper's
bucketed time bias needs timestamps, which the backbone contract does not carry: omitted.
``n`` is the configured ``max_len`` (the authors divide by the padded length, which here would make
states depend on the amount of padding). The authors L2-normalise the output for their cosine
sampled-softmax head; our head is a plain dot product with the item embeddings, so we do not.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from llmseqrec.models.base import Backbone, BackboneConfig
from llmseqrec.models.layers import (
    Dropout,
    position_ids,
    trunc_normal_,
    valid_mask,
    zero_padding_row,
)
from llmseqrec.models.registry import register


class HSTUConfig(BackboneConfig):
    """Defaults: d=64, 2 layers, 2 heads (per-head q/k and u/v widths d / heads), dropout 0.2,
    relative position bias, max length 200 on ML-1M (the authors' ML-1M settings, with d 64)."""

    name: str = "hstu"
    hidden_size: int = Field(64, ge=1)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    attention_dim: int | None = Field(None, description="per-head q/k width; None = d / heads")
    linear_dim: int | None = Field(None, description="per-head u/v width; None = d / heads")


class HSTULayer(nn.Module):
    def __init__(self, config: HSTUConfig) -> None:
        super().__init__()
        d, heads = config.hidden_size, config.num_heads
        self.heads = heads
        self.dqk = config.attention_dim or max(1, d // heads)
        self.dv = config.linear_dim or max(1, d // heads)
        self.max_len = config.max_len
        self.uvqk = nn.Linear(d, heads * (2 * self.dv + 2 * self.dqk), bias=False)
        self.rel_pos = nn.Parameter(torch.empty(2 * config.max_len - 1))
        self.out = nn.Linear(heads * self.dv, d)
        self.dropout = Dropout(config.dropout)
        nn.init.normal_(self.uvqk.weight, std=0.02)
        nn.init.normal_(self.rel_pos, std=0.02)
        nn.init.xavier_uniform_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def relative_bias(self, length: int, device: torch.device) -> torch.Tensor:
        idx = torch.arange(length, device=device)
        return self.rel_pos[idx.unsqueeze(0) - idx.unsqueeze(1) + self.max_len - 1]

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``weights``: [B, 1, L, L], 1 / n where position t may read position j, else 0."""
        b, length, _ = x.shape
        normed = F.layer_norm(x, x.shape[-1:], eps=1e-6)
        u, v, q, k = F.silu(self.uvqk(normed)).split(
            [
                self.heads * self.dv,
                self.heads * self.dv,
                self.heads * self.dqk,
                self.heads * self.dqk,
            ],
            dim=-1,
        )
        q = q.view(b, length, self.heads, self.dqk).transpose(1, 2)
        k = k.view(b, length, self.heads, self.dqk).transpose(1, 2)
        v = v.view(b, length, self.heads, self.dv).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) + self.relative_bias(length, x.device).to(q.dtype)
        attn = F.silu(scores) * weights.to(q.dtype)
        agg = (attn @ v).transpose(1, 2).reshape(b, length, self.heads * self.dv)
        agg = F.layer_norm(agg, agg.shape[-1:], eps=1e-6)
        return x + self.out(self.dropout(u * agg))


@register("hstu")
class HSTU(Backbone):
    config_class = HSTUConfig
    objective = "causal"

    def __init__(self, n_items: int, config: HSTUConfig) -> None:
        super().__init__(n_items, config)
        d = config.hidden_size
        self.position_embedding = nn.Embedding(config.max_len, d)
        emb_dropout = config.dropout if config.emb_dropout is None else config.emb_dropout
        self.emb_dropout = Dropout(emb_dropout)
        self.layers = nn.ModuleList(HSTULayer(config) for _ in range(config.num_layers))
        trunc_normal_(self.item_embedding.weight, 0.02)
        zero_padding_row(self.item_embedding)
        trunc_normal_(self.position_embedding.weight, math.sqrt(1.0 / d))

    def encode(self, item_seq: torch.Tensor) -> torch.Tensor:
        valid = valid_mask(item_seq)
        keep = valid.unsqueeze(-1)
        length = item_seq.size(1)
        x = self.embed_items(item_seq) * math.sqrt(self.config.hidden_size)
        pos = position_ids(item_seq, self.config.max_len, from_end=False)
        x = self.emb_dropout(x + self.position_embedding(pos)) * keep
        tri = torch.ones(length, length, dtype=torch.bool, device=item_seq.device).tril()
        allowed = (tri & valid[:, None, :]).unsqueeze(1)  # no softmax, so no NaN to guard
        # the causal mask and the 1 / n scale in one tensor, made once for every layer
        weights = allowed.to(x.dtype) / self.config.max_len
        for layer in self.layers:
            x = layer(x, weights) * keep
        return x
