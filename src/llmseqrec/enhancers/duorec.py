"""DuoRec (Qiu et al., WSDM 2022): contrastive regularisation with model-level augmentation.

* unsupervised view: a second forward pass of the same sequence in train mode (a new dropout
  mask);
* supervised positive: another training sequence whose next (target) item is the same, drawn
  from the training windows (the sequence itself when no other one has that target).

``mode``: ``us_x`` (paper default: dropout view vs same-target view), ``us`` (dropout view vs
the recommendation pass), ``su`` (recommendation pass vs same-target view). Symmetric InfoNCE
over the 2N views; in-batch negatives that share the target are masked (false negatives).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from llmseqrec.data.dataset import Dataset
from llmseqrec.enhancers.base import Enhancer, parse_options, register_enhancer
from llmseqrec.enhancers.sracl import last_state
from llmseqrec.training.batches import Batch, training_windows
from llmseqrec.training.losses import symmetric_info_nce


class DuorecOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lam: float = Field(0.1, ge=0, description="weight of the contrastive loss")
    temperature: float = Field(1.0, gt=0)
    similarity: Literal["dot", "cosine"] = Field(
        "cosine", description="cosine, or dot on raw states (the authors' code; collapses here)"
    )
    mode: Literal["us_x", "us", "su"] = "us_x"
    mask_same_target: bool = Field(True, description="drop same-target in-batch negatives")


@register_enhancer
class DuoRec(Enhancer):
    name = "duorec"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.opts: DuorecOptions = parse_options(DuorecOptions, self.options, "duorec")  # type: ignore[assignment]
        self._inputs: np.ndarray | None = None
        self._order: np.ndarray | None = None
        self._bounds: np.ndarray | None = None
        self._window_users: np.ndarray | None = None

    def bind(self, dataset: Dataset, max_len: int, seed: int) -> None:
        super().bind(dataset, max_len, seed)
        split = dataset.split
        mode = "last"
        if self.run_config is not None:
            mode = self.run_config.train.windows
        windows, users = training_windows(
            split.train_offsets, split.train_items.astype(np.int64), max_len, mode
        )
        last_target = windows[:, -1]
        self._inputs = windows[:, :-1]
        self._window_users = users
        self._order = np.argsort(last_target, kind="stable")
        self._bounds = np.searchsorted(last_target[self._order], np.arange(dataset.n_items + 2))

    def same_target_rows(self, targets: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """For each row, the input of a random other training window with the same target."""
        assert self._order is not None and self._bounds is not None and self._inputs is not None
        t = targets.numpy()
        lo, hi = self._bounds[t], self._bounds[t + 1]
        size = hi - lo
        pick = lo + np.floor(self.rng.random(len(t)) * np.maximum(size, 1)).astype(np.int64)
        pick = np.minimum(pick, np.maximum(hi - 1, lo))
        chosen = self._order[np.minimum(pick, len(self._order) - 1)]
        # Drawn oneself while others exist: take the next window of the group (cyclic).
        own = (self._window_users[chosen] == users.numpy()) & (size > 1)
        nxt = lo + (pick - lo + 1) % np.maximum(size, 1)
        chosen = np.where(own, self._order[np.minimum(nxt, len(self._order) - 1)], chosen)
        none = size == 0  # target never ends a training window (cannot happen for "last")
        rows = torch.from_numpy(self._inputs[chosen])
        return rows, torch.from_numpy(none)

    def extra_loss(
        self, model: nn.Module, batch: Batch, states: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        opts = self.opts
        if opts.lam <= 0:
            return {}
        targets = batch.targets[:, -1]
        anchor = states[:, -1, :]
        views: list[torch.Tensor] = []
        if opts.mode in ("us", "us_x"):
            views.append(last_state(model, batch.inputs))  # second pass: a new dropout mask
        if opts.mode in ("us_x", "su"):
            rows, none = self.same_target_rows(targets.cpu(), batch.users.cpu())
            rows, none = rows.to(states.device), none.to(states.device)
            keep = (rows != 0).any(0)
            first = int(keep.nonzero()[0]) if keep.any() else rows.shape[1] - 1
            rows = rows[:, first:]
            sup = last_state(model, rows)
            if none.any():  # no same-target window: the dropout view of itself
                sup = torch.where(none[:, None], last_state(model, batch.inputs), sup)
            views.append(sup)
        if opts.mode == "us_x":
            a, b = views
        else:
            a, b = anchor, views[0]
        mask = targets if opts.mask_same_target else None
        return {"cl": opts.lam * symmetric_info_nce(a, b, opts.temperature, opts.similarity, mask)}
