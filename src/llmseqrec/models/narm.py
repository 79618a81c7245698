"""NARM (Li et al., CIKM 2017): a GRU encoder with a global (last state) and a local
(attention over all states) context; the paper's bilinear decoder ``e_i^T B [c_g; c_l]`` is
expressed as the state ``B [c_g; c_l]``, which the trainer dots with the item embeddings.

Every position gets its own context (attention over positions ``<= t``) because the trainer
predicts the next item at every position.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn
from torch.utils.checkpoint import checkpoint

from llmseqrec.models.base import Backbone, BackboneConfig
from llmseqrec.models.gru4rec import init_gru_xavier, run_gru
from llmseqrec.models.layers import Dropout, attention_mask, valid_mask, zero_padding_row
from llmseqrec.models.registry import register

# Elements of the [B, chunk, L, H] additive-attention tensor built at once; chunks are
# recomputed in the backward pass, so memory stays bounded for long sequences. A GPU takes far
# larger blocks: with the CPU's size an ML-1M batch (B 128, L 200) split into 100 chunks of two
# rows, and NARM ran ~10x slower per epoch than the other backbones on an H200.
_CHUNK_ELEMENTS_CPU = 1 << 22
_CHUNK_ELEMENTS_GPU = 1 << 28


def chunk_elements(device: torch.device) -> int:
    return _CHUNK_ELEMENTS_CPU if device.type == "cpu" else _CHUNK_ELEMENTS_GPU


class NARMConfig(BackboneConfig):
    """Paper defaults: one GRU layer, hidden 64 (the paper: 100 hidden / 50 embedding; tied
    output embeddings need one size), embedding dropout 0.25, context dropout 0.5."""

    name: str = "narm"
    hidden_size: int = Field(64, ge=1)
    num_layers: int = Field(1, ge=1)
    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="dropout on [c_g; c_l]")
    emb_dropout: float | None = Field(0.25, description="dropout on the input embeddings")


def _local_context(
    q: torch.Tensor, k: torch.Tensor, h: torch.Tensor, allowed: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    # alpha_tj = v^T sigmoid(A1 h_t + A2 h_j): additive and unnormalised, as in the paper.
    scores = torch.sigmoid(q.unsqueeze(2) + k.unsqueeze(1)) @ v  # [B, c, L]
    scores = scores * allowed
    return scores @ h


@register("narm")
class NARM(Backbone):
    config_class = NARMConfig
    objective = "causal"

    def __init__(self, n_items: int, config: NARMConfig) -> None:
        super().__init__(n_items, config)
        d = config.hidden_size
        emb_dropout = config.dropout if config.emb_dropout is None else config.emb_dropout
        self.emb_dropout = Dropout(emb_dropout)
        self.gru = nn.GRU(d, d, num_layers=config.num_layers, batch_first=True)
        self.a1 = nn.Linear(d, d, bias=False)
        self.a2 = nn.Linear(d, d, bias=False)
        self.v = nn.Parameter(torch.empty(d))
        self.ct_dropout = Dropout(config.dropout)
        self.b = nn.Linear(2 * d, d, bias=False)
        nn.init.xavier_normal_(self.item_embedding.weight)
        zero_padding_row(self.item_embedding)
        init_gru_xavier(self.gru)
        for lin in (self.a1, self.a2, self.b):
            nn.init.xavier_normal_(lin.weight)
        nn.init.normal_(self.v, std=d**-0.5)

    def encode(self, item_seq: torch.Tensor) -> torch.Tensor:
        valid = valid_mask(item_seq)
        h = run_gru(self.gru, self.emb_dropout(self.embed_items(item_seq)), valid)
        q, k = self.a1(h), self.a2(h)
        allowed = attention_mask(valid, causal=True).squeeze(1) & valid.unsqueeze(1)
        b, length, d = h.shape
        v = self.v.to(q.dtype)
        allowed = allowed.to(q.dtype)
        chunk = max(1, chunk_elements(h.device) // max(1, b * length * d))
        parts = []
        for s in range(0, length, chunk):
            # position t attends to j <= t only: a chunk of rows ending at e needs keys < e,
            # which halves the [B, rows, keys, d] work over the whole sequence
            e = min(s + chunk, length)
            args = (q[:, s:e], k[:, :e], h[:, :e], allowed[:, s:e, :e], v)
            if torch.is_grad_enabled() and length > chunk:
                parts.append(checkpoint(_local_context, *args, use_reentrant=False))
            else:
                parts.append(_local_context(*args))
        c_local = torch.cat(parts, dim=1)
        return self.b(self.ct_dropout(torch.cat([h, c_local], dim=-1)))
