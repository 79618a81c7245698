"""Vectorised (Polars) parsing of line-oriented files, the fast path of every line reader.

Each function returns ``None`` when anything at all is off (undecodable bytes, a short line, a
non-integer id, a user listed twice...). The caller then runs its line-by-line parser, which
finds the first offending line and raises the precise :class:`DataFormatError`. Good files
therefore pay no Python loop per token; bad files still get line-and-field messages.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl

INTEGER_PATTERN = r"^-?[0-9]+$"


def read_lines(path: Path, encoding: str = "utf-8") -> pl.Series | None:
    """Non-blank lines (``\\r\\n`` or ``\\n`` endings, BOM dropped), or None if undecodable."""
    try:
        if str(path).endswith(".gz"):
            with gzip.open(path, "rb") as handle:
                data = handle.read()
        else:
            data = Path(path).read_bytes()
        text = data.decode("utf-8-sig" if encoding.lower() in ("utf-8", "utf8") else encoding)
    except (OSError, EOFError, UnicodeDecodeError, LookupError):
        return None
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:  # lone carriage returns also end lines for the slow path
            return None
    lines = pl.Series("line", text.split("\n"), dtype=pl.Utf8)
    return lines.filter(lines.str.strip_chars() != "")


def canonical_integers(tokens: pl.Series) -> pl.Series | None:
    """Integer ids as canonical strings (``"007"`` -> ``"7"``), or None if any is not one."""
    stripped = tokens.str.strip_chars()
    if stripped.null_count() or not stripped.str.contains(INTEGER_PATTERN).all():
        return None
    values = stripped.cast(pl.Int64, strict=False)
    if values.null_count():  # beyond int64: let the slow path handle it
        return None
    return values.cast(pl.Utf8)


def split_fields(lines: pl.Series, sep: str | None) -> pl.Series:
    """Each line as a list of fields; ``sep=None`` splits on runs of whitespace."""
    if sep is None:
        return lines.str.strip_chars().str.replace_all(r"\s+", " ").str.split(" ")
    return lines.str.split(sep)


def delimited_fields(
    path: Path, sep: str | None, expected: int, encoding: str = "utf-8"
) -> pl.DataFrame | None:
    """Columns ``f0..f{expected-1}`` (strings) of a delimited file with at least ``expected`` fields per line.

    ``sep=None`` splits on runs of whitespace.
    """
    lines = read_lines(path, encoding)
    if lines is None or lines.len() == 0:
        return None
    parts = split_fields(lines, sep)
    if parts.list.len().min() < expected:
        return None
    return pl.DataFrame({f"f{i}": parts.list.get(i) for i in range(expected)})


def numeric_columns(path: Path, sep: str | None, columns: dict[int, str]) -> pl.DataFrame | None:
    """Integer-validated, canonical string columns picked by position; None on any problem."""
    frame = delimited_fields(path, sep, max(columns) + 1)
    if frame is None:
        return None
    out = {}
    for index, name in columns.items():
        values = canonical_integers(frame[f"f{index}"])
        if values is None:
            return None
        out[name] = values
    return pl.DataFrame(out)


def sequence_rows(path: Path, numeric: bool) -> pl.DataFrame | None:
    """``user item item ...`` lines as (user, item) rows in file order; None on any problem."""
    lines = read_lines(path)
    if lines is None or lines.len() == 0:
        return None
    tokens = lines.str.strip_chars().str.replace_all(r"\s+", " ").str.split(" ")
    if tokens.list.len().min() < 2:
        return None
    frame = pl.DataFrame({"user": tokens.list.first(), "item": tokens.list.slice(1)})
    if numeric:
        users = canonical_integers(frame["user"])
        if users is None:
            return None
        frame = frame.with_columns(users.alias("user"))
    if frame["user"].is_duplicated().any():
        return None
    rows = frame.explode("item")
    if numeric:
        items = canonical_integers(rows["item"])
        if items is None:
            return None
        rows = rows.with_columns(items.alias("item"))
    return rows


def pair_rows(path: Path, sep: str | None, numeric: bool) -> pl.DataFrame | None:
    """``user item [timestamp]`` lines; a timestamp column only when the first line has one."""
    lines = read_lines(path)
    if lines is None or lines.len() == 0:
        return None
    parts = split_fields(lines, sep)
    lengths = parts.list.len()
    with_time = lengths[0] >= 3
    if lengths.min() < (3 if with_time else 2):
        return None
    out = {"user": parts.list.get(0), "item": parts.list.get(1)}
    if numeric:
        for name in ("user", "item"):
            values = canonical_integers(out[name])
            if values is None:
                return None
            out[name] = values
    else:
        out = {k: v.str.strip_chars() for k, v in out.items()}
    if with_time:
        stamps = canonical_integers(parts.list.get(2))
        if stamps is None:
            return None
        out["timestamp"] = stamps.cast(pl.Int64)
    return pl.DataFrame(out)
