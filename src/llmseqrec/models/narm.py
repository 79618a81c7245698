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

from llmseqrec.models.base import Backbone, BackboneConfig
from llmseqrec.models.gru4rec import init_gru_xavier, run_gru
from llmseqrec.models.layers import Dropout, valid_mask, zero_padding_row
from llmseqrec.models.registry import register

# Elements of a [rows, chunk, keys, H] additive-attention block built at once; blocks are
# recomputed in the backward pass, so memory stays bounded for long sequences. On the CPU a 4 MB
# block stays in cache (1<<20 beat 1<<18..1<<22 by 10-40% on ML-1M); a GPU takes far larger
# blocks: with small ones NARM ran ~10x slower per epoch than the other backbones on an H200.
_CHUNK_ELEMENTS_CPU = 1 << 20
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


class _LocalContext(torch.autograd.Function):
    """``c_t = sum_{j <= t, j real} v^T sigmoid(q_t + k_j) h_j`` for left-padded rows.

    Query rows go in chunks whose ``[B, rows, keys, d]`` block is never stored: the backward pass
    recomputes each block once and takes the sigmoid's gradient in one fused kernel. Autograd
    with activation checkpointing did the same work in ~3x the time (it stores and re-reads the
    block, and fills zero gradients for every slice).
    """

    @staticmethod
    def forward(ctx, q, k, h, valid, v, chunk: int):  # type: ignore[override]
        length = q.size(1)
        causal = torch.ones(length, length, dtype=q.dtype, device=q.device).tril()
        out = q.new_zeros(q.shape)
        for s in range(0, length, chunk):
            e = min(s + chunk, length)
            scores = _block_scores(q, k, valid, causal, v, s, e)[1]
            out[:, s:e] = torch.bmm(scores, h[:, :e])
        ctx.save_for_backward(q, k, h, valid, v, causal)
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        q, k, h, valid, v, causal = ctx.saved_tensors
        length, d = q.size(1), q.size(2)
        grad_q, grad_k, grad_h = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(h)
        grad_v = torch.zeros_like(v)
        for s in range(0, length, ctx.chunk):
            e = min(s + ctx.chunk, length)
            gate, scores, allowed = _block_scores(q, k, valid, causal, v, s, e)
            go = grad_out[:, s:e]
            grad_h[:, :e] += torch.bmm(scores.transpose(1, 2), go)
            grad_scores = torch.bmm(go, h[:, :e].transpose(1, 2)).mul_(allowed)
            grad_v += grad_scores.reshape(1, -1).mm(gate.reshape(-1, d)).squeeze(0)
            grad_pre = torch.ops.aten.sigmoid_backward(grad_scores.unsqueeze(-1) * v, gate)
            grad_q[:, s:e] = grad_pre.sum(2)
            grad_k[:, :e] += grad_pre.sum(1)
        return grad_q, grad_k, grad_h, None, grad_v, None


def _block_scores(
    q, k, valid, causal, v, s: int, e: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Query rows ``s:e`` against keys ``< e`` (later keys are masked by causality anyway):
    the gate ``sigmoid(q_t + k_j)``, the masked scores ``alpha_tj`` (additive and
    unnormalised, as in the paper) and the mask itself."""
    gate = (q[:, s:e, None, :] + k[:, None, :e, :]).sigmoid_()
    d = gate.size(-1)
    scores = gate.reshape(-1, d).mv(v).view(gate.shape[:3])
    allowed = causal[s:e, :e] * valid[:, None, :e]
    return gate, scores.mul_(allowed), allowed


# Rows of a batch are sorted by length and attended in groups of this many, each cut to its
# longest row: the quadratic local context then skips most padding (ML-1M windows at max
# length 200 are 43% padding, and nearly every random batch holds one full-length row).
# Groups of 8 measured fastest of 4..32 on ML-1M.
_GROUP_ROWS = 8


def local_context(
    q: torch.Tensor, k: torch.Tensor, h: torch.Tensor, valid: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """NARM's local context for every position of left-padded rows (zero before a row starts)."""
    b, length, d = q.shape
    # one dtype throughout (bf16 under autocast): the hand-written backward mixes no precisions
    dtype = q.dtype
    k, h, v = k.to(dtype), h.to(dtype), v.to(dtype)
    lengths = valid.sum(1)
    order = torch.argsort(lengths, stable=True)
    row_lengths = lengths[order].tolist()
    parts = []
    for g in range(0, b, _GROUP_ROWS):
        rows = order[g : g + _GROUP_ROWS]
        # a padding query sees no real key: its context is 0, so the group keeps only the
        # columns of its longest row
        n = max(1, row_lengths[min(g + _GROUP_ROWS, b) - 1])
        cut = slice(length - n, length)
        chunk = max(1, chunk_elements(q.device) // max(1, len(rows) * n * d))
        with torch.autocast(q.device.type, enabled=False):
            part = _LocalContext.apply(
                q[rows, cut], k[rows, cut], h[rows, cut], valid[rows, cut].to(dtype), v, chunk
            )
        parts.append(nn.functional.pad(part, (0, 0, length - n, 0)))
    return torch.cat(parts)[torch.argsort(order)]


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
        c_local = local_context(self.a1(h), self.a2(h), h, valid, self.v)
        return self.b(self.ct_dropout(torch.cat([h, c_local], dim=-1)))
