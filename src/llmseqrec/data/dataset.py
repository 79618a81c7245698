"""The canonical in-memory dataset every stage reads.

Items are numbered 1..N (0 is padding), users 0..U-1. Sequences are stored CSR-style
(``offsets`` into one flat ``items`` array) so that splits and batching are array
operations, never Python loops over users.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import polars as pl

CANONICAL_TEXT_FIELDS = ("title", "brand", "categories", "description")
DEFAULT_RENDER_FIELDS = ("title", "brand", "categories", "description")


@dataclass(frozen=True)
class LeaveOneOutSplit:
    """Training prefix, validation target (second last) and test target (last) per user."""

    train_offsets: np.ndarray  # int64 [U+1]
    train_items: np.ndarray  # int32 flat training prefixes
    valid_target: np.ndarray  # int32 [U]
    test_target: np.ndarray  # int32 [U]

    @property
    def n_users(self) -> int:
        return len(self.valid_target)

    def train_sequence(self, user: int) -> np.ndarray:
        return self.train_items[self.train_offsets[user] : self.train_offsets[user + 1]]

    @cached_property
    def train_lengths(self) -> np.ndarray:
        return np.diff(self.train_offsets)

    def train_users_of(self) -> np.ndarray:
        """The user of every position of ``train_items``."""
        return np.repeat(np.arange(self.n_users, dtype=np.int64), self.train_lengths)

    def valid_history(self, user: int) -> np.ndarray:
        """What the model sees when predicting the validation target."""
        return self.train_sequence(user)

    def test_history(self, user: int) -> np.ndarray:
        """What the model sees when predicting the test target: training prefix + validation item."""
        return np.append(self.train_sequence(user), self.valid_target[user]).astype(np.int32)


@dataclass
class Dataset:
    """Per-user chronological sequences, an item text table and metadata."""

    name: str
    user_ids: np.ndarray  # raw user ids as strings, index = internal user id
    item_ids: np.ndarray  # raw item ids as strings, index i-1 = internal item i
    offsets: np.ndarray  # int64 [U+1]
    items: np.ndarray  # int32 flat, values in 1..N
    item_text: pl.DataFrame  # column "item" (1..N) + canonical and extra text fields
    timestamps: np.ndarray | None = None  # int64 aligned with items, when the source has them
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return int(self.offsets[-1])

    @cached_property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, user: int) -> np.ndarray:
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def user_index(self, raw_user: str | int) -> int:
        """Internal id of a raw user id (as written in the source file)."""
        lookup = self._user_lookup
        key = str(raw_user)
        if key not in lookup:
            raise KeyError(f"user {raw_user!r} is not in dataset {self.name!r}")
        return lookup[key]

    @cached_property
    def _user_lookup(self) -> dict[str, int]:
        return {str(u): i for i, u in enumerate(self.user_ids.tolist())}

    @cached_property
    def split(self) -> LeaveOneOutSplit:
        """Leave-one-out: every user has >= 3 items, guaranteed by the build step."""
        lengths = self.lengths
        if len(lengths) and lengths.min() < 3:
            raise ValueError(
                f"dataset {self.name!r}: leave-one-out needs >= 3 items per user "
                f"(found a user with {int(lengths.min())}); prepare with min_seq_len >= 3"
            )
        ends = self.offsets[1:]
        test_target = self.items[ends - 1]
        valid_target = self.items[ends - 2]
        train_lengths = lengths - 2
        train_offsets = np.zeros_like(self.offsets)
        np.cumsum(train_lengths, out=train_offsets[1:])
        position = np.arange(self.n_interactions) - np.repeat(self.offsets[:-1], lengths)
        keep = position < np.repeat(train_lengths, lengths)
        return LeaveOneOutSplit(
            train_offsets=train_offsets,
            train_items=self.items[keep],
            valid_target=valid_target.astype(np.int32),
            test_target=test_target.astype(np.int32),
        )

    def item_titles(self) -> list[str]:
        """A short human label per item (index 0 = padding), for printing histories."""
        labels = ["<pad>"]
        titles = (
            self.item_text.get_column("title").to_list()
            if "title" in self.item_text.columns
            else []
        )
        for i, raw in enumerate(self.item_ids.tolist()):
            title = titles[i] if i < len(titles) else None
            labels.append(title if title else f"item {raw}")
        return labels

    def render_item_texts(
        self, fields: tuple[str, ...] | list[str] = DEFAULT_RENDER_FIELDS, sep: str = " | "
    ) -> list[str]:
        """One string per item (index 0 = padding, empty) from the fields that exist."""
        present = [f for f in fields if f in self.item_text.columns]
        columns = {f: self.item_text.get_column(f).to_list() for f in present}
        rendered = [""]
        for i in range(self.n_items):
            parts = []
            for f in present:
                value = columns[f][i]
                if value is None:
                    continue
                if isinstance(value, list):
                    value = ", ".join(str(v) for v in value if v)
                value = str(value).strip()
                if value:
                    parts.append(value)
            rendered.append(sep.join(parts))
        return rendered

    def text_coverage(self) -> dict[str, float]:
        """Share of items with a non-empty value, per text field."""
        coverage: dict[str, float] = {}
        n = max(self.n_items, 1)
        for name in self.item_text.columns:
            if name in ("item", "raw_id"):
                continue
            col = self.item_text.get_column(name)
            if col.dtype == pl.List:
                filled = int((col.list.len().fill_null(0) > 0).sum())
            else:
                filled = int(
                    (col.cast(pl.Utf8).fill_null("").str.strip_chars().str.len_chars() > 0).sum()
                )
            coverage[name] = filled / n
        return coverage

    def stats(self) -> dict[str, Any]:
        lengths = self.lengths
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "mean_length": float(lengths.mean()) if len(lengths) else 0.0,
            "median_length": float(np.median(lengths)) if len(lengths) else 0.0,
            "density": self.n_interactions / max(self.n_users * self.n_items, 1),
            "text_coverage": self.text_coverage(),
        }
