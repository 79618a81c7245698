"""Amazon review dumps (2014 and 2018): reviews as JSON lines (``reviewerID``, ``asin``,
``unixReviewTime``), metadata as JSON lines or the 2014 Python-literal format.

The 2014 metadata is not JSON (single quotes); it is parsed with ``ast.literal_eval``, which
only accepts literals — never ``eval``.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from llmseqrec.data.build import RawData, interactions_frame
from llmseqrec.data.readers._common import iter_lines, require_file
from llmseqrec.data.readers.spec import SourceSpec
from llmseqrec.data.readers.text import text_frame
from llmseqrec.errors import DataFormatError

REVIEW_FIELDS = ("reviewerID", "asin", "unixReviewTime")


def _parse_record(line: str, path: Path, number: int) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        try:
            record = ast.literal_eval(line)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
            raise DataFormatError(
                path, "line is neither JSON nor a Python literal", line=number
            ) from exc
    if not isinstance(record, dict):
        raise DataFormatError(path, "expected one JSON object per line", line=number)
    return record


def resolve(spec: SourceSpec) -> dict[str, Path]:
    path = Path(spec.path)
    if not path.exists():
        raise DataFormatError(path, "path not found")
    meta = Path(spec.meta) if spec.meta else None
    if path.is_dir():
        reviews = sorted(
            p
            for p in path.iterdir()
            if p.name.startswith(("reviews_", "review"))
            or (p.suffix in (".json", ".gz") and not p.name.startswith("meta"))
        )
        reviews = [p for p in reviews if not p.name.startswith("meta")]
        if len(reviews) != 1:
            raise DataFormatError(
                path,
                f"expected one reviews file (*.json / *.json.gz), found {len(reviews)}; pass the file",
            )
        if meta is None:
            metas = sorted(path.glob("meta*"))
            meta = metas[0] if metas else None
        path = reviews[0]
    files = {"reviews": path}
    if meta is not None:
        files["meta"] = meta
    return files


def read(spec: SourceSpec) -> RawData:
    files = resolve(spec)
    path = require_file(files["reviews"], "reviews file")
    users, items, times = [], [], []
    for number, line in iter_lines(path):
        record = _parse_record(line, path, number)
        for name in REVIEW_FIELDS:
            if name not in record:
                raise DataFormatError(path, "required field missing", line=number, field=name)
        try:
            stamp = int(record["unixReviewTime"])
        except (TypeError, ValueError) as exc:
            raise DataFormatError(
                path,
                f"expected an integer, found {record['unixReviewTime']!r}",
                line=number,
                field="unixReviewTime",
            ) from exc
        users.append(str(record["reviewerID"]))
        items.append(str(record["asin"]))
        times.append(stamp)
    text = _read_meta(require_file(files["meta"], "metadata file")) if "meta" in files else None
    return RawData(interactions=interactions_frame(users, items, times), item_text=text)


def _flatten_categories(value) -> list[str]:
    """2014: list of category paths (lists); 2018: flat list. Dedupe, keep order."""
    out: list[str] = []
    stack = value if isinstance(value, list) else [value]
    for entry in stack:
        for name in entry if isinstance(entry, list) else [entry]:
            name = str(name).strip()
            if name and name not in out:
                out.append(name)
    return out


def _as_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        value = " ".join(str(v).strip() for v in value if str(v).strip())
    value = str(value).strip()
    return value or None


def _read_meta(path: Path):
    rows: dict[str, list] = {
        "item": [],
        "title": [],
        "brand": [],
        "categories": [],
        "description": [],
    }
    for number, line in iter_lines(path):
        record = _parse_record(line, path, number)
        if "asin" not in record:
            raise DataFormatError(path, "required field missing", line=number, field="asin")
        rows["item"].append(str(record["asin"]))
        rows["title"].append(_as_text(record.get("title")))
        rows["brand"].append(_as_text(record.get("brand")))
        cats = record.get("categories", record.get("category"))
        rows["categories"].append(_flatten_categories(cats) if cats is not None else None)
        rows["description"].append(_as_text(record.get("description")))
    return text_frame(rows)
