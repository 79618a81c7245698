"""Delimited tables read with Polars (all columns as strings), validated with line numbers."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from llmseqrec.data.readers._common import require_file
from llmseqrec.errors import DataFormatError


def read_table(path: Path, separator: str, what: str = "table") -> pl.DataFrame:
    path = require_file(Path(path), what)
    try:
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
            return frame.with_columns(pl.all().cast(pl.Utf8))
        return pl.read_csv(
            path,
            separator=separator,
            infer_schema=False,
            quote_char='"' if separator == "," else None,
            truncate_ragged_lines=False,
        )
    except pl.exceptions.NoDataError as exc:
        raise DataFormatError(path, "file is empty") from exc
    except (pl.exceptions.ComputeError, pl.exceptions.ShapeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataFormatError(
            path, f"cannot parse as {separator!r}-separated table: {first}"
        ) from exc


def require_columns(frame: pl.DataFrame, path: Path, needed: list[str]) -> None:
    for column in needed:
        if column not in frame.columns:
            hint = ""
            if len(frame.columns) == 1:
                hint = " — wrong separator?"
            raise DataFormatError(
                path,
                f"required column not found (columns: {', '.join(frame.columns)}){hint}",
                field=column,
            )


def integer_column(
    frame: pl.DataFrame, column: str, path: Path, header_lines: int = 1
) -> pl.Series:
    """Cast a string column to Int64; the first bad value is reported with its line number."""
    raw = frame.get_column(column).str.strip_chars()
    cast = raw.cast(pl.Int64, strict=False)
    bad = cast.is_null() & raw.is_not_null() | raw.is_null()
    if bad.any():
        index = int(bad.arg_true()[0])
        raise DataFormatError(
            path,
            f"expected an integer, found {raw[index]!r}",
            line=index + 1 + header_lines,
            field=column,
        )
    return cast


def timestamp_column(
    frame: pl.DataFrame, column: str, path: Path, header_lines: int = 1
) -> pl.Series:
    """Integer timestamps as they are; date/time strings (ISO 8601) become Unix seconds."""
    raw = frame.get_column(column).str.strip_chars()
    as_int = raw.cast(pl.Int64, strict=False)
    if as_int.null_count() == 0:
        return as_int
    if as_int.is_null().all() and raw.null_count() == 0:
        try:
            parsed = raw.str.to_datetime(strict=False)
        except pl.exceptions.PolarsError:
            parsed = None
        if parsed is not None and parsed.null_count() == 0:
            return parsed.dt.epoch("s").alias(column)
        if parsed is not None:
            index = int(parsed.is_null().arg_true()[0])
            raise DataFormatError(
                path,
                f"expected a timestamp (integer or date/time), found {raw[index]!r}",
                line=index + 1 + header_lines,
                field=column,
            )
    return integer_column(frame, column, path, header_lines)
