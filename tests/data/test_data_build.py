"""Options of the build step (k-core, minimum length, ordering, id mapping) and their metadata."""

from __future__ import annotations

import logging

import pytest
from data_helpers import write
from pydantic import ValidationError

from llmseqrec.data.build import PrepareOptions, RawData, build_dataset, interactions_frame


def build(users, items, timestamps=None, **options):
    raw = RawData(interactions=interactions_frame(users, items, timestamps))
    return build_dataset(raw, name="t", options=PrepareOptions(**options), source={"test": True})


def as_raw(ds) -> dict[str, list[str]]:
    return {
        str(ds.user_ids[u]): [str(ds.item_ids[i - 1]) for i in ds.sequence(u)]
        for u in range(ds.n_users)
    }


def from_seqs(seqs: dict[str, list[str]], **options):
    users = [u for u, row in seqs.items() for _ in row]
    items = [i for row in seqs.values() for i in row]
    return build(users, items, **options)


def test_default_min_seq_len_drops_short_users_and_reports(caplog):
    with caplog.at_level(logging.WARNING):
        ds = from_seqs(
            {"1": ["1", "2", "3"], "2": ["1", "2"], "3": ["4"], "4": ["2", "3", "4", "1"]}
        )
    assert as_raw(ds) == {"1": ["1", "2", "3"], "4": ["2", "3", "4", "1"]}
    counts = ds.metadata["counts"]
    assert counts["dropped_users"] == 2
    assert counts["dropped_interactions"] == 3
    assert counts["dropped_items"] == 0
    assert (counts["users"], counts["items"], counts["interactions"]) == (2, 4, 7)
    assert "dropped 2 users with fewer than 3 items" in caplog.text
    assert ds.metadata["options"]["min_seq_len"] == 3


def test_min_seq_len_option():
    seqs = {"1": ["1", "2", "3"], "2": ["1", "2", "3", "4", "5"]}
    assert as_raw(from_seqs(seqs, min_seq_len=5)) == {"2": ["1", "2", "3", "4", "5"]}
    assert as_raw(from_seqs(seqs, min_seq_len=1)) == seqs


def test_dropping_users_drops_their_only_items_and_renumbers():
    ds = from_seqs({"1": ["10", "20", "30"], "2": ["40", "50"]})
    assert ds.item_ids.tolist() == ["10", "20", "30"]
    assert ds.items.tolist() == [1, 2, 3]
    assert ds.item_text["item"].to_list() == [1, 2, 3]


def test_iterative_kcore_cascades():
    # Item "c" occurs once; removing it leaves user "u3" with 2 items, which then removes
    # u3, which leaves item "b" with 1 interaction... a single pass would keep them.
    seqs = {
        "u1": ["a", "b", "d"],
        "u2": ["a", "d", "e"],
        "u3": ["b", "c", "e"],
        "u4": ["a", "d", "e"],
    }
    ds = from_seqs(seqs, kcore_item=2, kcore_user=3)
    assert as_raw(ds) == {"u2": ["a", "d", "e"], "u4": ["a", "d", "e"]}
    assert ds.metadata["counts"]["rounds"] >= 3
    assert ds.metadata["options"]["kcore_item"] == 2
    assert ds.metadata["options"]["kcore_user"] == 3
    assert ds.metadata["counts"]["dropped_items"] == 2


def test_kcore_user_larger_than_min_seq_len():
    ds = from_seqs({"1": list("abcd"), "2": list("abcde")}, kcore_user=5)
    assert as_raw(ds) == {"2": list("abcde")}


def test_order_by_timestamp_and_ties_keep_file_order():
    ds = build(["1"] * 4, ["a", "b", "c", "d"], [30, 10, 10, 20])
    assert as_raw(ds) == {"1": ["b", "c", "d", "a"]}
    assert ds.timestamps.tolist() == [10, 10, 20, 30]
    assert ds.metadata["ordered_by"] == "timestamp"


