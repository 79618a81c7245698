"""BERT4Rec (Sun et al., CIKM 2019): bidirectional Transformer trained by masked-item prediction.

The trainer masks items with ``mask_token`` (= ``n_items + 1``) at rate ``mask_prob`` and, at
inference, appends the mask token after the history; this module only encodes.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from llmseqrec.models.base import Backbone, BackboneConfig
from llmseqrec.models.layers import (
    Dropout,
    FeedForward,
    MultiHeadAttention,
    attention_mask,
    init_bert_style,
    position_ids,
    valid_mask,
    zero_padding_row,
)
from llmseqrec.models.registry import register


class BERT4RecConfig(BackboneConfig):
    """Paper defaults: d=64, 2 layers, 2 heads, FFN 4d with GELU, dropout 0.1, mask
    probability 0.2 (ML-1M; the paper uses 0.6 on Beauty), max length 200 on ML-1M."""

    name: str = "bert4rec"
    hidden_size: int = Field(64, ge=1)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(2, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    inner_size: int | None = Field(None, description="FFN width; None = 4 * hidden_size")
    mask_prob: float = Field(0.2, gt=0.0, lt=1.0)
    output_transform: bool = Field(
        True, description="the paper's dense+GELU+LayerNorm before the tied output embedding"
    )


class BERTBlock(nn.Module):
    """Post-LN Transformer layer, as in BERT."""

    def __init__(self, config: BERT4RecConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.attn = MultiHeadAttention(d, config.num_heads, config.dropout)
        self.attn_drop = Dropout(config.dropout)
        self.attn_norm = nn.LayerNorm(d, eps=1e-12)
        self.ffn = FeedForward(d, config.inner_size or 4 * d, config.dropout, "gelu")
        self.ffn_norm = nn.LayerNorm(d, eps=1e-12)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.attn_norm(x + self.attn_drop(self.attn(x, x, mask)))
        return self.ffn_norm(x + self.ffn(x))


@register("bert4rec")
class BERT4Rec(Backbone):
    config_class = BERT4RecConfig
    objective = "masked"

    def __init__(self, n_items: int, config: BERT4RecConfig) -> None:
        super().__init__(n_items, config)
        d = config.hidden_size
        self.position_embedding = nn.Embedding(config.max_len, d)
        self.emb_norm = nn.LayerNorm(d, eps=1e-12)
        emb_dropout = config.dropout if config.emb_dropout is None else config.emb_dropout
        self.emb_dropout = Dropout(emb_dropout)
        self.blocks = nn.ModuleList(BERTBlock(config) for _ in range(config.num_layers))
        self.transform: nn.Module = (
            nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d, eps=1e-12))
            if config.output_transform
            else nn.Identity()
        )
        init_bert_style(self)
        zero_padding_row(self.item_embedding)

    def encode(self, item_seq: torch.Tensor) -> torch.Tensor:
        valid = valid_mask(item_seq)
        x = self.embed_items(item_seq)
        x = x + self.position_embedding(position_ids(item_seq, self.config.max_len))
        x = self.emb_dropout(self.emb_norm(x))
        mask = attention_mask(valid, causal=False)
        for block in self.blocks:
            x = block(x, mask)
        return self.transform(x)
