"""Generic CSV / TSV / Parquet with a column mapping: user, item, timestamp or order, text fields."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from llmseqrec.data.build import RawData
from llmseqrec.data.readers._common import sniff_separator
from llmseqrec.data.readers._tables import (
    integer_column,
    read_table,
    require_columns,
    timestamp_column,
)
from llmseqrec.data.readers.spec import SourceSpec
from llmseqrec.data.readers.text import (
    FIELD_SYNONYMS,
    _split_list,
    merge_text,
    read_item_text_file,
    text_frame,
)
from llmseqrec.errors import DataFormatError

TIME_COLUMNS = ("timestamp", "time", "unixReviewTime")


def resolve(spec: SourceSpec) -> dict[str, Path]:
    path = Path(spec.path)
    if not path.exists():
        raise DataFormatError(path, "path not found")
    if path.is_dir():
        raise DataFormatError(path, "the table format needs a file, not a directory")
    files = {"interactions": path}
    for i, extra in enumerate(spec.item_text):
        files[f"item_text_{i}"] = Path(extra)
    return files


def read(spec: SourceSpec) -> RawData:
    files = resolve(spec)
    path = files["interactions"]
    sep = spec.separator or (sniff_separator(path) if path.suffix != ".parquet" else ",")
    table = read_table(path, sep, "interaction table")
    mapping = {"user": "user_id", "item": "item_id", **spec.columns}
    if "timestamp" not in mapping:
        # Order by time when the table has an obvious time column; map it to "" to ignore it.
        found = [c for c in TIME_COLUMNS if c in table.columns]
        if found:
            mapping["timestamp"] = found[0]
    mapping = {k: v for k, v in mapping.items() if v}
    require_columns(table, path, [mapping["user"], mapping["item"]])
    columns = {
        "user": table[mapping["user"]].str.strip_chars(),
        "item": table[mapping["item"]].str.strip_chars(),
    }
    if "timestamp" in mapping:
        require_columns(table, path, [mapping["timestamp"]])
        columns["timestamp"] = timestamp_column(table, mapping["timestamp"], path)
    frame = pl.DataFrame(columns)
    if "order" in mapping:
        require_columns(table, path, [mapping["order"]])
        frame = frame.with_columns(integer_column(table, mapping["order"], path).alias("order"))
    else:
        frame = frame.with_row_index("order").with_columns(pl.col("order").cast(pl.Int64))
    # Text columns named in the mapping (e.g. title=movie_title) come from the same table.
    text_targets = {
        target: source
        for target, source in mapping.items()
        if target not in ("user", "item", "timestamp", "order")
    }
    texts = []
    if text_targets:
        rows: dict[str, list] = {"item": columns["item"].to_list()}
        for target, source in text_targets.items():
            require_columns(table, path, [source])
            values = table[source].to_list()
            canonical = FIELD_SYNONYMS.get(target, target)
            rows[canonical] = (
                [_split_list(v) for v in values] if canonical == "categories" else values
            )
        texts.append(text_frame(rows))
    texts += [
        read_item_text_file(p, spec.text_fields)
        for k, p in files.items()
        if k.startswith("item_text")
    ]
    if frame["user"].null_count() or frame["item"].null_count():
        bad = int((frame["user"].is_null() | frame["item"].is_null()).arg_true()[0])
        raise DataFormatError(path, "empty user or item id", line=bad + 2)
    return RawData(interactions=frame, item_text=merge_text(texts))
