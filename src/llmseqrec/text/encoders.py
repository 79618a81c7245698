"""Text encoders: sentence embeddings (cached on disk) and an attention-exposing encoder.

``SentenceEncoder`` wraps sentence-transformers over the packaged all-MiniLM-L6-v2 by default
(or any local model directory) and returns L2-normalised float32 rows. Every embedding is
cached in SQLite keyed by (model identity, sha256 of the text), so re-encoding a catalogue
costs a lookup.

``AttentionEncoder`` runs a BERT-style encoder with eager attention (the default SDPA kernel
returns no attention weights) over a rendered item sequence and maps every token back to the
item it came from, via the tokenizer's character offsets. CLLMRec's importance scores are
computed from it in ``score_items``.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmseqrec import paths
from llmseqrec.text.cache import ResponseCache
from llmseqrec.text.errors import ModelNotFoundError
from llmseqrec.text.locate import (
    model_fingerprint,
    offline_hub,
    packaged_minilm,
    recorded_identity,
    require_path,
)
from llmseqrec.text.prompts import clean_item_text

log = logging.getLogger(__name__)
_MAX_PARAMS = 500


def _auto_device(device: str | None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolve_model_dir(model: str | Path | None) -> Path:
    if model is None:
        return packaged_minilm()
    path = require_path(model, "encoder model directory")
    if not path.is_dir():
        raise ModelNotFoundError(
            f"an encoder model is a directory (config.json + weights), got {path}"
        )
    return path


class EmbeddingCache:
    """Vectors keyed by (model identity, text hash) in one SQLite file (WAL, multi-writer)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = (
            Path(path) if path is not None else paths.cache_root() / "text" / "embeddings.sqlite"
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, timeout=60.0, check_same_thread=False, isolation_level=None
        )
        self._conn.execute("PRAGMA busy_timeout = 60000")
        ResponseCache._retry_locked(lambda: self._conn.execute("PRAGMA journal_mode = WAL"))
        ResponseCache._retry_locked(
            lambda: self._conn.execute(
                "CREATE TABLE IF NOT EXISTS vectors (model TEXT NOT NULL, text_hash TEXT NOT NULL, "
                "vector BLOB NOT NULL, PRIMARY KEY (model, text_hash))"
            )
        )

    @staticmethod
    def text_hash(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get_many(self, model: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(hashes), _MAX_PARAMS):
                chunk = list(hashes[start : start + _MAX_PARAMS])
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT text_hash, vector FROM vectors WHERE model = ? AND text_hash IN ({marks})",
                    [model, *chunk],
                ).fetchall()
                for text_hash, blob in rows:
                    found[text_hash] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put_many(self, model: str, hashes: Sequence[str], vectors: np.ndarray) -> None:
        rows = [
            (model, h, np.ascontiguousarray(v, dtype=np.float32).tobytes())
            for h, v in zip(hashes, vectors, strict=True)
        ]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("INSERT OR IGNORE INTO vectors VALUES (?,?,?)", rows)
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class SentenceEncoder:
    """``encode(texts) -> float32 [n, d]``, unit-norm rows, cached per model and text."""

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        batch_size: int = 64,
        device: str | None = None,
        max_length: int | None = None,
        cache: bool = True,
        cache_path: str | Path | None = None,
    ) -> None:
        self.model_arg = model
        self.model_dir: Path | None = None
        self.batch_size = batch_size
        self.device = device
        self.max_length = max_length
        # Where the model is not installed (a lent GPU machine gets the cache, not the 88 MB
        # encoder), the identity recorded where it was: cached texts are served, new ones fail.
        self.identity = recorded_identity(
            f"sentence-encoder|{model or 'packaged'}", self._measure_identity
        )["identity"] + (f"@{max_length}" if max_length else "")
        self.cache = EmbeddingCache(cache_path) if cache else None
        self._model: Any = None
        self._lock = threading.Lock()
        self.encoded = 0  # texts run through the model (not served from the cache)

    def _measure_identity(self) -> dict[str, str]:
        self.model_dir = _resolve_model_dir(self.model_arg)
        return {"identity": f"{self.model_dir.name}#{model_fingerprint(self.model_dir)}"}

    @property
    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                if self.model_dir is None:  # identity came from the record: say what is missing
                    self.model_dir = _resolve_model_dir(self.model_arg)
                offline_hub()
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(
                    str(self.model_dir), device=_auto_device(self.device)
                )
                if self.max_length:
                    self._model.max_seq_length = self.max_length
            return self._model

    @property
    def dim(self) -> int:
        getter = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        return int(getter())

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        hashes = [EmbeddingCache.text_hash(t) for t in texts]
        known = (
            self.cache.get_many(self.identity, list(dict.fromkeys(hashes))) if self.cache else {}
        )
        todo = list(dict.fromkeys(h for h in hashes if h not in known))
        if todo:
            text_of = dict(zip(hashes, texts, strict=True))
            vectors = self.model.encode(
                [text_of[h] for h in todo],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=progress,
            ).astype(np.float32, copy=False)
            self.encoded += len(todo)
            if self.cache is not None:
                self.cache.put_many(self.identity, todo, vectors)
            known.update(zip(todo, vectors, strict=True))
        out = np.stack([known[h] for h in hashes]).astype(np.float32, copy=False)
        # Cached rows were normalised when stored; renormalising costs little and guards
        # against a model whose own normalisation was off.
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)


