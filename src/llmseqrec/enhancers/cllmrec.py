"""CLLMRec (IJCAI'25): importance-guided contrastive views as a plug-in on any backbone.

Offline (``prepare``): every user's TRAINING prefix is rendered as text and run through a
BERT-style encoder with attentions on (:meth:`AttentionEncoder.score_items`); an item's
importance is the mean over its tokens of ``mean(|h_t|) + lambda_a * mean_heads(A[t, t])``.
Histories longer than the encoder's length are scored window by window, most recent items
first, until the last ``horizon`` items of the prefix (what the trainer can see) are covered.
The scores are one float32 array aligned with ``dataset.split.train_items``, cached under
``<workdir>/<hash of options, encoder and training data>/scores.npy``, written in chunks of
users so that a killed run resumes, with a ``cost.json`` beside it.

Training: for each batch row (a window of a user's prefix), the positive view drops the
``n - floor(alpha * n)`` lowest-scored positions, the negative view the same number of the
highest-scored ones (order kept; rows shorter than ``min_length`` keep no views). The loss is
``lambda1 * L_WCL + lambda2 * L_seq`` with the weighted InfoNCE of the paper's eq. 7: anchor =
positive view, positive = the original window (or a second pass of the positive view), negatives
= the row's own negative view plus in-batch others, every negative term weighted by ``w_i``.

Ablations: ``crops=random`` (w/o LLM: the same number of positions dropped at random, no scores
needed) and ``w/o CL`` = the plain backbone (method ``none``, or ``lambda1=0``, which trains
exactly like it).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from tqdm.auto import tqdm

from llmseqrec import atomic
from llmseqrec.data.dataset import Dataset
from llmseqrec.enhancers.base import Enhancer, parse_options, register_enhancer
from llmseqrec.enhancers.views import crop_lowest, represent_by_length
from llmseqrec.errors import ConfigError
from llmseqrec.text.errors import ModelNotFoundError
from llmseqrec.training.batches import Batch, training_windows
from llmseqrec.training.losses import info_nce

SCORE_VERSION = 1


class CLLMRecOptions(BaseModel):
    """``enhancer.*`` options. Paper defaults where the paper gives one (alpha, w_i, LRURec)."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(0.75, gt=0, le=1, description="retention rate of both views")
    lambda1: float = Field(0.1, ge=0, description="weight of the weighted InfoNCE L_WCL")
    lambda2: float = Field(1.0, gt=0, description="weight of the recommendation loss L_seq")
    negative_weight: float = Field(0.5, gt=0, description="w_i on every negative term")
    temperature: float = Field(1.0, gt=0)
    similarity: Literal["dot", "cosine"] = Field(
        "cosine", description="cosine, or dot on raw states (the authors' code; collapses here)"
    )
    positive: Literal["original", "view"] = Field(
        "original", description="the anchor's positive: the original window or a 2nd view pass"
    )
    crops: Literal["importance", "random"] = Field(
        "importance", description="random = the w/o LLM ablation (same number of drops)"
    )
    min_length: int = Field(3, ge=1, description="shorter windows get no views (kept whole)")
    # -- offline scoring ------------------------------------------------------------------
    lambda_a: float = Field(1.0, ge=0, description="weight of the self-attention term")
    layer: int = Field(-1, description="encoder layer (0-based, -1 = last)")
    encoder: str | None = Field(None, description="HF encoder directory; default packaged MiniLM")
    encoder_max_length: int | None = Field(None, ge=8)
    encoder_dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="bfloat16: ~2.5x faster on CPU, near-identical scores"
    )
    fields: list[str] = Field(default_factory=lambda: ["title", "brand", "categories"])
    horizon: int | None = Field(
        None, ge=1, description="score the last N prefix items; default max_len + 1 (or all)"
    )
    chunk_users: int = Field(1000, ge=1, description="users per resumable chunk")
    max_batch_tokens: int = Field(8192, ge=64)
    device: str | None = None


