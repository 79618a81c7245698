"""Sequence files ``user item item ...`` (SASRec / CL4SRec / ICLRec: Beauty.txt, Yelp.txt), and
sequence tables (a user column and a column of space-separated items, e.g. LLaRA LastFM)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from llmseqrec.data.build import RawData, interactions_frame
from llmseqrec.data.readers._common import (
    check_int,
    iter_lines,
    require_file,
    resolve_single_txt,
    sniff_separator,
)
from llmseqrec.data.readers._fast import sequence_rows
from llmseqrec.data.readers.spec import SourceSpec
from llmseqrec.data.readers.text import merge_text, read_item_text_file
from llmseqrec.errors import DataFormatError


def parse_sequence_file(path: Path, numeric: bool = True) -> pl.DataFrame:
    require_file(path, "sequence file")
    fast = sequence_rows(path, numeric)
    if fast is not None:
        return interactions_frame(fast["user"], fast["item"])
    return _parse_sequence_file_lines(path, numeric)


def _parse_sequence_file_lines(path: Path, numeric: bool = True) -> pl.DataFrame:
    """The line-by-line parser: slow, but finds and names the first bad line."""
    users: list[str] = []
    items: list[str] = []
    seen: dict[str, int] = {}
    for number, line in iter_lines(path):
        parts = line.split()
        if len(parts) < 2:
            raise DataFormatError(
                path,
                "expected 'user item item ...' separated by whitespace — wrong separator?",
                line=number,
            )
        user = check_int(parts[0], path, number, "user") if numeric else parts[0]
        if user in seen:
            raise DataFormatError(
                path, f"user {user} is listed twice (first on line {seen[user]})", line=number
            )
        seen[user] = number
        row = parts[1:]
        if numeric:
            row = [check_int(tok, path, number, f"item {i + 1}") for i, tok in enumerate(row)]
        users.extend([user] * len(row))
        items.extend(row)
    return interactions_frame(users, items)


def parse_sequence_table(
    path: Path,
    user_column: str,
    items_column: str,
    separator: str | None = None,
    numeric: bool = True,
) -> pl.DataFrame:
    """A delimited table with a header; ``items_column`` holds space-separated item ids."""
    sep = separator or sniff_separator(path)
    header = None
    users: list[str] = []
    items: list[str] = []
    seen: dict[str, int] = {}
    for number, line in iter_lines(path):
        parts = line.split(sep)
        if header is None:
            header = [h.strip() for h in parts]
            for needed in (user_column, items_column):
                if not any(h == needed or h.startswith(needed + " ") for h in header):
                    raise DataFormatError(
                        path,
                        f"required column not found (columns: {', '.join(header)})",
                        field=needed,
                    )
            u_index = next(
                i
                for i, h in enumerate(header)
                if h == user_column or h.startswith(user_column + " ")
            )
            i_index = next(
                i
                for i, h in enumerate(header)
                if h == items_column or h.startswith(items_column + " ")
            )
            continue
        if len(parts) != len(header):
            raise DataFormatError(
                path,
                f"expected {len(header)} fields separated by {sep!r}, found {len(parts)}",
                line=number,
            )
        user = (
            check_int(parts[u_index], path, number, user_column)
            if numeric
            else parts[u_index].strip()
        )
        if user in seen:
            raise DataFormatError(
                path, f"user {user} is listed twice (first on line {seen[user]})", line=number
            )
        seen[user] = number
        row = parts[i_index].split()
        if numeric:
            row = [check_int(t, path, number, items_column) for t in row]
        users.extend([user] * len(row))
        items.extend(row)
    if header is None:
        raise DataFormatError(path, "file is empty")
    return interactions_frame(users, items)


def resolve(spec: SourceSpec) -> dict[str, Path]:
    return resolve_single_txt(spec.path, spec.item_text, "sequence file")


def read(spec: SourceSpec) -> RawData:
    files = resolve(spec)
    path = require_file(files["interactions"], "sequence file")
    if spec.columns:
        frame = parse_sequence_table(
            path,
            spec.columns.get("user", "user"),
            spec.columns.get("items", "items"),
            spec.separator,
            spec.numeric_ids,
        )
    else:
        frame = parse_sequence_file(path, numeric=spec.numeric_ids)
    texts = [
        read_item_text_file(p, spec.text_fields)
        for k, p in files.items()
        if k.startswith("item_text")
    ]
    return RawData(interactions=frame, item_text=merge_text(texts))
