"""Item-text side files: delimited tables (id + named fields), JSON id -> categories, id::name."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from llmseqrec.data.readers._common import iter_lines, require_file, sniff_separator
from llmseqrec.errors import DataFormatError

# Source column names understood as canonical fields; anything else is kept as an extra field.
FIELD_SYNONYMS = {
    "title": "title",
    "name": "title",
    "movie_title": "title",
    "item_name": "title",
    "artist": "title",
    "brand": "brand",
    "categories": "categories",
    "category": "categories",
    "genres": "categories",
    "genre": "categories",
    "class": "categories",
    "description": "description",
    "text": "description",
}
# Special mapping value: "A | B | C" -> brand = A, categories = [B, C] (Amazon attribute lists).
BRAND_THEN_CATEGORIES = "brand+categories"
LIST_SEPARATORS = ("|", ";")


def _split_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    for sep in LIST_SEPARATORS:
        if sep in value:
            return [v.strip() for v in value.split(sep) if v.strip()]
    value = value.strip()
    return [value] if value else []


def text_frame(rows: dict[str, list]) -> pl.DataFrame:
    """Build an item-text frame; ``categories`` becomes list[str]."""
    columns = {}
    for name, values in rows.items():
        if name == "categories":
            columns[name] = pl.Series(name, values, dtype=pl.List(pl.Utf8))
        else:
            columns[name] = pl.Series(name, values, dtype=pl.Utf8)
    return pl.DataFrame(columns)


def read_text_table(
    path: Path,
    *,
    id_column: str | None = None,
    field_map: dict[str, str] | None = None,
    separator: str | None = None,
    encoding: str = "utf-8",
) -> pl.DataFrame:
    """A delimited table with a header: an id column and named text fields."""
    path = require_file(Path(path), "item text table")
    sep = separator or sniff_separator(path)
    header: list[str] | None = None
    rows: list[list[str]] = []
    for number, line in iter_lines(path, encoding):
        parts = line.split(sep)
        if header is None:
            header = [h.strip() for h in parts]
            if len(header) < 2:
                raise DataFormatError(
                    path,
                    "expected a header with an id column and at least one text field",
                    line=number,
                )
            continue
        if len(parts) != len(header):
            # Text may itself contain the separator: keep the leading columns, join the rest into the last.
            if len(parts) > len(header):
                parts = parts[: len(header) - 1] + [sep.join(parts[len(header) - 1 :])]
            else:
                parts = parts + [""] * (len(header) - len(parts))
        rows.append(parts)
    if header is None:
        raise DataFormatError(path, "file is empty")
    id_column = id_column or header[0]
    if id_column not in header:
        raise DataFormatError(
            path, f"required column not found (columns: {', '.join(header)})", field=id_column
        )
    id_index = header.index(id_column)
    mapping = dict(field_map or {})
    out: dict[str, list] = {"item": [r[id_index].strip() for r in rows]}
    for index, column in enumerate(header):
        if index == id_index:
            continue
        target = mapping.get(column, FIELD_SYNONYMS.get(column.lower(), column))
        values = [r[index].strip() or None for r in rows]
        if target == BRAND_THEN_CATEGORIES:
            lists = [_split_list(v) or [] for v in values]
            out["brand"] = [lst[0] if lst else None for lst in lists]
            out["categories"] = [lst[1:] for lst in lists]
        elif target == "categories":
            out["categories"] = [_split_list(v) for v in values]
        elif target in ("", "-", "ignore"):
            continue
        else:
            out[target] = values
    return text_frame(out)


def read_categories_json(path: Path, field: str = "categories") -> pl.DataFrame:
    """JSON object: item id -> list of category strings (e.g. Yelp closed_categories.json)."""
    path = require_file(Path(path), "categories file")
    try:
        with open(path, encoding="utf-8-sig") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"not valid JSON: {exc.msg}", line=exc.lineno) from exc
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            path, f"not valid utf-8 text ({exc.reason} at byte {exc.start})"
        ) from exc
    if not isinstance(data, dict):
        raise DataFormatError(path, "expected a JSON object mapping item id -> list of categories")
    ids, values = [], []
    for key, value in data.items():
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise DataFormatError(path, "expected a list of strings", field=str(key))
        ids.append(str(key))
        values.append([str(v) for v in value])
    return text_frame({"item": ids, field: values})


def read_id_title(
    path: Path, *, separator: str = "::", encoding: str = "utf-8", field: str = "title"
) -> pl.DataFrame:
    """``id<sep>title`` per line (LLaRA id2name.txt)."""
    ids, titles = [], []
    for number, line in iter_lines(Path(path), encoding):
        if separator not in line:
            raise DataFormatError(path, f"expected 'id{separator}{field}'", line=number)
        key, value = line.split(separator, 1)
        ids.append(key.strip())
        titles.append(value.strip() or None)
    return text_frame({"item": ids, field: titles})


def read_item_text_file(path: Path, field_map: dict[str, str] | None = None) -> pl.DataFrame:
    """Dispatch on the file: ``.json`` -> categories, ``id::title`` -> titles, else a table."""
    path = require_file(Path(path), "item text file")
    if path.suffix == ".json":
        return read_categories_json(path)
    for _, first in iter_lines(path):
        if "::" in first and "\t" not in first:
            return read_id_title(path)
        break
    return read_text_table(path, field_map=field_map)


def merge_text(frames: list[pl.DataFrame]) -> pl.DataFrame | None:
    """Outer-join several text frames on ``item``; the first non-null value of a field wins."""
    frames = [f for f in frames if f is not None and f.height]
    if not frames:
        return None
    merged = frames[0].unique(subset="item", keep="first")
    for frame in frames[1:]:
        frame = frame.unique(subset="item", keep="first")
        shared = [c for c in frame.columns if c in merged.columns and c != "item"]
        merged = merged.join(frame, on="item", how="full", coalesce=True, suffix="__new")
        for c in shared:
            merged = merged.with_columns(pl.coalesce(pl.col(c), pl.col(f"{c}__new")).alias(c)).drop(
                f"{c}__new"
            )
    return merged
