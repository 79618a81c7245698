"""Rank every user's held-out item: full ranking over all items or against sampled negatives."""

from __future__ import annotations

import numpy as np
import torch

from llmseqrec.data.dataset import Dataset
from llmseqrec.evaluation.config import EvalConfig
from llmseqrec.evaluation.metrics import rank_of_target
from llmseqrec.training.batches import left_pad


def eval_histories(dataset: Dataset, stage: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR histories and targets for ``valid`` (training prefix -> v(n-1)) or ``test``
    (training prefix + validation item -> v(n))."""
    split = dataset.split
    if stage == "valid":
        return split.train_offsets, split.train_items, split.valid_target
    if stage == "test":
        lengths = split.train_lengths + 1
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        items = np.empty(offsets[-1], dtype=np.int32)
        last = offsets[1:] - 1
        mask = np.ones(len(items), dtype=bool)
        mask[last] = False
        items[mask] = split.train_items
        items[last] = split.valid_target
        return offsets, items, split.test_target
    raise ValueError(f"stage must be 'valid' or 'test', not {stage!r}")


def sample_negatives(dataset: Dataset, config: EvalConfig, stage: str) -> np.ndarray:
    """[U, n] negatives per user, never an item of the user's whole sequence; seeded."""
    rng = np.random.default_rng([config.negative_seed, 0 if stage == "valid" else 1])
    n_items = dataset.n_items
    if config.negative_sampling == "popularity":
        counts = (
            np.bincount(dataset.split.train_items, minlength=n_items + 1)[1:].astype(np.float64)
            + 1e-9
        )
        probs = counts / counts.sum()
    else:
        probs = None
    out = np.empty((dataset.n_users, config.num_negatives), dtype=np.int64)
    for user in range(dataset.n_users):
        seen = set(dataset.sequence(user).tolist())
        if len(seen) + config.num_negatives > n_items:
            raise ValueError(
                f"user {user} has too few unseen items for {config.num_negatives} negatives"
            )
        chosen: list[int] = []
        taken = set()
        while len(chosen) < config.num_negatives:
            draw = rng.choice(n_items, size=2 * config.num_negatives, p=probs) + 1
            for item in draw.tolist():
                if item not in seen and item not in taken:
                    taken.add(item)
                    chosen.append(item)
                    if len(chosen) == config.num_negatives:
                        break
        out[user] = chosen
    return out


@torch.no_grad()
def rank_users(
    model,
    dataset: Dataset,
    config: EvalConfig,
    stage: str,
    max_len: int,
    negatives: np.ndarray | None = None,
    autocast_bf16: bool = False,
) -> np.ndarray:
    """0-based rank of each user's target; the model exposes ``score_last(histories)``."""
    offsets, items, targets = eval_histories(dataset, stage)
    n_users = len(targets)
    ranks = np.empty(n_users, dtype=np.int64)
    if config.ranking == "sampled" and negatives is None:
        negatives = sample_negatives(dataset, config, stage)
    was_training = model.training
    model.eval()
    # a model with no parameters (the most-popular baseline) ranks where its buffers are
    tensors = [*model.parameters(), *model.buffers()]
    device = tensors[0].device if tensors else torch.device("cpu")
    # Users in order of history length, each batch cut to its longest history: on short-history
    # sets (Beauty: 9 of 50 columns are real on average) most of the padded encoder work goes.
    lengths = np.minimum(np.diff(offsets), max_len)
    by_length = np.argsort(lengths, kind="stable")
    for start in range(0, n_users, config.batch_users):
        rows = by_length[start : start + config.batch_users]
        width = max(int(lengths[rows].max(initial=1)), 1)
        if getattr(model, "objective", "causal") == "masked":
            width = min(width + 1, max_len)  # room for the trailing mask token
        histories = torch.from_numpy(left_pad(offsets, items, width, rows)).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast_bf16):
            scores = model.score_last(histories).float()
        target = torch.from_numpy(targets[rows].astype(np.int64)).to(device)
        if config.ranking == "full":
            scores[:, 0] = -torch.inf
            if config.mask_history:
                full_hist = torch.from_numpy(
                    left_pad(offsets, items, int(np.diff(offsets)[rows].max(initial=1)), rows)
                ).to(device)
                target_scores = scores.gather(1, target[:, None]).clone()
                scores.scatter_(1, full_hist, -torch.inf)
                scores[:, 0] = -torch.inf
                scores.scatter_(
                    1, target[:, None], target_scores
                )  # a repeated target stays rankable
            target_scores = scores.gather(1, target[:, None])[:, 0]
            ranks[rows] = rank_of_target(scores.cpu().numpy(), target_scores.cpu().numpy())
        else:
            sampled = torch.from_numpy(negatives[rows]).to(device)
            cand_scores = scores.gather(1, torch.cat([target[:, None], sampled], dim=1)).cpu()
            ranks[rows] = rank_of_target(cand_scores.numpy(), cand_scores[:, 0].numpy())
    model.train(was_training)
    return ranks
