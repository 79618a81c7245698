"""Every staged dataset in ../shared/data, read through PRESETS, against its published counts.

The data lives outside the repository (research-use terms forbid copying it in). Set
LLMSEQREC_SHARED_DATA to point elsewhere; without it the tests skip with a message.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from llmseqrec.data.prepare import PRESETS, prepare, preset_options, preset_spec


def shared_data_root() -> Path:
    override = os.environ.get("LLMSEQREC_SHARED_DATA")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


ROOT = shared_data_root()
pytestmark = pytest.mark.skipif(
    not ROOT.is_dir(),
    reason=f"staged datasets not found at {ROOT} (set LLMSEQREC_SHARED_DATA to their folder)",
)

EXPECTED = {
    "ml-1m": (6_040, 3_706, 1_000_209),
    # LRURec's and SASRec's ML-1M (movies with >= 5 ratings): Kang & McAuley's ml-1m.txt counts.
    "ml-1m-sc5": (6_040, 3_416, 999_611),
    "ml-100k": (943, 1_682, 100_000),
    "beauty": (22_363, 12_101, 198_502),
    "yelp": (30_431, 20_033, 316_354),
    "office": (4_905, 2_420, 53_258),
    "office-pairs": (4_905, 2_420, 53_258),
    "lastfm": (1_220, 4_606, 56_794),
}


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("real-cache")


@pytest.fixture(scope="session")
def prepared(real_cache):
    """Prepare each preset once per session (cold), memoised."""
    done: dict = {}

    def get(preset: str):
        if preset not in done:
            spec = preset_spec(preset, ROOT)
            if not Path(spec.path).exists():
                pytest.skip(f"{preset}: {spec.path} is not staged")
            done[preset] = prepare(spec, preset, preset_options(preset), cache=real_cache)
        return done[preset]

    return get


def title(ds, raw_item: str, field: str = "title"):
    row = ds.item_text.filter(pl.col("raw_id") == raw_item)
    assert row.height == 1, raw_item
    return row[field][0]


def test_presets_cover_expected():
    assert set(EXPECTED) == set(PRESETS)


@pytest.mark.parametrize("preset", sorted(EXPECTED))
def test_counts(prepared, preset):
    ds = prepared(preset)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == EXPECTED[preset]
    assert ds.metadata["counts"]["dropped_users"] == 0
    assert ds.items.min() == 1 and ds.items.max() == ds.n_items
    assert ds.item_text["item"].to_list() == list(range(1, ds.n_items + 1))
    split = ds.split
    assert len(split.train_items) == ds.n_interactions - 2 * ds.n_users


def test_ml1m_titles_decode_latin1(prepared):
    ds = prepared("ml-1m")
    assert ds.text_coverage()["title"] == 1.0
    assert title(ds, "73") == "Misérables, Les (1995)"
    assert title(ds, "582") == "Metisse (Café au Lait) (1993)"
    titles = ds.item_text["title"]
    assert not titles.str.contains("Ã|\ufffd").any()  # no mojibake, no replacement chars
    assert title(ds, "1", "categories").to_list() == ["Animation", "Children's", "Comedy"]
    # The derived sequence file is in time order already: kept as is.
    first = (ROOT / "ml-1m" / "derived_user_sequences_original_ids.txt").open().readline().split()
    assert ds.user_ids[0] == first[0]
    assert [ds.item_ids[i - 1] for i in ds.sequence(0)] == first[1:]


def test_ml100k_timestamps_and_titles(prepared):
    ds = prepared("ml-100k")
    assert ds.metadata["ordered_by"] == "timestamp"
    for u in (0, 100, 942):
        stamps = ds.timestamps[ds.offsets[u] : ds.offsets[u + 1]]
        assert np.all(np.diff(stamps) >= 0)
    assert title(ds, "1") == "Toy Story (1995)"
    assert ds.text_coverage()["title"] == 1.0


def test_beauty_text_and_file_order(prepared):
    ds = prepared("beauty")
    assert ds.text_coverage()["title"] == 1.0
    assert ds.item_text["title"].null_count() == 0
    assert title(ds, "1") == "OPI Nail Lacquer, Simmer and Shimmer, 0.5-Fluid Ounce"
    assert title(ds, "1", "brand") == "OPI"
    assert title(ds, "1", "categories").to_list() == ["Makeup", "Nails", "Nail Polish"]
    assert title(ds, "1", "asin") == "B004756YJA"
    assert ds.text_coverage()["brand"] == 1.0
    assert ds.text_coverage()["categories"] > 0.99
    # First line of Beauty.txt: "1 1 2 3 4 5".
    assert ds.user_ids[0] == "1"
    assert ds.sequence(0).tolist() == [1, 2, 3, 4, 5]
    split = ds.split
    assert split.train_sequence(0).tolist() == [1, 2, 3]
    assert (int(split.valid_target[0]), int(split.test_target[0])) == (4, 5)
    assert ds.sequence(1).tolist() == [6, 7, 8, 9, 10, 4, 11]


def test_beauty_reload_comes_from_the_cache_without_reparsing(prepared, real_cache, monkeypatch):
    """The second prepare serves the cached arrays; how fast is a benchmark's question
    (benchmarks/data_prep.py), never a unit test's: a timing bound here failed under load."""
    first = prepared("beauty")
    import llmseqrec.data.prepare as prepare_module

    def no_rebuild(*args, **kwargs):
        raise AssertionError("a cached dataset was parsed and built again")

    monkeypatch.setattr(prepare_module, "build_dataset", no_rebuild)
    ds = prepare(preset_spec("beauty", ROOT), "beauty", preset_options("beauty"), cache=real_cache)
    assert ds.n_interactions == 198_502
    assert ds.metadata["cache_key"] == first.metadata["cache_key"]
    assert ds.sequence(0).tolist() == first.sequence(0).tolist()


def test_yelp_names_and_closed_categories(prepared):
    ds = prepared("yelp")
    assert ds.item_text["title"].null_count() == 0
    assert title(ds, "1") == "The Great Greek"
    closed = json.loads((ROOT / "yelp" / "closed_categories.json").read_text(encoding="utf-8"))
    for key in list(closed)[:50]:
        assert title(ds, key, "categories").to_list() == closed[key]
    covered = ds.item_text["categories"].is_not_null().sum()
    assert covered == len(set(closed) & set(ds.item_ids.tolist()))


def test_office_text_via_item2index(prepared):
    ds = prepared("office")
    assert ds.text_coverage()["title"] == 1.0
    assert title(ds, "1", "asin") == "B0000AG93P"
    assert title(ds, "1").startswith("HP 78 Tri-Color Printer Cartridge")
    assert ds.metadata["ordered_by"] == "timestamp"


def test_office_pairs_matches_rechorus_shape(prepared):
    pairs = prepared("office-pairs")
    rechorus = prepared("office")
    assert sorted(pairs.lengths.tolist()) == sorted(rechorus.lengths.tolist())


def test_lastfm_names(prepared):
    ds = prepared("lastfm")
    assert ds.item_text["title"].null_count() == 0
    assert title(ds, "2") == "Café Del Mar"
    assert ds.item_ids[0] == "0"  # raw item 0 is a real artist: internal id 1
    assert ds.lengths.min() == 4 and ds.lengths.max() == 986
