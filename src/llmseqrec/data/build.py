"""Turn a reader's raw interactions and text into a canonical :class:`Dataset`.

Filtering (iterative k-core, minimum sequence length), chronological ordering and id
remapping happen here, once, for every format; every choice lands in the metadata.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from llmseqrec.data.dataset import CANONICAL_TEXT_FIELDS, Dataset

log = logging.getLogger(__name__)


class PrepareOptions(BaseModel):
    """How raw interactions become sequences. Every field is recorded in the metadata."""

    model_config = ConfigDict(extra="forbid")

    kcore_user: int = Field(0, ge=0, description="iterative k-core: minimum interactions per user")
    kcore_item: int = Field(0, ge=0, description="iterative k-core: minimum interactions per item")
    min_seq_len: int = Field(
        3, ge=1, description="users with fewer items are dropped (3 = leave-one-out)"
    )
    order_by_timestamp: bool = Field(
        True, description="sort each user's items by timestamp when present"
    )
    id_mapping: Literal["auto", "numeric", "first-seen"] = Field(
        "auto",
        description="item/user numbering: numeric order of integer ids (keeps 1..N files unchanged) "
        "or order of first appearance; auto = numeric when every id is an integer",
    )


@dataclass
class RawData:
    """What a reader returns: one row per interaction, in file order, plus optional item text.

    ``interactions`` has columns ``user`` (str), ``item`` (str), ``order`` (int, position in the
    source) and optionally ``timestamp`` (int). ``item_text`` has ``item`` (str raw id) and any of
    the canonical fields (``categories`` as list[str]) or extra string fields.
    """

    interactions: pl.DataFrame
    item_text: pl.DataFrame | None = None
    text_sources: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _is_all_integer(values: pl.Series) -> bool:
    return bool(values.str.contains(r"^-?\d+$").all())


def _numbering(values: pl.Series, first_seen: pl.Series, mode: str) -> pl.DataFrame:
    """Map unique raw ids to 0..n-1 in numeric or first-seen order."""
    frame = pl.DataFrame({"raw": values, "first": first_seen})
    if mode == "numeric" or (mode == "auto" and _is_all_integer(values)):
        frame = frame.with_columns(pl.col("raw").cast(pl.Int64, strict=False).alias("key"))
        if frame["key"].null_count():
            frame = frame.with_columns(pl.col("first").alias("key"))
        frame = frame.sort("key")
    else:
        frame = frame.sort("first")
    return frame.with_row_index("index").select("raw", "index")


def _filter(df: pl.DataFrame, options: PrepareOptions) -> tuple[pl.DataFrame, dict[str, int]]:
    """Iterative k-core plus minimum user length, until nothing changes."""
    min_user = max(options.kcore_user, options.min_seq_len)
    dropped = {"rounds": 0}
    before_users = df["user"].n_unique()
    before_items = df["item"].n_unique()
    before_rows = df.height
    while True:
        rows = df.height
        if options.kcore_item > 0:
            df = df.filter(pl.len().over("item") >= options.kcore_item)
        df = df.filter(pl.len().over("user") >= min_user)
        dropped["rounds"] += 1
        if df.height == rows or options.kcore_item == 0:
            break
    dropped["dropped_users"] = before_users - df["user"].n_unique()
    dropped["dropped_items"] = before_items - df["item"].n_unique()
    dropped["dropped_interactions"] = before_rows - df.height
    return df, dropped


def build_dataset(
    raw: RawData,
    *,
    name: str,
    options: PrepareOptions,
    source: dict[str, Any],
) -> Dataset:
    """Sort, filter, renumber and pack interactions into a :class:`Dataset`."""
    df = raw.interactions
    has_time = "timestamp" in df.columns and df["timestamp"].null_count() < df.height
    df, filter_counts = _filter(df, options)
    if filter_counts["dropped_users"]:
        log.warning(
            "%s: dropped %d users with fewer than %d items",
            name,
            filter_counts["dropped_users"],
            max(options.kcore_user, options.min_seq_len),
        )

    firsts_user = df.group_by("user").agg(pl.col("order").min().alias("first"))
    firsts_item = df.group_by("item").agg(pl.col("order").min().alias("first"))
    user_map = _numbering(firsts_user["user"], firsts_user["first"], options.id_mapping)
    item_map = _numbering(firsts_item["item"], firsts_item["first"], options.id_mapping)

    df = df.join(user_map.rename({"raw": "user", "index": "uid"}), on="user").join(
        item_map.rename({"raw": "item", "index": "iid"}), on="item"
    )
    sort_keys = (
        ["uid", "timestamp", "order"]
        if has_time and options.order_by_timestamp
        else ["uid", "order"]
    )
    df = df.sort(sort_keys)

    n_users = user_map.height
    counts = np.bincount(df["uid"].to_numpy(), minlength=n_users)
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    items = (df["iid"].to_numpy() + 1).astype(np.int32)
    timestamps = df["timestamp"].to_numpy().astype(np.int64) if has_time else None

    item_raw = item_map["raw"].to_numpy().astype(str)
    user_raw = user_map["raw"].to_numpy().astype(str)
    item_text, text_report = _align_text(raw.item_text, item_map)

    metadata: dict[str, Any] = {
        "name": name,
        "source": source,
        "options": options.model_dump(),
        "has_timestamps": bool(has_time),
        "ordered_by": "timestamp" if has_time and options.order_by_timestamp else "file order",
        "counts": {
            "users": n_users,
            "items": len(item_raw),
            "interactions": int(offsets[-1]),
            **filter_counts,
        },
        "text": text_report,
        "warnings": list(raw.warnings) + text_report.pop("warnings", []),
    }
    return Dataset(
        name=name,
        user_ids=user_raw,
        item_ids=item_raw,
        offsets=offsets,
        items=items,
        item_text=item_text,
        timestamps=timestamps,
        metadata=metadata,
    )


def _align_text(text: pl.DataFrame | None, item_map: pl.DataFrame) -> tuple[pl.DataFrame, dict]:
    """Join item text onto internal ids 1..N; unknown ids are counted, never fatal."""
    base = item_map.select(
        (pl.col("index") + 1).cast(pl.Int32).alias("item"), pl.col("raw").alias("raw_id")
    )
    report: dict[str, Any] = {"unmatched_text_ids": 0, "warnings": []}
    if text is None or text.height == 0:
        for f in CANONICAL_TEXT_FIELDS:
            dtype = pl.List(pl.Utf8) if f == "categories" else pl.Utf8
            base = base.with_columns(pl.lit(None, dtype=dtype).alias(f))
        return base, report
    text = text.unique(subset="item", keep="first").rename({"item": "raw_id"})
    unmatched = text.join(base, on="raw_id", how="anti").height
    report["unmatched_text_ids"] = unmatched
    if unmatched:
        msg = f"{unmatched} item text rows name items that are not in the interactions (ignored)"
        report["warnings"].append(msg)
        log.warning(msg)
    merged = base.join(text, on="raw_id", how="left").sort("item")
    for f in CANONICAL_TEXT_FIELDS:
        if f not in merged.columns:
            dtype = pl.List(pl.Utf8) if f == "categories" else pl.Utf8
            merged = merged.with_columns(pl.lit(None, dtype=dtype).alias(f))
    ordered = ["item", "raw_id", *CANONICAL_TEXT_FIELDS]
    extras = [c for c in merged.columns if c not in ordered]
    return merged.select(ordered + extras), report


def interactions_frame(
    users: list[str] | np.ndarray,
    items: list[str] | np.ndarray,
    timestamps: list[int] | np.ndarray | None = None,
) -> pl.DataFrame:
    """Build the reader contract's interaction frame from parallel columns."""
    columns: dict[str, Any] = {
        "user": pl.Series(users, dtype=pl.Utf8),
        "item": pl.Series(items, dtype=pl.Utf8),
    }
    if timestamps is not None:
        columns["timestamp"] = pl.Series(timestamps, dtype=pl.Int64)
    df = pl.DataFrame(columns)
    return df.with_row_index("order").with_columns(pl.col("order").cast(pl.Int64))


def source_paths(source: dict[str, Any]) -> list[Path]:
    """Every file path named in a source description, for fingerprinting."""
    found: list[Path] = []
    for value in source.values():
        if isinstance(value, str | Path) and Path(value).is_file():
            found.append(Path(value))
        elif isinstance(value, list):
            found.extend(Path(v) for v in value if isinstance(v, str | Path) and Path(v).is_file())
    return found