def _left_pad_float(offsets: np.ndarray, values: np.ndarray, length: int, rows: np.ndarray):
    """:func:`training.batches.left_pad` for float values (NaN padding)."""
    starts, ends = offsets[rows], offsets[rows + 1]
    take = np.minimum(ends - starts, length)
    out = np.full((len(rows), length), np.nan, dtype=np.float32)
    cols = np.arange(length)
    src = ends[:, None] - length + cols[None, :]
    valid = cols[None, :] >= (length - take)[:, None]
    out[valid] = values[src[valid]]
    return out


@register_enhancer
class CLLMRec(Enhancer):
    name = "cllmrec"
    ablations = {"wo_llm": {"crops": "random"}, "wo_cl": {"lambda1": 0.0}}

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.opts: CLLMRecOptions = parse_options(CLLMRecOptions, self.options, self.name)
        self.scores: np.ndarray | None = None  # float32 aligned with split.train_items
        self.artefact_dir: Path | None = None
        self._window_scores: torch.Tensor | None = None
        self._window_items: torch.Tensor | None = None
        self._user_window: np.ndarray | None = None
        self._window_keys: dict[bytes, int] | None = None

    # ------------------------------------------------------------------ config
    @property
    def windows_mode(self) -> str:
        return getattr(getattr(self.run_config, "train", None), "windows", "last")

    def _run_max_len(self) -> int | None:
        if self.run_config is None:
            return None
        from llmseqrec.models.registry import make_config

        return int(make_config(self.run_config.model, self.run_config.backbone).max_len)

    def resolved_horizon(self) -> int | None:
        """How many of each prefix's most recent items get a score (None = all)."""
        if self.opts.horizon is not None:
            return self.opts.horizon
        max_len = self._run_max_len()
        if max_len is None or self.windows_mode == "all":
            return None
        return max_len + 1

    def artefact_key(self, dataset: Dataset, encoder_identity: str, max_length: int) -> str:
        """Hash of everything the scores depend on: options, encoder, TRAINING data, texts."""
        opts = self.opts
        split = dataset.split
        digest = hashlib.sha256()
        payload = {
            "version": SCORE_VERSION,
            "lambda_a": opts.lambda_a,
            "layer": opts.layer,
            "encoder": encoder_identity,
            "max_length": max_length,
            "dtype": opts.encoder_dtype,
            "fields": list(opts.fields),
            "horizon": self.resolved_horizon(),
        }
        digest.update(json.dumps(payload, sort_keys=True).encode())
        digest.update(np.ascontiguousarray(split.train_offsets, dtype=np.int64).tobytes())
        digest.update(np.ascontiguousarray(split.train_items, dtype=np.int64).tobytes())
        for text in dataset.render_item_texts(tuple(opts.fields)):
            digest.update(text.encode("utf-8", "replace") + b"\x00")
        return digest.hexdigest()[:16]

    # ----------------------------------------------------------------- offline
    def prepare(self, dataset: Dataset, workdir: Path) -> None:
        if self.opts.lambda1 == 0 or self.opts.crops == "random":
            return  # neither the w/o-LLM ablation nor a zero CL weight reads the scores
        self.scores, self.artefact_dir = compute_importance_scores(self, dataset, Path(workdir))

    # ---------------------------------------------------------------- training
    def bind(self, dataset: Dataset, max_len: int, seed: int) -> None:
        super().bind(dataset, max_len, seed)
        split = dataset.split
        windows, users = training_windows(
            split.train_offsets, split.train_items, max_len, self.windows_mode
        )
        self._window_items = torch.from_numpy(windows)
        user_window = np.full(dataset.n_users, -1, dtype=np.int64)
        if self.windows_mode == "last":
            user_window[users] = np.arange(len(users))
            self._window_keys = None
        else:
            # Several windows per user: a row is found by its content (user + items).
            self._window_keys = {}
            for index, (user, row) in enumerate(zip(users, windows, strict=True)):
                self._window_keys.setdefault(self._key(int(user), row), index)
        self._user_window = user_window
        if self.scores is not None:
            self._window_scores = torch.from_numpy(self._score_windows(windows, users))

    @staticmethod
    def _key(user: int, row: np.ndarray) -> bytes:
        return np.int64(user).tobytes() + np.ascontiguousarray(row, dtype=np.int64).tobytes()

    def _score_windows(self, windows: np.ndarray, users: np.ndarray) -> np.ndarray:
        """Scores laid out like the training windows (NaN on padding)."""
        split = self.dataset.split
        length = windows.shape[1]
        if self.windows_mode == "last":
            return _left_pad_float(split.train_offsets, self.scores, length, users)
        # ``all``: rebuild the windows' CSR spans exactly as ``training_windows`` does.
        out = np.full(windows.shape, np.nan, dtype=np.float32)
        cursor: dict[int, int] = {}
        for index, user in enumerate(users):
            user = int(user)
            start = int(split.train_offsets[user])
            end = cursor.get(user, int(split.train_offsets[user + 1]))
            begin = max(start, end - length)
            values = self.scores[begin:end]
            out[index, length - len(values) :] = values
            cursor[user] = end - (length - 1)
        return out

    def _rows_of(self, batch: Batch) -> torch.Tensor:
        """Index of each batch row's training window."""
        if self._window_keys is None:
            index = torch.from_numpy(self._user_window[batch.users.numpy()])
        else:
            length = self._window_items.shape[1]
            full = torch.cat([batch.inputs, batch.targets[:, -1:]], dim=1)
            full = F.pad(full, (length - full.shape[1], 0))
            found = [
                self._window_keys.get(self._key(int(u), row.numpy()), -1)
                for u, row in zip(batch.users, full, strict=True)
            ]
            index = torch.tensor(found, dtype=torch.long)
        if (index < 0).any():
            raise ConfigError(
                "cllmrec: a batch row is not one of the training windows "
                "(was the batch changed before augment_batch?)"
            )
        return index

    def window_scores(self, batch: Batch) -> torch.Tensor:
        """[B, W] importance of each input position of the batch (NaN on padding)."""
        index = self._rows_of(batch)
        width = batch.inputs.shape[1]
        length = self._window_items.shape[1]
        # Inputs are the window's columns [L+1-1-W, L+1-1): trimming only removes padding.
        items = self._window_items[index, length - 1 - width : length - 1]
        if not torch.equal(items, batch.inputs):
            raise ConfigError("cllmrec: batch inputs do not match the user's training window")
        return self._window_scores[index, length - 1 - width : length - 1]

    def make_views(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(positive view, negative view, rows with views) for the batch's input windows."""
        rows = batch.inputs
        n = (rows > 0).sum(1)
        has_views = n >= self.opts.min_length
        n_keep = torch.clamp(torch.floor(n.double() * self.opts.alpha).long(), min=1)
        n_drop = torch.where(has_views, n - n_keep, torch.zeros_like(n))
        if self.opts.crops == "random":
            positive = crop_lowest(rows, torch.rand(rows.shape, generator=self.generator), n_drop)
            negative = crop_lowest(rows, torch.rand(rows.shape, generator=self.generator), n_drop)
            return positive, negative, has_views
        if self._window_scores is None:
            raise ConfigError("cllmrec: importance scores are missing (prepare() did not run)")
        scores = self.window_scores(batch).clone()
        # Items without a score (empty text) are neutral: the mean of the row's scored items.
        real = rows > 0
        finite = torch.isfinite(scores) & real
        row_mean = torch.where(finite, scores, 0.0).sum(1) / finite.sum(1).clamp(min=1)
        scores = torch.where(finite, scores, row_mean[:, None].expand_as(scores))
        positive = crop_lowest(rows, scores, n_drop)
        negative = crop_lowest(rows, -scores, n_drop)
        return positive, negative, has_views

    def augment_batch(self, batch: Batch, step: int) -> Batch:
        if self.opts.lambda2 != 1.0:
            base = batch.weights if batch.weights is not None else torch.ones(len(batch.users))
            batch.weights = base * self.opts.lambda2
        if self.opts.lambda1 == 0:
            return batch
        positive, negative, has_views = self.make_views(batch)
        batch.views["cllmrec_positive"] = positive
        batch.views["cllmrec_negative"] = negative
        batch.views["cllmrec_has_views"] = has_views
        return batch

    def _represent(self, model: nn.Module, rows: torch.Tensor) -> torch.Tensor:
        """[B, d] next-item state of left-padded rows (masked models read a trailing mask)."""
        if getattr(model, "objective", "causal") == "masked" and rows.shape[1] < self.max_len:
            rows = F.pad(rows, (1, 0))  # room for the trailing mask token (as at inference)
        return model.sequence_representation(rows)

    def extra_loss(
        self, model: nn.Module, batch: Batch, states: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        if self.opts.lambda1 == 0 or "cllmrec_positive" not in batch.views:
            return {}
        keep = batch.views["cllmrec_has_views"]
        if int(keep.sum()) < 2:
            return {"wcl": states.sum() * 0.0}
        positive = batch.views["cllmrec_positive"][keep]
        negative = batch.views["cllmrec_negative"][keep]
        both = represent_by_length(
            lambda rows: self._represent(model, rows), torch.cat([positive, negative])
        )
        z_anchor, z_negative = both[: len(positive)], both[len(positive) :]
        if self.opts.positive == "view":
            z_positive = represent_by_length(lambda rows: self._represent(model, rows), positive)
        elif getattr(model, "objective", "causal") == "masked":
            z_positive = represent_by_length(
                lambda rows: self._represent(model, rows), batch.inputs[keep]
            )
        else:
            z_positive = states[keep][:, -1]  # the trainer's encoding of the original window
        loss = weighted_info_nce(
            z_anchor,
            z_positive,
            z_negative,
            self.opts.negative_weight,
            self.opts.temperature,
            self.opts.similarity,
        )
        return {"wcl": self.opts.lambda1 * loss}


def weighted_info_nce(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    own_negative: torch.Tensor,
    weight: float,
    temperature: float = 1.0,
    similarity: str = "dot",
) -> torch.Tensor:
    """Paper eq. 7: -log e^{s(a,p)} / (e^{s(a,p)} + w sum_{j != i} e^{s(a,p_j)} + w e^{s(a,n)})."""
    return info_nce(
        anchor.float(),
        positive.float(),
        temperature=temperature,
        similarity=similarity,
        extra_negatives=own_negative.float(),
        negative_weight=weight,
    )


# ---------------------------------------------------------------------- offline scoring
def _score_users(
    encoder: Any,
    texts: list[str],
    sequences: list[np.ndarray],
    opts: CLLMRecOptions,
) -> tuple[list[np.ndarray], int]:
    """Scores for each item sequence, window by window from the most recent item."""
    out = [np.full(len(s), np.nan, dtype=np.float32) for s in sequences]
    todo = [(i, len(s)) for i, s in enumerate(sequences) if len(s)]  # (sequence, unscored end)
    passes = 0
    while todo:
        rendered = [[texts[int(v)] for v in sequences[i][:end]] for i, end in todo]
        scores = encoder.score_items(
            rendered,
            layer=opts.layer,
            attention_weight=opts.lambda_a,
            max_batch_tokens=opts.max_batch_tokens,
        )
        passes += len(todo)
        following = []
        for (i, end), items, got in zip(todo, rendered, scores, strict=True):
            kept_from = encoder.render(items)[2] if len(items) > 1 else 0
            out[i][kept_from:end] = got[kept_from:]
            if kept_from > 0:
                following.append((i, kept_from))
        todo = following
    return out, passes


def attention_encoder_profile(opts: CLLMRecOptions) -> tuple[dict[str, Any], Any | None]:
    """The scoring encoder's identity and length limit (the artefact key's inputs), and the
    encoder itself; where it is not installed (a lent GPU machine gets the cache, not the 88 MB
    model), the profile recorded where it was and no encoder."""
    from llmseqrec.text.encoders import AttentionEncoder
    from llmseqrec.text.locate import recorded_identity

    loaded = []

    def measure() -> dict[str, Any]:
        loaded.append(
            AttentionEncoder(opts.encoder, device=opts.device, max_length=opts.encoder_max_length)
        )
        return {"identity": loaded[0].identity, "max_length": loaded[0].max_length}

    profile = recorded_identity(
        f"attention-encoder|{opts.encoder or 'packaged'}|{opts.encoder_max_length}", measure
    )
    return profile, (loaded[0] if loaded else None)


def compute_importance_scores(
    enhancer: CLLMRec, dataset: Dataset, workdir: Path, progress: bool | None = None
) -> tuple[np.ndarray, Path]:
    """The cached, resumable per-item importance over every user's training prefix."""
    opts = enhancer.opts
    profile, encoder = attention_encoder_profile(opts)
    key = enhancer.artefact_key(dataset, profile["identity"], profile["max_length"])
    directory = workdir / key
    final = directory / "scores.npy"
    split = dataset.split
    if final.exists():
        scores = np.load(final)
        if len(scores) == len(split.train_items):
            return scores, directory
    if encoder is None:
        raise ModelNotFoundError(
            f"{directory}: the importance scores are not cached and the encoder "
            f"{opts.encoder or 'all-MiniLM-L6-v2 (packaged)'} is not installed here"
        )
    if opts.encoder_dtype == "bfloat16":
        encoder.model = encoder.model.to(torch.bfloat16)
    chunks = directory / "chunks"
    chunks.mkdir(parents=True, exist_ok=True)
    atomic.write_json(
        directory / "options.json",
        {
            "method": "cllmrec",
            "dataset": dataset.name,
            "encoder": encoder.identity,
            "encoder_max_length": encoder.max_length,
            "encoder_dtype": opts.encoder_dtype,
            "lambda_a": opts.lambda_a,
            "layer": opts.layer,
            "fields": opts.fields,
            "horizon": enhancer.resolved_horizon(),
        },
    )
    texts = dataset.render_item_texts(tuple(opts.fields))
    offsets, items = split.train_offsets, split.train_items
    n_users = len(offsets) - 1
    horizon = enhancer.resolved_horizon()
    cost_path = directory / "cost.json"
    cost = json.loads(cost_path.read_text()) if cost_path.exists() else {}
    cost.setdefault("users_scored", 0)
    cost.setdefault("items_scored", 0)
    cost.setdefault("encoder_sequences", 0)
    cost.setdefault("seconds", 0.0)
    cost.setdefault("resumed_chunks", 0)
    n_chunks = (n_users + opts.chunk_users - 1) // opts.chunk_users
    bar = tqdm(
        total=n_users, desc="cllmrec importance", unit="user", disable=progress is False or None
    )
    for chunk in range(n_chunks):
        first, last = chunk * opts.chunk_users, min((chunk + 1) * opts.chunk_users, n_users)
        path = chunks / f"chunk-{chunk:05d}.npy"
        if path.exists():
            cost["resumed_chunks"] += 1
            bar.update(last - first)
            continue
        started = time.perf_counter()
        sequences, spans = [], []
        for user in range(first, last):
            start, end = int(offsets[user]), int(offsets[user + 1])
            begin = start if horizon is None else max(start, end - horizon)
            sequences.append(items[begin:end])
            spans.append((start, begin, end))
        scored, passes = _score_users(encoder, texts, sequences, opts)
        values = np.full(int(offsets[last] - offsets[first]), np.nan, dtype=np.float32)
        base = int(offsets[first])
        for (_start, begin, end), got in zip(spans, scored, strict=True):
            values[begin - base : end - base] = got
        atomic.save_npy(path, values)
        cost["users_scored"] += last - first
        cost["items_scored"] += int(sum(len(s) for s in sequences))
        cost["encoder_sequences"] += passes
        cost["seconds"] += time.perf_counter() - started
        atomic.write_json(cost_path, cost)
        bar.update(last - first)
    bar.close()
    scores = np.concatenate(
        [np.load(chunks / f"chunk-{c:05d}.npy") for c in range(n_chunks)]
    ).astype(np.float32)
    if len(scores) != len(items):
        raise ConfigError(f"{chunks}: chunks do not cover the training items; delete the folder")
    atomic.save_npy(final, scores)
    cost["items_total"] = int(len(items))
    cost["items_without_score"] = int(np.isnan(scores).sum())
    atomic.write_json(cost_path, cost)
    return scores, directory
