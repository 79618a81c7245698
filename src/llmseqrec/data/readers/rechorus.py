"""ReChorus CSV: ``train.csv`` / ``dev.csv`` / ``test.csv`` with ``user_id  item_id  time``
(dev/test may carry ``neg_items``, ignored here), plus ``<Name>.text`` keyed by ASIN via
``<Name>.item2index``."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from llmseqrec.data.build import RawData
from llmseqrec.data.readers._common import check_int, iter_lines, require_file, split_fields
from llmseqrec.data.readers._tables import integer_column, read_table, require_columns
from llmseqrec.data.readers.spec import SourceSpec
from llmseqrec.data.readers.text import merge_text, read_item_text_file, read_text_table
from llmseqrec.errors import DataFormatError

PARTS = ("train.csv", "dev.csv", "test.csv")


def resolve(spec: SourceSpec) -> dict[str, Path]:
    folder = Path(spec.path)
    if not folder.exists():
        raise DataFormatError(folder, "path not found")
    if folder.is_file():
        folder = folder.parent
    files = {}
    for part in PARTS:
        if (folder / part).is_file():
            files[part] = folder / part
    if "train.csv" not in files:
        raise DataFormatError(
            folder / "train.csv",
            "file not found (ReChorus needs train.csv, optional dev.csv/test.csv)",
        )
    texts = sorted(folder.glob("*.text"))
    index = sorted(folder.glob("*.item2index"))
    if texts and index:
        files["text"] = texts[0]
        files["item2index"] = index[0]
    for i, extra in enumerate(spec.item_text):
        files[f"item_text_{i}"] = Path(extra)
    return files


def read(spec: SourceSpec) -> RawData:
    files = resolve(spec)
    sep = spec.separator or "\t"
    frames = []
    for part in PARTS:
        if part not in files:
            continue
        path = files[part]
        table = read_table(path, sep, "ReChorus file")
        require_columns(table, path, ["user_id", "item_id", "time"])
        frames.append(
            pl.DataFrame(
                {
                    "user": integer_column(table, "user_id", path).cast(pl.Utf8),
                    "item": integer_column(table, "item_id", path).cast(pl.Utf8),
                    "timestamp": integer_column(table, "time", path),
                }
            )
        )
    # File order (train, dev, test) breaks timestamp ties: ReChorus times are day-granular.
    interactions = (
        pl.concat(frames).with_row_index("order").with_columns(pl.col("order").cast(pl.Int64))
    )
    texts = []
    if "text" in files:
        texts.append(_read_asin_text(files["text"], files["item2index"]))
    texts += [
        read_item_text_file(p, spec.text_fields)
        for k, p in files.items()
        if k.startswith("item_text")
    ]
    return RawData(interactions=interactions, item_text=merge_text(texts))


def _read_asin_text(text_path: Path, index_path: Path) -> pl.DataFrame:
    """``Office.text`` (id = ASIN, text = title + category + brand, not separable) joined to ids."""
    text = read_text_table(text_path, id_column="id", field_map={"text": "title"})
    asins, ids = [], []
    for number, line in iter_lines(require_file(index_path, "item2index file")):
        parts = split_fields(line, "\t", 2, index_path, number, "ASIN, item_id")
        asins.append(parts[0].strip())
        ids.append(check_int(parts[1], index_path, number, "item_id"))
    index = pl.DataFrame({"asin": asins, "item": ids}, schema={"asin": pl.Utf8, "item": pl.Utf8})
    joined = index.join(text.rename({"item": "asin"}), on="asin", how="left")
    return joined.select("item", *[c for c in joined.columns if c not in ("item",)])
