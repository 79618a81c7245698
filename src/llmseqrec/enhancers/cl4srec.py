"""CL4SRec (Xie et al., ICDE 2022): two random views per sequence (crop / mask / reorder, one
operator drawn per view and sequence), symmetric InfoNCE over the 2N views, weight ``lam``.

Causal backbones have no mask row in their item table; ``wrap`` adds one (row ``n_items + 1``,
outside the scoring matrix) so the mask view has its own learnable token, as in the paper.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from llmseqrec.enhancers.base import Enhancer, parse_options, register_enhancer
from llmseqrec.enhancers.sracl import last_state
from llmseqrec.enhancers.views import random_crop, random_mask, random_reorder
from llmseqrec.training.batches import Batch
from llmseqrec.training.losses import symmetric_info_nce

Operator = Literal["crop", "mask", "reorder"]


class Cl4srecOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lam: float = Field(0.1, ge=0, description="weight of the contrastive loss")
    temperature: float = Field(1.0, gt=0)
    similarity: Literal["dot", "cosine"] = Field(
        "cosine", description="cosine, or dot on raw states (the authors' code; collapses here)"
    )
    crop_ratio: float = Field(0.6, gt=0, le=1, description="eta: share of items kept by crop")
    mask_ratio: float = Field(0.3, ge=0, le=1, description="gamma: share of items masked")
    reorder_ratio: float = Field(0.6, ge=0, le=1, description="beta: share of items shuffled")
    operators: list[Operator] = Field(
        default_factory=lambda: ["crop", "mask", "reorder"], min_length=1
    )


def ensure_mask_row(recommender: nn.Module, generator: torch.Generator) -> int:
    """Give a causal backbone a learnable mask row ``n_items + 1``; returns the mask token.

    The new table keeps every existing row (bit for bit); the scoring matrix stays ``[:N+1]``.
    No global RNG is drawn: the mask row comes from ``generator``.
    """
    backbone = recommender.backbone
    token = backbone.n_items + 1
    table = backbone.item_embedding
    if table.num_embeddings > token:
        return token
    old = table.weight.data
    std = float(old[1:].std()) if old.shape[0] > 1 else 0.02
    mask_row = torch.randn(1, old.shape[1], generator=generator) * std
    weight = torch.cat([old, mask_row.to(old.dtype)])
    backbone.item_embedding = nn.Embedding.from_pretrained(weight, freeze=False, padding_idx=0)
    return token


def augment(
    rows: torch.Tensor,
    operators: list[str],
    opts: Cl4srecOptions,
    mask_token: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """One view: each row gets one operator drawn uniformly from ``operators``."""
    made = []
    for op in operators:
        if op == "crop":
            made.append(random_crop(rows, opts.crop_ratio, generator))
        elif op == "mask":
            made.append(random_mask(rows, opts.mask_ratio, mask_token, generator))
        else:
            made.append(random_reorder(rows, opts.reorder_ratio, generator))
    if len(made) == 1:
        return made[0]
    pick = torch.randint(0, len(made), (len(rows),), generator=generator)
    stacked = torch.stack(made)  # [ops, B, L]
    return stacked[pick, torch.arange(len(rows))]


@register_enhancer
class CL4SRec(Enhancer):
    name = "cl4srec"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.opts: Cl4srecOptions = parse_options(Cl4srecOptions, self.options, "cl4srec")  # type: ignore[assignment]
        self.mask_token: int | None = None

    def wrap(self, recommender: nn.Module) -> nn.Module:
        if self.opts.lam > 0 and "mask" in self.opts.operators:
            self.mask_token = ensure_mask_row(recommender, torch.Generator().manual_seed(4321))
        return recommender

    def views(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        token = self.mask_token if self.mask_token is not None else 0
        return (
            augment(rows, self.opts.operators, self.opts, token, self.generator),
            augment(rows, self.opts.operators, self.opts, token, self.generator),
        )

    def extra_loss(
        self, model: nn.Module, batch: Batch, states: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        if self.opts.lam <= 0:
            return {}
        view_a, view_b = self.views(batch.inputs)
        both = last_state(model, torch.cat([view_a, view_b]))
        n = len(view_a)
        loss = symmetric_info_nce(both[:n], both[n:], self.opts.temperature, self.opts.similarity)
        return {"cl": self.opts.lam * loss}
