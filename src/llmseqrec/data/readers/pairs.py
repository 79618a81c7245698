"""Pair files: ``user item`` per line, in chronological order (SASRec style, Office.txt)."""

from __future__ import annotations

from pathlib import Path

from llmseqrec.data.build import RawData, interactions_frame
from llmseqrec.data.readers._common import (
    check_int,
    iter_lines,
    require_file,
    resolve_single_txt,
    split_fields,
)
from llmseqrec.data.readers._fast import pair_rows
from llmseqrec.data.readers.spec import SourceSpec
from llmseqrec.data.readers.text import merge_text, read_item_text_file
from llmseqrec.errors import DataFormatError


def resolve(spec: SourceSpec) -> dict[str, Path]:
    return resolve_single_txt(spec.path, spec.item_text, "pair file")


def read(spec: SourceSpec) -> RawData:
    files = resolve(spec)
    path = require_file(files["interactions"], "pair file")
    fast = pair_rows(path, spec.separator, spec.numeric_ids)
    if fast is not None:
        frame = interactions_frame(
            fast["user"], fast["item"], fast["timestamp"] if "timestamp" in fast.columns else None
        )
    else:
        frame = _read_pair_lines(path, spec)
    texts = [
        read_item_text_file(p, spec.text_fields)
        for k, p in files.items()
        if k.startswith("item_text")
    ]
    return RawData(interactions=frame, item_text=merge_text(texts))


def _read_pair_lines(path: Path, spec: SourceSpec):
    """The line-by-line parser: slow, but finds and names the first bad line."""
    users, items, times = [], [], []
    with_time = None
    for number, line in iter_lines(path):
        parts = split_fields(line, spec.separator, 2, path, number, "user, item")
        if spec.numeric_ids:
            users.append(check_int(parts[0], path, number, "user"))
            items.append(check_int(parts[1], path, number, "item"))
        else:
            users.append(parts[0].strip())
            items.append(parts[1].strip())
        if with_time is None:
            with_time = len(parts) >= 3
        if with_time:
            if len(parts) < 3:
                raise DataFormatError(
                    path, "timestamp missing (earlier lines have one)", line=number
                )
            times.append(int(check_int(parts[2], path, number, "timestamp")))
    return interactions_frame(users, items, times if with_time else None)
