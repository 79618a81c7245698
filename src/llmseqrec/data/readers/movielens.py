"""MovieLens: ``ratings.dat`` (``::``), ``u.data`` (tab), or a ``UserID MovieID ...`` sequence file;
item text from ``movies.dat`` / ``u.item`` (Latin-1)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from llmseqrec.data.build import RawData, interactions_frame
from llmseqrec.data.readers._common import check_int, iter_lines, require_file, split_fields
from llmseqrec.data.readers._fast import numeric_columns
from llmseqrec.data.readers.sequence import parse_sequence_file
from llmseqrec.data.readers.spec import SourceSpec
from llmseqrec.data.readers.text import text_frame
from llmseqrec.errors import DataFormatError

ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
]  # fmt: skip
LATIN1 = "latin-1"


def resolve(spec: SourceSpec) -> dict[str, Path]:
    path = Path(spec.path)
    if not path.exists():
        raise DataFormatError(path, "path not found")
    if path.is_file():
        interactions = path
        folder = path.parent
    else:
        folder = path
        candidates = [folder / "ratings.dat", folder / "u.data"]
        candidates += sorted(p for p in folder.glob("*sequences*.txt"))
        found = [p for p in candidates if p.is_file()]
        if not found:
            raise DataFormatError(folder, "no ratings.dat, u.data or *sequences*.txt found")
        interactions = found[0]
    meta = spec.meta
    if meta is None:
        for name in ("movies.dat", "u.item"):
            if (folder / name).is_file():
                meta = folder / name
                break
    files = {"interactions": interactions}
    if meta is not None:
        files["meta"] = Path(meta)
    return files


def read(spec: SourceSpec) -> RawData:
    files = resolve(spec)
    path = require_file(files["interactions"], "interactions file")
    if path.name == "u.data":
        frame = _read_ratings(path, sep="\t")
    elif path.suffix == ".dat":
        frame = _read_ratings(path, sep="::")
    else:
        frame = parse_sequence_file(path, numeric=True)
    text = None
    if "meta" in files:
        meta = require_file(files["meta"], "movie metadata file")
        text = _read_u_item(meta) if meta.name == "u.item" else _read_movies_dat(meta)
    return RawData(interactions=frame, item_text=text)


def _read_ratings(path: Path, sep: str):
    fast = numeric_columns(path, sep, {0: "user", 1: "item", 3: "timestamp"})
    if fast is not None:
        return interactions_frame(fast["user"], fast["item"], fast["timestamp"].cast(pl.Int64))
    return _read_ratings_lines(path, sep)


def _read_ratings_lines(path: Path, sep: str):
    """The line-by-line parser: slow, but finds and names the first bad line."""
    users, items, times = [], [], []
    for number, line in iter_lines(path):
        parts = split_fields(line, sep, 4, path, number, "user, item, rating, timestamp")
        users.append(check_int(parts[0], path, number, "user"))
        items.append(check_int(parts[1], path, number, "item"))
        times.append(int(check_int(parts[3], path, number, "timestamp")))
    return interactions_frame(users, items, times)


def _read_movies_dat(path: Path):
    ids, titles, genres = [], [], []
    for number, line in iter_lines(path, LATIN1):
        parts = split_fields(line, "::", 3, path, number, "MovieID, Title, Genres")
        ids.append(check_int(parts[0], path, number, "MovieID"))
        titles.append(parts[1].strip())
        genres.append([g for g in parts[2].strip().split("|") if g])
    return text_frame({"item": ids, "title": titles, "categories": genres})


def _read_u_item(path: Path):
    ids, titles, genres, dates = [], [], [], []
    for number, line in iter_lines(path, LATIN1):
        parts = split_fields(
            line, "|", 5 + len(ML100K_GENRES), path, number, "id, title, date, ..., genre flags"
        )
        ids.append(check_int(parts[0], path, number, "movie id"))
        titles.append(parts[1].strip())
        dates.append(parts[2].strip() or None)
        flags = parts[5 : 5 + len(ML100K_GENRES)]
        genres.append([g for g, f in zip(ML100K_GENRES, flags, strict=True) if f.strip() == "1"])
    return text_frame({"item": ids, "title": titles, "categories": genres, "release_date": dates})
