"""Non-learned reference points: most-popular (by training frequency)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from llmseqrec.data.dataset import Dataset


class MostPopular(nn.Module):
    """Scores every item by its training-prefix frequency, whatever the history."""

    objective = "causal"

    def __init__(self, dataset: Dataset) -> None:
        super().__init__()
        counts = np.bincount(dataset.split.train_items, minlength=dataset.n_items + 1).astype(
            np.float32
        )
        # A tiny id-based jitter breaks exact ties deterministically (pessimistic ties would
        # otherwise push equally popular targets to the end).
        counts += np.linspace(0, 1e-3, len(counts), dtype=np.float32)
        self.register_buffer("counts", torch.from_numpy(counts))

    def score_last(self, histories: torch.Tensor) -> torch.Tensor:
        return self.counts.expand(len(histories), -1).clone()