def test_order_by_timestamp_off_keeps_file_order():
    ds = build(["1"] * 4, ["a", "b", "c", "d"], [30, 10, 10, 20], order_by_timestamp=False)
    assert as_raw(ds) == {"1": ["a", "b", "c", "d"]}
    assert ds.timestamps.tolist() == [30, 10, 10, 20]
    assert ds.metadata["ordered_by"] == "file order"
    assert ds.metadata["options"]["order_by_timestamp"] is False


def test_interleaved_users_are_grouped_in_file_order():
    ds = build(["2", "1", "2", "1", "2", "1"], ["a", "b", "c", "d", "e", "f"])
    assert as_raw(ds) == {"1": ["b", "d", "f"], "2": ["a", "c", "e"]}


@pytest.mark.parametrize(
    "mode,expected_items,expected_users",
    [
        ("auto", ["2", "10", "100"], ["3", "20"]),
        ("numeric", ["2", "10", "100"], ["3", "20"]),
        ("first-seen", ["100", "2", "10"], ["20", "3"]),
    ],
)
def test_id_mapping(mode, expected_items, expected_users):
    ds = from_seqs({"20": ["100", "2", "10"], "3": ["10", "2", "100"]}, id_mapping=mode)
    assert ds.item_ids.tolist() == expected_items
    assert ds.user_ids.tolist() == expected_users
    assert as_raw(ds) == {"20": ["100", "2", "10"], "3": ["10", "2", "100"]}
    assert ds.metadata["options"]["id_mapping"] == mode


def test_auto_mapping_with_non_integer_ids_uses_first_seen():
    ds = from_seqs({"b": ["z", "y", "10"], "a": ["y", "z", "x"]})
    assert ds.item_ids.tolist() == ["z", "y", "10", "x"]
    assert ds.user_ids.tolist() == ["b", "a"]


def test_every_option_is_recorded():
    options = PrepareOptions(
        kcore_user=2, kcore_item=1, min_seq_len=4, order_by_timestamp=False, id_mapping="first-seen"
    )
    raw = RawData(interactions=interactions_frame(["1"] * 4, ["a", "b", "c", "d"]))
    ds = build_dataset(raw, name="t", options=options, source={"x": 1})
    assert ds.metadata["options"] == options.model_dump()
    assert ds.metadata["source"] == {"x": 1}


def test_options_are_validated():
    with pytest.raises(ValidationError):
        PrepareOptions(min_seq_len=0)
    with pytest.raises(ValidationError):
        PrepareOptions(kcore_user=-1)
    with pytest.raises(ValidationError):
        PrepareOptions(id_mapping="random")
    with pytest.raises(ValidationError):
        PrepareOptions(kcore=5)


def test_split_leave_one_out():
    ds = from_seqs({"1": ["a", "b", "c", "d", "e"], "2": ["c", "b", "a"]})
    split = ds.split
    assert split.train_sequence(0).tolist() == [1, 2, 3]
    assert split.valid_target.tolist() == [4, 2]
    assert split.test_target.tolist() == [5, 1]
    assert split.train_sequence(1).tolist() == [3]
    assert split.test_history(0).tolist() == [1, 2, 3, 4]
    assert split.valid_history(1).tolist() == [3]
    assert split.train_users_of().tolist() == [0, 0, 0, 1]


def test_split_refuses_short_sequences():
    ds = from_seqs({"1": ["a", "b"]}, min_seq_len=1)
    with pytest.raises(ValueError, match="min_seq_len >= 3"):
        _ = ds.split


def test_prepare_records_options_source_and_counts(tmp_path, run):
    path = write(tmp_path / "s.txt", "1 1 2 3 4\n2 1 2\n3 2 3 4\n")
    ds = run("sequence", path, options=PrepareOptions(min_seq_len=3))
    meta = ds.metadata
    assert meta["counts"]["dropped_users"] == 1
    assert meta["options"]["min_seq_len"] == 3
    assert meta["source"]["format"] == "sequence"
    assert meta["source"]["files"]["interactions"] == str(path.resolve())
    assert len(meta["cache_key"]) == 16
    assert ds.stats()["users"] == 2
