"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over item embeddings."""

from __future__ import annotations

from typing import Literal

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
    sqrt_scale,
    valid_mask,
    zero_padding_row,
)
from llmseqrec.models.registry import register


class SASRecConfig(BackboneConfig):
    """Paper defaults: d=64 (50 in the paper's tables; 64 in the P-LRU reproductions), 2 blocks,
    1 head, dropout 0.2 (ML-1M; the paper uses 0.5 on the sparse Amazon sets), max length 200
    on ML-1M and 50 elsewhere (set by the protocol)."""

    name: str = "sasrec"
    hidden_size: int = Field(64, ge=1)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(1, ge=1)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    inner_size: int | None = Field(None, description="FFN width; None = hidden_size (paper)")
    init: Literal["xavier", "normal"] = Field(
        "xavier",
        description="xavier: the authors' PyTorch port; normal: N(0, 0.02) weights, zero biases "
        "(the HF / RecBole convention, used by SASRec+ of Klenitskiy & Vasilev)",
    )
    positions: Literal["from_end", "from_start"] = Field(
        "from_end",
        description="learned positions counted back from the newest item, or from each "
        "window's first real item (right-padded implementations such as SASRec+)",
    )


class SASRecBlock(nn.Module):
    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.attn_norm = nn.LayerNorm(d, eps=1e-8)
        self.attn = MultiHeadAttention(d, config.num_heads, config.dropout)
        self.ffn_norm = nn.LayerNorm(d, eps=1e-8)
        self.ffn = FeedForward(d, config.inner_size or d, config.dropout, "relu")

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # As in the authors' code: only the queries are normalised and the residual is taken
        # from the normalised queries.
        q = self.attn_norm(x)
        x = q + self.attn(q, x, mask)
        x = self.ffn_norm(x)
        return x + self.ffn(x)


@register("sasrec")
class SASRec(Backbone):
    config_class = SASRecConfig
    objective = "causal"

    def __init__(self, n_items: int, config: SASRecConfig) -> None:
        super().__init__(n_items, config)
        d = config.hidden_size
        self.position_embedding = nn.Embedding(config.max_len, d)
        emb_dropout = config.dropout if config.emb_dropout is None else config.emb_dropout
        self.emb_dropout = Dropout(emb_dropout)
        self.blocks = nn.ModuleList(SASRecBlock(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(d, eps=1e-8)
        self._init_weights()

    def _init_weights(self) -> None:
        if self.config.init == "normal":
            init_bert_style(self)
        else:  # the authors' PyTorch port: xavier-normal on every matrix, defaults elsewhere
            for p in self.parameters():
                if p.dim() > 1:
                    nn.init.xavier_normal_(p)
        zero_padding_row(self.item_embedding)

    def encode(self, item_seq: torch.Tensor) -> torch.Tensor:
        valid = valid_mask(item_seq)
        keep = valid.unsqueeze(-1)
        x = self.embed_items(item_seq) * sqrt_scale(self.config.hidden_size)
        from_end = self.config.positions == "from_end"
        x = x + self.position_embedding(position_ids(item_seq, self.config.max_len, from_end))
        x = self.emb_dropout(x) * keep
        mask = attention_mask(valid, causal=True)
        for block in self.blocks:
            x = block(x, mask) * keep
        return self.final_norm(x)
