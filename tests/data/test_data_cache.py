"""The prepared-dataset cache: keys, reloads, and atomic writes under interruption."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from data_helpers import loadable_datasets, write

from llmseqrec.data import cache as cache_mod
from llmseqrec.data.build import PrepareOptions
from llmseqrec.data.prepare import load, prepare
from llmseqrec.data.readers import sequence as sequence_reader
from llmseqrec.data.readers.spec import SourceSpec
from llmseqrec.errors import ConfigError


@pytest.fixture
def source(tmp_path) -> SourceSpec:
    seq = write(tmp_path / "src" / "Beauty.txt", "1 1 2 3 4 5\n2 6 7 8 9 10 4 11\n3 4 2 1\n")
    titles = write(
        tmp_path / "src" / "titles.tsv",
        "item_id\tasin\ttitle\n" + "".join(f"{i}\tA{i}\tCafé {i}\n" for i in range(1, 12)),
    )
    cats = write(tmp_path / "src" / "cats.json", '{"1": ["x", "y"], "2": []}')
    return SourceSpec(format="sequence", path=seq, item_text=[titles, cats])


def fail_if_read(spec):
    raise AssertionError("the reader ran although the dataset is cached")


def assert_same(a, b):
    assert a.name == b.name
    assert np.array_equal(a.offsets, b.offsets) and a.offsets.dtype == b.offsets.dtype
    assert np.array_equal(a.items, b.items) and a.items.dtype == b.items.dtype
    assert a.user_ids.tolist() == b.user_ids.tolist()
    assert a.item_ids.tolist() == b.item_ids.tolist()
    assert a.item_text.equals(b.item_text)
    assert (a.timestamps is None) == (b.timestamps is None)
    assert a.metadata == b.metadata
    assert np.array_equal(a.split.train_items, b.split.train_items)


def test_second_prepare_loads_from_cache(source, cache, monkeypatch):
    first = prepare(source, "beauty", cache=cache)
    monkeypatch.setattr(sequence_reader, "read", fail_if_read)
    second = prepare(source, "beauty", cache=cache)
    assert_same(first, second)
    assert second.item_text["title"][0] == "Café 1"
    assert second.item_text["categories"][0].to_list() == ["x", "y"]
    assert_same(first, load("beauty", cache=cache))


def test_round_trip_with_timestamps(tmp_path, cache, monkeypatch):
    path = write(tmp_path / "u.data", "1\t1\t5\t30\n1\t2\t5\t10\n1\t3\t5\t20\n")
    spec = SourceSpec(format="movielens", path=path)
    first = prepare(spec, "ml", cache=cache)
    second = prepare(spec, "ml", cache=cache)
    assert_same(first, second)
    assert second.timestamps.tolist() == [10, 20, 30]
    assert second.timestamps.dtype == np.int64


def test_key_changes_with_file_content(source, cache):
    first = prepare(source, "beauty", cache=cache)
    write(source.path, "1 1 2 3 4 5\n2 6 7 8 9 10 4 11\n")
    second = prepare(source, "beauty", cache=cache)
    assert second.metadata["cache_key"] != first.metadata["cache_key"]
    assert second.n_users == 2
    assert load("beauty", cache=cache).n_users == 2


def test_key_changes_with_side_file_content(source, cache):
    first = prepare(source, "beauty", cache=cache)
    titles = source.item_text[0]
    write(titles, titles.read_text(encoding="utf-8").replace("Café 1", "Tea 1"))
    second = prepare(source, "beauty", cache=cache)
    assert second.metadata["cache_key"] != first.metadata["cache_key"]
    assert second.item_text["title"][0] == "Tea 1"


def test_key_changes_with_options_and_spec(source, cache):
    keys = {
        prepare(source, "b", cache=cache).metadata["cache_key"],
        prepare(source, "b", PrepareOptions(min_seq_len=4), cache=cache).metadata["cache_key"],
        prepare(source, "b", PrepareOptions(kcore_item=1), cache=cache).metadata["cache_key"],
        prepare(
            source.model_copy(update={"text_fields": {"title": "description"}}), "b", cache=cache
        ).metadata["cache_key"],
    }
    assert len(keys) == 4
    # The latest prepare is what load() returns.
    assert load("b", cache=cache).item_text["description"][0] == "Café 1"


def test_key_ignores_where_the_files_are(source, cache, tmp_path):
    first = prepare(source, "b", cache=cache)
    moved = tmp_path / "moved"
    os.rename(source.path.parent, moved)
    spec = SourceSpec(
        format="sequence",
        path=moved / "Beauty.txt",
        item_text=[moved / "titles.tsv", moved / "cats.json"],
    )
    assert prepare(spec, "b", cache=cache).metadata["cache_key"] == first.metadata["cache_key"]


def test_force_rereads(source, cache, monkeypatch):
    prepare(source, "b", cache=cache)
    calls = []
    real = sequence_reader.read
    monkeypatch.setattr(sequence_reader, "read", lambda spec: calls.append(1) or real(spec))
    again = prepare(source, "b", cache=cache, force=True)
    assert calls == [1]
    assert again.n_users == 3
    assert len(loadable_datasets(cache)) == 1


def test_load_unknown_name(cache):
    with pytest.raises(ConfigError, match="not prepared"):
        load("nothing", cache=cache)


class Interrupted(KeyboardInterrupt):
    pass


@pytest.mark.parametrize("step", ["npy", "parquet", "meta"])
def test_interrupted_save_leaves_nothing_loadable_and_rerun_succeeds(
    source, cache, monkeypatch, step
):
    real_parquet = pl.DataFrame.write_parquet
    real_save = np.save
    real_write_text = Path.write_text

    def parquet(self, file, *args, **kwargs):
        if step == "parquet" and str(file).endswith("item_text.parquet"):
            Path(file).write_bytes(b"PAR1 half")  # a half-written file, then the interrupt
            raise Interrupted
        return real_parquet(self, file, *args, **kwargs)

    def save(file, arr, *args, **kwargs):
        if step == "npy" and str(file).endswith("items.npy"):
            raise Interrupted
        return real_save(file, arr, *args, **kwargs)

    def write_text(self, data, *args, **kwargs):
        if step == "meta" and self.name == "meta.json":
            real_write_text(self, data[: len(data) // 2], *args, **kwargs)
            raise Interrupted
        return real_write_text(self, data, *args, **kwargs)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", parquet)
    monkeypatch.setattr(np, "save", save)
    monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(KeyboardInterrupt):
        prepare(source, "beauty", cache=cache)
    monkeypatch.undo()

    assert loadable_datasets(cache) == []
    assert [p for p in cache.rglob("*") if p.is_file()] == []
    assert cache_mod.current_directory(cache, "beauty") is None
    with pytest.raises(ConfigError):
        load("beauty", cache=cache)

    dataset = prepare(source, "beauty", cache=cache)
    assert dataset.n_users == 3
    assert len(loadable_datasets(cache)) == 1
    assert load("beauty", cache=cache).n_interactions == dataset.n_interactions


def test_killed_writer_leftovers_are_never_loaded(source, cache, monkeypatch):
    """A hard kill (no cleanup) leaves a temporary directory; it is never loaded."""
    import shutil

    def no_cleanup(*args, **kwargs):
        return None

    real_rename = os.rename

    def killed(src, dst):
        if ".tmp-" in str(src):
            raise Interrupted
        return real_rename(src, dst)

    monkeypatch.setattr(shutil, "rmtree", no_cleanup)
    monkeypatch.setattr(os, "rename", killed)
    with pytest.raises(KeyboardInterrupt):
        prepare(source, "beauty", cache=cache)
    monkeypatch.undo()
    assert loadable_datasets(cache) == [] or all(
        ".tmp-" in str(p) for p in loadable_datasets(cache)
    )
    assert cache_mod.current_directory(cache, "beauty") is None
    dataset = prepare(source, "beauty", cache=cache)
    assert dataset.n_users == 3
    assert cache_mod.current_directory(cache, "beauty").name == dataset.metadata["cache_key"]


def test_interrupted_pointer_update_leaves_no_temp_file(source, cache, monkeypatch):
    prepare(source, "beauty", cache=cache)
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith("CURRENT"):
            raise Interrupted
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        prepare(source, "other", cache=cache)
    monkeypatch.undo()
    assert [p.name for p in cache.rglob(".CURRENT.tmp-*")] == []
    assert load("beauty", cache=cache).n_users == 3


def test_list_prepared(source, cache):
    assert cache_mod.list_prepared(cache) == []
    prepare(source, "b1", cache=cache)
    prepare(source, "a2", cache=cache)
    assert cache_mod.list_prepared(cache) == ["a2", "b1"]
