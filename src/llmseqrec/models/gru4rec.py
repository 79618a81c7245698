"""GRU4Rec (Hidasi et al., ICLR 2016), in its sequential-recommendation form: item embeddings
-> dropout -> GRU; the hidden state at each position scores the next item."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from llmseqrec.models.base import Backbone, BackboneConfig
from llmseqrec.models.layers import (
    Dropout,
    left_to_right_padded,
    right_to_left_padded,
    valid_mask,
    zero_padding_row,
)
from llmseqrec.models.registry import register


class GRU4RecConfig(BackboneConfig):
    """Defaults: one GRU layer, hidden 64 (= embedding size, for the tied output), embedding
    dropout 0.3 (RecBole's tuned default), no dropout between GRU layers."""

    name: str = "gru4rec"
    hidden_size: int = Field(64, ge=1)
    num_layers: int = Field(1, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="between stacked GRU layers")
    emb_dropout: float | None = Field(0.3, description="dropout on the input embeddings")
    gru_hidden_size: int | None = Field(
        None, description="GRU width; None = hidden_size, else projected back to hidden_size"
    )


def run_gru(gru: nn.GRU, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Run ``gru`` on left-padded ``x`` so that no real state ever sees padding.

    Rows are rotated to right padding, the GRU runs from a zero state, and the outputs are rotated
    back; the tails it computes over padding land on padding positions and are never read.
    """
    lengths = valid.sum(dim=1)
    out, _ = gru(left_to_right_padded(x, lengths))
    return right_to_left_padded(out, lengths)


def init_gru_xavier(gru: nn.GRU) -> None:
    for name, p in gru.named_parameters():
        if name.startswith("weight"):
            nn.init.xavier_uniform_(p)


@register("gru4rec")
class GRU4Rec(Backbone):
    config_class = GRU4RecConfig
    objective = "causal"

    def __init__(self, n_items: int, config: GRU4RecConfig) -> None:
        super().__init__(n_items, config)
        d = config.hidden_size
        h = config.gru_hidden_size or d
        emb_dropout = config.dropout if config.emb_dropout is None else config.emb_dropout
        self.emb_dropout = Dropout(emb_dropout)
        self.gru = nn.GRU(
            d,
            h,
            num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.proj: nn.Module = nn.Linear(h, d) if h != d else nn.Identity()
        # RecBole's GRU4Rec init: xavier-normal embeddings, xavier-uniform recurrent weights.
        nn.init.xavier_normal_(self.item_embedding.weight)
        zero_padding_row(self.item_embedding)
        init_gru_xavier(self.gru)
        if isinstance(self.proj, nn.Linear):
            nn.init.xavier_normal_(self.proj.weight)

    def encode(self, item_seq: torch.Tensor) -> torch.Tensor:
        valid = valid_mask(item_seq)
        x = self.emb_dropout(self.embed_items(item_seq))
        return self.proj(run_gru(self.gru, x, valid))
