"""RecBole atomic files: ``<name>.inter`` and optional ``<name>.item`` with typed headers
(``user_id:token  item_id:token  timestamp:float``, ``title:token_seq``, ``categories:token_seq``)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from llmseqrec.data.build import RawData
from llmseqrec.data.readers._tables import read_table, require_columns
from llmseqrec.data.readers.spec import SourceSpec
from llmseqrec.data.readers.text import FIELD_SYNONYMS, text_frame
from llmseqrec.errors import DataFormatError


def resolve(spec: SourceSpec) -> dict[str, Path]:
    path = Path(spec.path)
    if not path.exists():
        raise DataFormatError(path, "path not found")
    if path.is_dir():
        inters = sorted(path.glob("*.inter"))
        if len(inters) != 1:
            raise DataFormatError(path, f"expected one .inter file, found {len(inters)}")
        path = inters[0]
    files = {"inter": path}
    item = Path(spec.meta) if spec.meta else path.with_suffix(".item")
    if item.is_file():
        files["item"] = item
    return files


def _strip_types(frame: pl.DataFrame, path: Path, sep: str) -> tuple[pl.DataFrame, dict[str, str]]:
    if frame.width == 1:
        raise DataFormatError(
            path,
            f"expected {sep!r}-separated typed columns, found one column {frame.columns[0]!r}"
            " — wrong separator?",
            line=1,
        )
    names, types = [], {}
    for column in frame.columns:
        name, _, kind = column.partition(":")
        names.append(name)
        types[name] = kind or "token"
    return frame.rename(dict(zip(frame.columns, names, strict=True))), types


def read(spec: SourceSpec) -> RawData:
    files = resolve(spec)
    sep = spec.separator or "\t"
    path = files["inter"]
    table, types = _strip_types(read_table(path, sep, "RecBole .inter file"), path, sep)
    user_col = spec.columns.get("user", "user_id")
    item_col = spec.columns.get("item", "item_id")
    time_col = spec.columns.get("timestamp", "timestamp")
    require_columns(table, path, [user_col, item_col])
    columns = {"user": table[user_col].str.strip_chars(), "item": table[item_col].str.strip_chars()}
    if time_col in table.columns:
        raw = table[time_col].str.strip_chars()
        times = raw.cast(pl.Float64, strict=False)
        if (times.is_null() & raw.is_not_null()).any():
            index = int((times.is_null() & raw.is_not_null()).arg_true()[0])
            raise DataFormatError(
                path, f"expected a number, found {raw[index]!r}", line=index + 2, field=time_col
            )
        columns["timestamp"] = times.cast(pl.Int64)
    interactions = (
        pl.DataFrame(columns).with_row_index("order").with_columns(pl.col("order").cast(pl.Int64))
    )
    text = None
    if "item" in files:
        item_table, item_types = _strip_types(
            read_table(files["item"], sep, "RecBole .item file"), files["item"], sep
        )
        require_columns(item_table, files["item"], [item_col])
        rows: dict[str, list] = {"item": item_table[item_col].str.strip_chars().to_list()}
        for column in item_table.columns:
            if column == item_col:
                continue
            target = spec.text_fields.get(column, FIELD_SYNONYMS.get(column.lower(), column))
            values = item_table[column].to_list()
            if target == "categories":
                rows[target] = [
                    [v for v in (s or "").split() if v]
                    if item_types[column] == "token_seq"
                    else ([s] if s else [])
                    for s in values
                ]
            else:
                rows[target] = [s or None for s in values]
        text = text_frame(rows)
    return RawData(interactions=interactions, item_text=text)