@dataclass
class ItemSequenceEncoding:
    """One rendered sequence through the encoder, with every token mapped back to its item.

    ``item_spans[i]`` is the token range ``[start, end)`` of ``items[kept_from + i]``;
    separator and special tokens belong to no item. Older items that did not fit the
    encoder's length were dropped (``kept_from`` of them).
    """

    text: str
    tokens: list[str]
    input_ids: np.ndarray  # int64 [T]
    hidden_states: np.ndarray  # float32 [layers + 1, T, d] (index 0 = embeddings)
    attentions: np.ndarray  # float32 [layers, heads, T, T]
    item_spans: list[tuple[int, int]]
    char_spans: list[tuple[int, int]]
    kept_from: int
    token_item: np.ndarray  # int64 [T]: index into the kept items, -1 for none


class AttentionEncoder:
    """A BERT-style encoder returning hidden states and per-layer attentions."""

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str | None = None,
        max_length: int | None = None,
        separator: str = " ; ",
    ) -> None:
        offline_hub()
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.model_dir = _resolve_model_dir(model)
        self.device = _auto_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
        if not getattr(self.tokenizer, "is_fast", False):
            raise ModelNotFoundError(
                f"{self.model_dir}: token-to-item mapping needs a fast tokenizer (tokenizer.json)"
            )
        # Eager attention: the SDPA kernel computes attention without returning the weights.
        self.model = (
            AutoModel.from_pretrained(str(self.model_dir), attn_implementation="eager")
            .to(self.device)
            .eval()
        )
        self._torch = torch
        limit = int(getattr(self.model.config, "max_position_embeddings", 512))
        tokenizer_limit = int(getattr(self.tokenizer, "model_max_length", limit) or limit)
        self.max_length = min(max_length or limit, limit, tokenizer_limit)
        self.separator = separator
        self.identity = f"{self.model_dir.name}#{model_fingerprint(self.model_dir)}"
        self.n_layers = int(self.model.config.num_hidden_layers)

    # -- rendering ---------------------------------------------------------------------
    def _window(self, items: Sequence[str]) -> int:
        """Index of the oldest item kept so the rendered text fits ``max_length`` tokens."""
        if not items:
            return 0
        lengths = [
            len(ids) for ids in self.tokenizer(list(items), add_special_tokens=False)["input_ids"]
        ]
        sep_len = len(self.tokenizer(self.separator, add_special_tokens=False)["input_ids"])
        budget = self.max_length - self.tokenizer.num_special_tokens_to_add()
        used, start = 0, len(items)
        for i in range(len(items) - 1, -1, -1):
            cost = lengths[i] + (sep_len if i < len(items) - 1 else 0)
            if used + cost > budget and start < len(items):
                break
            used += cost
            start = i
        return start

    def render(self, items: Sequence[str]) -> tuple[str, list[tuple[int, int]], int]:
        """Rendered text, each kept item's character span, and how many old items were dropped."""
        cleaned = [clean_item_text(t) for t in items]
        start = self._window(cleaned)
        parts, spans, cursor = [], [], 0
        for i, text in enumerate(cleaned[start:]):
            if i:
                parts.append(self.separator)
                cursor += len(self.separator)
            spans.append((cursor, cursor + len(text)))
            parts.append(text)
            cursor += len(text)
        return "".join(parts), spans, start

    def _tokenize(self, texts: list[str]) -> Any:
        return self.tokenizer(
            texts,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        )

    @staticmethod
    def _token_items(
        offsets: np.ndarray, special: np.ndarray, char_spans: list[tuple[int, int]]
    ) -> np.ndarray:
        owner = np.full(len(offsets), -1, dtype=np.int64)
        if not char_spans:
            return owner
        starts = np.array([s for s, _ in char_spans])
        ends = np.array([e for _, e in char_spans])
        for t, (begin, end) in enumerate(offsets):
            if special[t] or end <= begin:
                continue
            i = int(np.searchsorted(starts, begin, side="right")) - 1
            if i >= 0 and begin >= starts[i] and end <= ends[i]:
                owner[t] = i
        return owner

    @staticmethod
    def _spans(owner: np.ndarray, n_items: int) -> list[tuple[int, int]]:
        spans = []
        for i in range(n_items):
            where = np.flatnonzero(owner == i)
            spans.append((int(where[0]), int(where[-1]) + 1) if len(where) else (0, 0))
        return spans

    # -- full outputs for one sequence -------------------------------------------------
    def encode(self, items: Sequence[str]) -> ItemSequenceEncoding:
        text, char_spans, kept_from = self.render(items)
        batch = self._tokenize([text])
        offsets = batch.pop("offset_mapping")[0].numpy()
        special = batch.pop("special_tokens_mask")[0].numpy()
        with self._torch.inference_mode():
            output = self.model(
                **batch.to(self.device), output_hidden_states=True, output_attentions=True
            )
        owner = self._token_items(offsets, special, char_spans)
        ids = batch["input_ids"][0].cpu().numpy()
        return ItemSequenceEncoding(
            text=text,
            tokens=self.tokenizer.convert_ids_to_tokens(ids.tolist()),
            input_ids=ids,
            hidden_states=self._torch.stack(output.hidden_states)[:, 0].float().cpu().numpy(),
            attentions=self._torch.stack(output.attentions)[:, 0].float().cpu().numpy(),
            item_spans=self._spans(owner, len(char_spans)),
            char_spans=char_spans,
            kept_from=kept_from,
            token_item=owner,
        )

    # -- CLLMRec importance scores, batched --------------------------------------------
    def score_items(
        self,
        sequences: Sequence[Sequence[str]],
        *,
        layer: int = -1,
        attention_weight: float = 1.0,
        max_batch_tokens: int = 4096,
        progress: bool = False,
    ) -> list[np.ndarray]:
        """Per-item importance, one array per sequence (NaN for items windowed away or empty).

        Token score ``mean(|h_t|) + attention_weight * mean_over_heads(A[t, t])`` at
        ``layer`` (0-based over transformer layers, -1 = last); an item's score is the mean
        over its tokens.
        """
        if not -self.n_layers <= layer < self.n_layers:
            raise ValueError(f"layer {layer} out of range for a {self.n_layers}-layer encoder")
        layer %= self.n_layers
        rendered = [self.render(items) for items in sequences]
        lengths = [
            len(self.tokenizer(text, truncation=True, max_length=self.max_length)["input_ids"])
            for text, _, _ in rendered
        ]
        order = sorted(range(len(sequences)), key=lambda i: lengths[i])
        results: list[np.ndarray] = [np.empty(0)] * len(sequences)
        batches, current = [], []
        for index in order:
            # Attention maps grow with T^2 per row: cap padded tokens per batch.
            if current and (len(current) + 1) * lengths[index] > max_batch_tokens:
                batches.append(current)
                current = []
            current.append(index)
        if current:
            batches.append(current)
        iterator = batches
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(batches, desc="attention scores", unit="batch")
        torch = self._torch
        for members in iterator:
            batch = self._tokenize([rendered[i][0] for i in members])
            offsets = batch.pop("offset_mapping").numpy()
            special = batch.pop("special_tokens_mask").numpy()
            with torch.inference_mode():
                output = self.model(
                    **batch.to(self.device), output_hidden_states=True, output_attentions=True
                )
            hidden = output.hidden_states[layer + 1]  # [B, T, d]
            self_attention = torch.diagonal(output.attentions[layer], dim1=-2, dim2=-1).mean(
                dim=1
            )  # [B, T]
            token_scores = (
                (hidden.abs().mean(dim=-1) + attention_weight * self_attention)
                .float()
                .cpu()
                .numpy()
            )
            mask = batch["attention_mask"].cpu().numpy().astype(bool)
            for row, index in enumerate(members):
                items = sequences[index]
                _, char_spans, kept_from = rendered[index]
                owner = self._token_items(offsets[row], special[row] | ~mask[row], char_spans)
                scores = np.full(len(items), np.nan, dtype=np.float32)
                valid = owner >= 0
                if valid.any():
                    sums = np.bincount(
                        owner[valid], weights=token_scores[row][valid], minlength=len(char_spans)
                    )
                    counts = np.bincount(owner[valid], minlength=len(char_spans))
                    with np.errstate(invalid="ignore", divide="ignore"):
                        scores[kept_from:] = (sums / counts).astype(np.float32)
                results[index] = scores
        return results
