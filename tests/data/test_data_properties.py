"""Property tests: leave-one-out split, minimum length, iterative k-core, ordering, cache round trip."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from llmseqrec.data import cache as cache_mod
from llmseqrec.data.build import PrepareOptions, RawData, build_dataset, interactions_frame

SETTINGS = settings(max_examples=60, deadline=None)

sequences = st.dictionaries(
    keys=st.integers(0, 40).map(str),
    values=st.lists(st.integers(0, 25).map(str), min_size=0, max_size=12),
    min_size=1,
    max_size=15,
)


def build_from(seqs: dict[str, list[str]], timestamps=None, **options):
    users = [u for u, row in seqs.items() for _ in row]
    items = [i for row in seqs.values() for i in row]
    raw = RawData(interactions=interactions_frame(users, items, timestamps))
    return build_dataset(raw, name="p", options=PrepareOptions(**options), source={})


@SETTINGS
@given(sequences)
def test_split_is_leave_one_out_and_every_long_user_is_kept(seqs):
    long_users = {u for u, row in seqs.items() if len(row) >= 3}
    if not long_users:
        return
    ds = build_from(seqs)
    assert set(ds.user_ids.tolist()) == long_users
    assert ds.metadata["counts"]["dropped_users"] == len([u for u, r in seqs.items() if r]) - len(
        long_users
    )
    assert ds.items.min() >= 1 and ds.items.max() == ds.n_items
    assert len(np.unique(ds.items)) == ds.n_items  # every item id in 1..N is used
    split = ds.split
    assert split.n_users == ds.n_users
    assert len(split.train_items) == ds.n_interactions - 2 * ds.n_users
    for u in range(ds.n_users):
        seq = ds.sequence(u)
        raw = [ds.item_ids[i - 1] for i in seq]
        assert raw == seqs[ds.user_ids[u]]  # file order kept
        assert split.train_sequence(u).tolist() == seq[:-2].tolist()
        assert split.valid_target[u] == seq[-2]
        assert split.test_target[u] == seq[-1]
        assert split.test_history(u).tolist() == seq[:-1].tolist()
        assert split.train_lengths[u] == len(seq) - 2
    # Targets never sit inside the training prefix positions.
    ends = ds.offsets[1:]
    positions = np.arange(ds.n_interactions)
    user_of = np.repeat(np.arange(ds.n_users), ds.lengths)
    in_train = positions < (ends[user_of] - 2)
    assert np.array_equal(ds.items[in_train], split.train_items)


def reference_core(pairs: list[tuple[str, str]], min_user: int, min_item: int) -> Counter:
    """Naive iterative k-core on a multiset of (user, item) rows."""
    rows = list(pairs)
    while True:
        users = Counter(u for u, _ in rows)
        items = Counter(i for _, i in rows)
        kept = [(u, i) for u, i in rows if users[u] >= min_user and items[i] >= min_item]
        if len(kept) == len(rows):
            return Counter(kept)
        rows = kept


@SETTINGS
@given(
    pairs=st.lists(
        st.tuples(st.integers(0, 12).map(str), st.integers(0, 12).map(str)),
        min_size=1,
        max_size=120,
    ),
    kcore_user=st.integers(0, 5),
    kcore_item=st.integers(0, 5),
    min_seq_len=st.integers(1, 5),
)
def test_kcore_result_is_the_maximal_core(pairs, kcore_user, kcore_item, min_seq_len):
    users, items = zip(*pairs, strict=True)
    raw = RawData(interactions=interactions_frame(list(users), list(items)))
    options = PrepareOptions(kcore_user=kcore_user, kcore_item=kcore_item, min_seq_len=min_seq_len)
    ds = build_dataset(raw, name="k", options=options, source={})
    got = Counter(
        (ds.user_ids[u], ds.item_ids[i - 1]) for u in range(ds.n_users) for i in ds.sequence(u)
    )
    min_user = max(kcore_user, min_seq_len)
    expected = reference_core(pairs, min_user, kcore_item)
    assert got == expected
    # The core property itself.
    if ds.n_interactions:
        assert ds.lengths.min() >= min_user
        assert np.bincount(ds.items)[1:].min() >= max(kcore_item, 1)
    assert ds.metadata["counts"]["interactions"] == sum(expected.values())
    assert ds.metadata["counts"]["dropped_interactions"] == len(pairs) - sum(expected.values())


@SETTINGS
@given(
    rows=st.lists(
        st.tuples(st.sampled_from("abc"), st.integers(0, 9).map(str), st.integers(0, 5)),
        min_size=1,
        max_size=40,
    )
)
def test_timestamp_order_is_stable(rows):
    users, items, times = zip(*rows, strict=True)
    raw = RawData(interactions=interactions_frame(list(users), list(items), list(times)))
    ds = build_dataset(raw, name="t", options=PrepareOptions(min_seq_len=1), source={})
    for u in range(ds.n_users):
        user = ds.user_ids[u]
        expected = [
            i for _, _, i in sorted((t, n, i) for n, (uu, i, t) in enumerate(rows) if uu == user)
        ]
        got = [ds.item_ids[i - 1] for i in ds.sequence(u)]
        assert got == expected
        stamps = ds.timestamps[ds.offsets[u] : ds.offsets[u + 1]]
        assert np.all(np.diff(stamps) >= 0)


@settings(max_examples=15, deadline=None)
@given(sequences)
def test_cache_round_trip(seqs):
    if not any(len(r) >= 3 for r in seqs.values()):
        return
    ds = build_from(seqs)
    with tempfile.TemporaryDirectory() as tmp:
        directory = cache_mod.save_dataset(ds, Path(tmp) / "x" / "dataset" / "k")
        back = cache_mod.load_dataset(directory)
    assert np.array_equal(back.items, ds.items) and np.array_equal(back.offsets, ds.offsets)
    assert back.user_ids.tolist() == ds.user_ids.tolist()
    assert back.item_ids.tolist() == ds.item_ids.tolist()
    assert back.item_text.equals(ds.item_text)


# ---------------------------------------------------------------- fast path == line-by-line path

token = st.integers(0, 30).map(str) | st.sampled_from(["007", "00", "-3"])
space = st.sampled_from([" ", "  ", "\t", " \t "])


@st.composite
def sequence_file_text(draw):
    users = draw(st.lists(st.integers(0, 50), min_size=1, max_size=8, unique=True))
    lines = []
    for u in users:
        items = draw(st.lists(token, min_size=1, max_size=6))
        parts = [str(u), *items]
        line = parts[0]
        for p in parts[1:]:
            line += draw(space) + p
        lines.append(draw(st.sampled_from(["", " "])) + line + draw(st.sampled_from(["", " "])))
        if draw(st.booleans()):
            lines.append("")
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    return (
        draw(st.sampled_from(["", "\ufeff"]))
        + ending.join(lines)
        + draw(st.sampled_from(["", ending]))
    )


@settings(max_examples=60, deadline=None)
@given(sequence_file_text(), st.booleans())
def test_fast_sequence_parser_matches_line_parser(text, numeric):
    from llmseqrec.data.readers import sequence as seq_reader

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.txt"
        path.write_bytes(text.encode("utf-8"))
        fast = seq_reader.parse_sequence_file(path, numeric=numeric)
        slow = seq_reader._parse_sequence_file_lines(path, numeric=numeric)
    assert fast.equals(slow)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.tuples(token, token, st.integers(0, 10**10)), min_size=1, max_size=20),
    sep=st.sampled_from(["::", "\t"]),
)
def test_fast_ratings_parser_matches_line_parser(rows, sep):
    from llmseqrec.data.readers import movielens

    text = "".join(f"{u}{sep}{i}{sep}5{sep}{t}\n" for u, i, t in rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("u.data" if sep == "\t" else "ratings.dat")
        path.write_text(text)
        fast = movielens._read_ratings(path, sep)
        slow = movielens._read_ratings_lines(path, sep)
    assert fast.equals(slow)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.tuples(token, token, st.integers(0, 10**6)), min_size=1, max_size=20),
    with_time=st.booleans(),
    numeric=st.booleans(),
)
def test_fast_pairs_parser_matches_line_parser(rows, with_time, numeric):
    from llmseqrec.data.readers import pairs
    from llmseqrec.data.readers.spec import SourceSpec

    text = "".join(f"{u} {i} {t}\n" if with_time else f"{u} {i}\n" for u, i, t in rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.txt"
        path.write_text(text)
        spec = SourceSpec(format="pairs", path=path, numeric_ids=numeric)
        fast = pairs.read(spec).interactions
        slow = pairs._read_pair_lines(path, spec)
    assert fast.equals(slow)
