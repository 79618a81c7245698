"""Shared checks and parsing helpers for readers: every failure names file and line."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

from llmseqrec.errors import DataFormatError


def require_file(path: Path, what: str = "file") -> Path:
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, f"{what} not found")
    if path.is_dir():
        raise DataFormatError(path, f"expected a {what}, found a directory")
    if path.stat().st_size == 0:
        raise DataFormatError(path, f"{what} is empty")
    return path


def resolve_single_txt(path: str | Path, item_text: list[str], what: str) -> dict[str, Path]:
    """The reader's files: ``path`` (or the one ``.txt`` in that directory) plus item-text files."""
    path = Path(path)
    if not path.exists():
        raise DataFormatError(path, "path not found")
    if path.is_dir():
        txt = sorted(p for p in path.glob("*.txt") if p.is_file())
        if len(txt) != 1:
            raise DataFormatError(
                path,
                f"a directory needs exactly one .txt {what}, found {len(txt)}; pass the file",
            )
        path = txt[0]
    files = {"interactions": path}
    for i, extra in enumerate(item_text):
        files[f"item_text_{i}"] = Path(extra)
    return files


INTEGER = re.compile(r"-?[0-9]+", re.ASCII)


def open_text(path: Path, encoding: str = "utf-8"):
    """Open plain or gzip text; undecodable bytes are an error, never silently replaced.

    UTF-8 files may start with a byte-order mark (Windows editors write one); it is dropped.
    """
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"
    if str(path).endswith(".gz"):
        return gzip.open(path, "rt", encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")


def iter_lines(
    path: Path, encoding: str = "utf-8", skip_blank: bool = True
) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without newline) pairs."""
    require_file(path)
    try:
        with open_text(path, encoding) as handle:
            for number, line in enumerate(handle, start=1):
                line = line.rstrip("\r\n")
                if skip_blank and not line.strip():
                    continue
                yield number, line
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            path, f"not valid {encoding} text ({exc.reason} at byte {exc.start})"
        ) from exc
    except (OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise DataFormatError(path, "file not found") from exc
        raise DataFormatError(path, f"cannot read: {exc}") from exc


def check_int(token: str, path: Path, line: int, field: str) -> str:
    """Numeric formats: ids must be integers; returns the canonical string form."""
    stripped = token.strip()
    if not INTEGER.fullmatch(stripped):
        raise DataFormatError(
            path, f"expected an integer id, found {token!r}", line=line, field=field
        )
    return str(int(stripped))


def split_fields(
    line: str, sep: str | None, expected: int, path: Path, number: int, names: str
) -> list[str]:
    """Split a delimited line and insist on at least ``expected`` fields, hinting at the separator."""
    parts = line.split(sep) if sep is not None else line.split()
    if len(parts) < expected:
        shown = "whitespace" if sep is None else repr(sep)
        raise DataFormatError(
            path,
            f"expected {expected} fields ({names}) separated by {shown}, found {len(parts)}"
            " — wrong separator?",
            line=number,
        )
    return parts


def sniff_separator(path: Path, candidates: str = "\t,;|") -> str:
    """Pick the delimiter that splits the header line into the most fields."""
    for _, header in iter_lines(path):
        best = max(candidates, key=header.count)
        return best if header.count(best) else "\t"
    raise DataFormatError(path, "file is empty")
