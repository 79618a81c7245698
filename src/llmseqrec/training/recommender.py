"""A backbone plus the shared scoring head (tied item embeddings) and the two objectives."""

from __future__ import annotations

import torch
from torch import nn

from llmseqrec.models.base import Backbone


class Recommender(nn.Module):
    """Scores items for the next position. Methods that change the model wrap ``backbone``."""

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone

    @property
    def n_items(self) -> int:
        return self.backbone.n_items

    @property
    def objective(self) -> str:
        return self.backbone.objective

    def encode(self, item_seq: torch.Tensor) -> torch.Tensor:
        return self.backbone.encode(item_seq)

    def item_table(self) -> torch.Tensor:
        """``[N+1, d]``: row 0 is padding and never a candidate."""
        return self.backbone.item_embeddings()

    def item_bias(self) -> torch.Tensor | None:
        """``[N+1]`` score bias of each item, or None when the head has none."""
        return self.backbone.item_biases()

    def head(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(hidden', table')`` with ``hidden' @ table'.T`` = the logits, bias included: the
        bias rides as one more column (a constant 1 in ``hidden'``), so every loss that takes a
        hidden/table pair (the fused CE, sampled BCE) learns it without a code path of its own."""
        table, bias = self.item_table(), self.item_bias()
        if bias is None:
            return hidden, table
        ones = torch.ones(*hidden.shape[:-1], 1, dtype=hidden.dtype, device=hidden.device)
        return torch.cat([hidden, ones], -1), torch.cat([table, bias[:, None].to(table.dtype)], -1)

    def inference_input(self, histories: torch.Tensor) -> torch.Tensor:
        """Masked models read a trailing mask token; causal models read the history as is."""
        if self.objective == "masked":
            shifted = torch.roll(histories, -1, dims=1)
            shifted[:, -1] = self.backbone.mask_token
            return shifted
        return histories

    def sequence_representation(self, histories: torch.Tensor) -> torch.Tensor:
        """``[B, d]``: the state that ranks the next item."""
        return self.encode(self.inference_input(histories))[:, -1, :]

    def score_last(self, histories: torch.Tensor) -> torch.Tensor:
        """``[B, N+1]`` scores for the item after each history (column 0 = padding)."""
        hidden, table = self.head(self.sequence_representation(histories))
        return hidden @ table.T
