"""Sequence views shared by the contrastive methods (CLLMRec, CL4SRec, SRA-CL, ...).

Every function takes left-padded item rows [B, L] (0 = padding, real items right-aligned, as the
backbones expect) and returns rows of the same shape, still left-padded, with the original order of
the kept items. Randomness comes only from the ``generator`` passed in (the enhancer's own), never
the global torch RNG.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def keep_positions(rows: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Drop the positions where ``keep`` is False and left-pad the rest again, order kept."""
    keep = keep & (rows > 0)
    # Stable sort puts dropped positions first and kept ones last, each group in original order.
    order = torch.sort(keep.to(torch.int8), dim=1, stable=True).indices
    compacted = torch.gather(rows, 1, order)
    kept_sorted = torch.gather(keep, 1, order)
    return torch.where(kept_sorted, compacted, torch.zeros_like(compacted))


def lengths(rows: torch.Tensor) -> torch.Tensor:
    return (rows > 0).sum(1)


def crop_lowest(rows: torch.Tensor, scores: torch.Tensor, n_drop: torch.Tensor) -> torch.Tensor:
    """Remove each row's ``n_drop`` lowest-scored real positions (ties: the earlier one goes)."""
    length = rows.shape[1]
    # Padding gets +inf so it is never chosen; earlier positions break ties first.
    tie = torch.arange(length, dtype=torch.float64) * 1e-9
    keyed = torch.where(rows > 0, scores.double() + tie, torch.inf)
    rank = keyed.argsort(1).argsort(1)
    return keep_positions(rows, rank >= n_drop[:, None])


def random_crop(rows: torch.Tensor, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """A contiguous sub-sequence of ceil(ratio * n) items (at least one) of each row."""
    n = lengths(rows)
    size = torch.clamp(torch.ceil(n.double() * ratio).long(), min=1)
    size = torch.minimum(size, n)
    start_max = (n - size).clamp(min=0)
    start = (torch.rand(len(rows), generator=generator) * (start_max + 1).double()).long()
    length = rows.shape[1]
    # Position p (0-based within the real items) of row r is real index p - (L - n).
    real_index = torch.arange(length)[None, :] - (length - n)[:, None]
    keep = (real_index >= start[:, None]) & (real_index < (start + size)[:, None])
    return keep_positions(rows, keep)


def random_mask(
    rows: torch.Tensor, ratio: float, mask_token: int, generator: torch.Generator
) -> torch.Tensor:
    """Replace a ``ratio`` share of each row's items by ``mask_token`` (CL4SRec's item mask)."""
    chosen = (torch.rand(rows.shape, generator=generator) < ratio) & (rows > 0)
    return torch.where(chosen, torch.full_like(rows, mask_token), rows)


def random_reorder(rows: torch.Tensor, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Shuffle a random contiguous span of ceil(ratio * n) items in each row."""
    out = rows.clone()
    n = lengths(rows).numpy()
    length = rows.shape[1]
    seeds = torch.randint(0, 2**31 - 1, (len(rows),), generator=generator).numpy()
    for r in range(len(rows)):  # spans differ per row; B is small and the work is O(L)
        size = int(np.ceil(n[r] * ratio))
        if size < 2:
            continue
        rng = np.random.default_rng(int(seeds[r]))
        start = length - n[r] + int(rng.integers(0, n[r] - size + 1))
        span = out[r, start : start + size]
        out[r, start : start + size] = span[torch.from_numpy(rng.permutation(size))]
    return out


def substitute(
    rows: torch.Tensor,
    ratio: float,
    neighbours: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Replace a ``ratio`` share of items by a random one of their neighbours.

    ``neighbours``: [n_items + 1, k] item ids (row 0 unused); a neighbour id of 0 is never used.
    """
    chosen = (torch.rand(rows.shape, generator=generator) < ratio) & (rows > 0)
    k = neighbours.shape[1]
    pick = torch.randint(0, k, rows.shape, generator=generator)
    replacement = neighbours[rows, pick]
    chosen &= replacement > 0
    return torch.where(chosen, replacement, rows)


def represent_by_length(
    represent: Callable[[torch.Tensor], torch.Tensor], rows: torch.Tensor, groups: int = 4
) -> torch.Tensor:
    """``represent(rows)`` ([B, L] -> [B, d]) computed on groups of rows of similar length, each
    trimmed to its longest row, then put back in the input order.

    A contrastive view only needs the last state, and short rows padded to the batch's longest
    one waste most of an extra encoder pass on sparse data (Beauty: median length 6 of 50).
    Backbones read left-padded rows with positions counted from the end, so trimming padding
    does not change a row's representation.
    """
    lengths = (rows > 0).sum(1)
    order = torch.argsort(lengths, stable=True)
    parts = []
    for index in torch.tensor_split(order, min(groups, len(order))):
        width = max(int(lengths[index].max()), 1)
        parts.append(represent(rows[index, rows.shape[1] - width :]))
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order), device=order.device)
    return torch.cat(parts)[inverse]
