"""Persistent LLM response cache (SQLite in WAL mode) and the usage counters.

One row per answer, keyed by a hash of everything that determines it: backend, model
identity, template name@version, the rendered prompt and the generation parameters. Rows are
written as each answer arrives, so a stage that dies half-way keeps what it got; a rerun of a
finished stage is answered from here with zero model calls. ``INSERT OR IGNORE`` makes the
first answer win when concurrent writers (threads or processes) race on one key, so nothing
is stored twice. The API key is never part of a key or a row.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmseqrec import paths

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    template TEXT NOT NULL,
    prompt TEXT NOT NULL,
    params TEXT NOT NULL,
    response TEXT NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    seconds REAL NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS usage (
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    calls INTEGER NOT NULL DEFAULT 0,
    cache_hits INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    seconds REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (backend, model)
);
"""
_COLUMNS = (
    "key",
    "backend",
    "model",
    "template",
    "prompt",
    "params",
    "response",
    "tokens_in",
    "tokens_out",
    "seconds",
    "created",
)
# SQLite caps bound parameters per statement; stay well below the oldest limit (999).
_MAX_PARAMS = 500


def default_cache_path() -> Path:
    return paths.cache_root() / "llm" / "responses.sqlite"


@dataclass
class UsageCounters:
    """Model calls made, answers served from the cache, failures, tokens and model seconds."""

    calls: int = 0
    cache_hits: int = 0
    failures: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    seconds: float = 0.0

    def add(self, other: UsageCounters) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @property
    def hit_rate(self) -> float:
        asked = self.calls + self.cache_hits
        return self.cache_hits / asked if asked else 0.0


@dataclass(frozen=True)
class CachedResponse:
    response: str
    tokens_in: int
    tokens_out: int
    seconds: float


@dataclass(frozen=True)
class CacheKeyParts:
    backend: str
    model: str
    template: str
    params: dict[str, Any] = field(default_factory=dict)

    def key(self, prompt: str) -> str:
        payload = json.dumps(
            {
                "backend": self.backend,
                "model": self.model,
                "template": self.template,
                "prompt": prompt,
                "params": self.params,
            },
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(payload.encode()).hexdigest()


class ResponseCache:
    """Thread-safe handle on one cache file; several processes may open the same file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, timeout=60.0, check_same_thread=False, isolation_level=None
        )
        self._conn.execute("PRAGMA busy_timeout = 60000")
        self._retry_locked(lambda: self._conn.execute("PRAGMA journal_mode = WAL"))
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._retry_locked(lambda: self._conn.executescript(_SCHEMA))

    @staticmethod
    def _retry_locked(action, attempts: int = 50):
        # Switching to WAL needs a moment of exclusive access, which busy_timeout does not
        # always cover when several processes open a fresh file at once.
        for attempt in range(attempts):
            try:
                return action()
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or attempt == attempts - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        return None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_many(self, keys: Iterable[str]) -> dict[str, CachedResponse]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, CachedResponse] = {}
        with self._lock:
            for start in range(0, len(wanted), _MAX_PARAMS):
                chunk = wanted[start : start + _MAX_PARAMS]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT key, response, tokens_in, tokens_out, seconds FROM responses WHERE key IN ({marks})",
                    chunk,
                ).fetchall()
                for key, response, tokens_in, tokens_out, seconds in rows:
                    found[key] = CachedResponse(response, tokens_in, tokens_out, seconds)
        return found

    def put(
        self,
        key: str,
        parts: CacheKeyParts,
        prompt: str,
        response: str,
        *,
        tokens_in: int = 0,
        tokens_out: int = 0,
        seconds: float = 0.0,
    ) -> bool:
        """Store one answer; False when another writer stored this key first."""
        params = json.dumps(parts.params, sort_keys=True, ensure_ascii=False)
        with self._lock:
            cursor = self._retry_locked(
                lambda: self._conn.execute(
                    "INSERT OR IGNORE INTO responses VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        key,
                        parts.backend,
                        parts.model,
                        parts.template,
                        prompt,
                        params,
                        response,
                        tokens_in,
                        tokens_out,
                        seconds,
                        time.time(),
                    ),
                )
            )
            return bool(cursor.rowcount)

    def add_usage(self, backend: str, model: str, delta: UsageCounters) -> None:
        with self._lock:
            self._retry_locked(
                lambda: self._conn.execute(
                    """INSERT INTO usage VALUES (?,?,?,?,?,?,?,?)
                    ON CONFLICT (backend, model) DO UPDATE SET
                        calls = calls + excluded.calls,
                        cache_hits = cache_hits + excluded.cache_hits,
                        failures = failures + excluded.failures,
                        tokens_in = tokens_in + excluded.tokens_in,
                        tokens_out = tokens_out + excluded.tokens_out,
                        seconds = seconds + excluded.seconds""",
                    (
                        backend,
                        model,
                        delta.calls,
                        delta.cache_hits,
                        delta.failures,
                        delta.tokens_in,
                        delta.tokens_out,
                        delta.seconds,
                    ),
                )
            )

    def usage(self) -> list[dict[str, Any]]:
        """Accumulated counters per (backend, model), with the number of stored answers."""
        with self._lock:
            rows = self._conn.execute(
                """SELECT u.backend, u.model, u.calls, u.cache_hits, u.failures, u.tokens_in,
                          u.tokens_out, u.seconds,
                          (SELECT COUNT(*) FROM responses r
                           WHERE r.backend = u.backend AND r.model = u.model)
                   FROM usage u ORDER BY u.backend, u.model"""
            ).fetchall()
        names = (
            "backend",
            "model",
            "calls",
            "cache_hits",
            "failures",
            "tokens_in",
            "tokens_out",
            "seconds",
            "stored",
        )
        return [dict(zip(names, row, strict=True)) for row in rows]

    def keys(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._conn.execute("SELECT key FROM responses")}

    def export_answers(self, path: str | Path, skip: set[str] = frozenset()) -> int:
        """Write every stored answer whose key is not in ``skip`` as xz-compressed JSON lines
        (all columns), so a long LLM stage can continue on another machine; returns the count.
        Nothing is written when there is nothing new."""
        with self._lock:
            rows = [
                dict(zip(_COLUMNS, row, strict=True))
                for row in self._conn.execute(
                    f"SELECT {', '.join(_COLUMNS)} FROM responses ORDER BY created"
                )
                if row[0] not in skip
            ]
        if rows:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            with lzma.open(partial, "wt", encoding="utf-8") as out:
                for row in rows:
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
            partial.replace(path)
        return len(rows)

    def import_answers(self, path: str | Path) -> int:
        """Add the answers of an ``export_answers`` file that this cache lacks; returns how many.
        A stored answer is never replaced (the same key means the same prompt and model)."""
        path = Path(path)
        rows = []
        with lzma.open(path, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                try:
                    row = json.loads(line)
                    rows.append(tuple(row[name] for name in _COLUMNS))
                except (json.JSONDecodeError, KeyError, TypeError) as error:
                    raise ValueError(f"{path}:{number}: not an exported answer ({error})") from None
        with self._lock:
            before = self._conn.total_changes

            def insert() -> None:
                # One transaction: thousands of rows in one commit (the connection autocommits).
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany(
                        "INSERT OR IGNORE INTO responses VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows
                    )
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")

            self._retry_locked(insert)
            return self._conn.total_changes - before

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])
