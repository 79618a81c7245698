import lzma
import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from llmseqrec.text.cache import CacheKeyParts, ResponseCache, UsageCounters

PARTS = CacheKeyParts("openai", "some-model", "check@v1", {"max_tokens": 8, "temperature": 0.0})


def test_key_covers_every_part():
    base = PARTS.key("hello")
    assert base == CacheKeyParts(
        "openai", "some-model", "check@v1", {"temperature": 0.0, "max_tokens": 8}
    ).key("hello")
    variants = [
        CacheKeyParts("llamacpp", "some-model", "check@v1", PARTS.params).key("hello"),
        CacheKeyParts("openai", "other-model", "check@v1", PARTS.params).key("hello"),
        CacheKeyParts("openai", "some-model", "check@v2", PARTS.params).key("hello"),
        CacheKeyParts(
            "openai", "some-model", "check@v1", {"max_tokens": 9, "temperature": 0.0}
        ).key("hello"),
        PARTS.key("hello "),
    ]
    assert len({base, *variants}) == 6


def _writer(path: str, worker: int) -> None:
    cache = ResponseCache(path)
    # Overlapping key ranges: every key is written by two workers.
    for i in range(worker * 50, worker * 50 + 100):
        cache.put(PARTS.key(f"p{i}"), PARTS, f"p{i}", f"answer {i} from {worker}")
    cache.add_usage("openai", "some-model", UsageCounters(calls=100))
    cache.close()


def test_concurrent_writer_processes(tmp_path: Path):
    path = tmp_path / "shared.sqlite"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(str(path), w)) for w in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    cache = ResponseCache(path)
    assert len(cache) == 200  # keys 0..199, each stored once
    assert cache.usage()[0]["calls"] == 300
    found = cache.get_many([PARTS.key(f"p{i}") for i in range(200)])
    assert len(found) == 200 and found[PARTS.key("p0")].response == "answer 0 from 0"
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_first_writer_wins(tmp_path: Path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    key = PARTS.key("x")
    assert cache.put(key, PARTS, "x", "first")
    assert not cache.put(key, PARTS, "x", "second")
    assert cache.get_many([key])[key].response == "first"


def test_answers_exported_on_one_machine_serve_another_without_model_calls(tmp_path: Path):
    old = ResponseCache(tmp_path / "old.sqlite")
    for i in range(3):
        old.put(PARTS.key(f"p{i}"), PARTS, f"p{i}", f"answer {i}", tokens_in=5, tokens_out=2)
    exported = tmp_path / "kept" / "part-1.jsonl.xz"
    assert old.export_answers(exported, skip={PARTS.key("p0")}) == 2
    assert old.export_answers(tmp_path / "none.jsonl.xz", skip=old.keys()) == 0
    assert not (tmp_path / "none.jsonl.xz").exists()  # nothing new: no empty file

    new = ResponseCache(tmp_path / "new.sqlite")
    new.put(PARTS.key("p1"), PARTS, "p1", "this machine's own answer")
    assert new.import_answers(exported) == 1  # p2; p1 is kept as it was
    found = new.get_many([PARTS.key("p1"), PARTS.key("p2")])
    assert found[PARTS.key("p1")].response == "this machine's own answer"
    assert found[PARTS.key("p2")] == old.get_many([PARTS.key("p2")])[PARTS.key("p2")]
    assert new.import_answers(exported) == 0


def test_a_damaged_export_names_its_line(tmp_path: Path):
    path = tmp_path / "bad.jsonl.xz"
    with lzma.open(path, "wt") as out:
        out.write('{"key": "k"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl\.xz:1: not an exported answer"):
        ResponseCache(tmp_path / "c.sqlite").import_answers(path)
