"""Bad input ends in one DataFormatError naming file and line or field; nothing is cached."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from data_helpers import leftovers, write

from llmseqrec.data.prepare import prepare
from llmseqrec.data.readers.spec import SourceSpec
from llmseqrec.errors import DataFormatError, LlmSeqRecError


def fails(cache: Path, fmt: str, path: Path, **fields) -> DataFormatError:
    with pytest.raises(DataFormatError) as info:
        prepare(SourceSpec(format=fmt, path=path, **fields), "bad", cache=cache)
    err = info.value
    message = str(err)
    assert "\n" not in message, message
    assert isinstance(err, LlmSeqRecError)
    assert leftovers(cache) == [], "a failed prepare must leave nothing in the cache"
    return err


# ---------------------------------------------------------------- missing path / empty file


def test_missing_path(tmp_path, cache):
    err = fails(cache, "sequence", tmp_path / "nope" / "Beauty.txt")
    assert err.path.endswith("Beauty.txt")
    assert "not found" in str(err)


@pytest.mark.parametrize("fmt", ["movielens", "rechorus", "amazon", "recbole", "table", "pairs"])
def test_missing_path_every_format(tmp_path, cache, fmt):
    err = fails(cache, fmt, tmp_path / "absent")
    assert "absent" in str(err) and "not found" in str(err)


def test_missing_item_text_file(tmp_path, cache):
    seq = write(tmp_path / "s.txt", "1 1 2 3\n")
    err = fails(cache, "sequence", seq, item_text=[tmp_path / "titles.tsv"])
    assert err.path.endswith("titles.tsv")
    assert "not found" in str(err)


@pytest.mark.parametrize(
    "fmt,name",
    [
        ("sequence", "Beauty.txt"),
        ("pairs", "Office.txt"),
        ("movielens", "u.data"),
        ("movielens", "ratings.dat"),
    ],
)
def test_empty_file(tmp_path, cache, fmt, name):
    path = write(tmp_path / name, "")
    err = fails(cache, fmt, path)
    assert err.path.endswith(name)
    assert "empty" in str(err)


def test_empty_rechorus_train(tmp_path, cache):
    write(tmp_path / "train.csv", "")
    err = fails(cache, "rechorus", tmp_path)
    assert err.path.endswith("train.csv") and "empty" in str(err)


def test_blank_lines_only(tmp_path, cache):
    path = write(tmp_path / "s.txt", "\n  \n\n")
    err = fails(cache, "sequence", path)
    assert err.path.endswith("s.txt")
    assert "no interactions" in str(err)


def test_empty_text_table(tmp_path, cache):
    seq = write(tmp_path / "s.txt", "1 1 2 3\n")
    titles = write(tmp_path / "titles.tsv", "")
    err = fails(cache, "sequence", seq, item_text=[titles])
    assert err.path.endswith("titles.tsv") and "empty" in str(err)


def test_too_short_sequences(tmp_path, cache):
    path = write(tmp_path / "s.txt", "1 1 2\n2 3\n")
    err = fails(cache, "sequence", path)
    assert "at least 3 items" in str(err)


# ---------------------------------------------------------------- non-integer ids


@pytest.mark.parametrize("token", ["x7", "1.5", "--5", "²", "٣", "1e3"])
def test_non_integer_item_in_sequence_file(tmp_path, cache, token):
    path = write(tmp_path / "Beauty.txt", f"1 1 2 3\n2 4 {token} 6\n")
    err = fails(cache, "sequence", path)
    assert (err.line, err.field) == (2, "item 2")
    assert "Beauty.txt, line 2, field 'item 2'" in str(err)
    assert "integer" in str(err)


def test_non_integer_user_in_u_data(tmp_path, cache):
    path = write(tmp_path / "u.data", "1\t1\t5\t10\nabc\t2\t5\t11\n")
    err = fails(cache, "movielens", path)
    assert "u.data, line 2, field 'user'" in str(err)


def test_non_integer_timestamp_in_ratings_dat(tmp_path, cache):
    path = write(tmp_path / "ratings.dat", "1::1::5::10\n1::2::5::11\n1::3::5::yesterday\n")
    err = fails(cache, "movielens", path)
    assert "ratings.dat, line 3, field 'timestamp'" in str(err)


def test_non_integer_id_in_rechorus(tmp_path, cache):
    write(tmp_path / "train.csv", "user_id\titem_id\ttime\n1\t1\t10\n1\tB00X\t11\n")
    err = fails(cache, "rechorus", tmp_path)
    assert "train.csv, line 3, field 'item_id'" in str(err)


def test_non_integer_id_in_pairs(tmp_path, cache):
    path = write(tmp_path / "Office.txt", "1 1\n1 2\n1 x\n")
    err = fails(cache, "pairs", path)
    assert "Office.txt, line 3, field 'item'" in str(err)


def test_non_integer_id_in_movies_dat(tmp_path, cache):
    write(tmp_path / "u.data", "1\t1\t5\t10\n1\t2\t5\t11\n1\t3\t5\t12\n")
    write(
        tmp_path / "u.item", "one|Toy Story (1995)|01-Jan-1995||url|" + "|".join(["0"] * 19) + "\n"
    )
    err = fails(cache, "movielens", tmp_path)
    assert "u.item, line 1, field 'movie id'" in str(err)


# ---------------------------------------------------------------- wrong separator


def test_wrong_separator_ratings_dat(tmp_path, cache):
    path = write(tmp_path / "ratings.dat", "1\t1\t5\t978300760\n")
    err = fails(cache, "movielens", path)
    assert "ratings.dat, line 1" in str(err) and "wrong separator" in str(err)


def test_wrong_separator_u_data(tmp_path, cache):
    path = write(tmp_path / "u.data", "196,242,3,881250949\n")
    err = fails(cache, "movielens", path)
    assert "u.data, line 1" in str(err) and "wrong separator" in str(err)


def test_wrong_separator_sequence_file(tmp_path, cache):
    path = write(tmp_path / "Beauty.txt", "1,1,2,3\n")
    err = fails(cache, "sequence", path)
    assert "Beauty.txt, line 1" in str(err) and "wrong separator" in str(err)


def test_wrong_separator_pairs(tmp_path, cache):
    path = write(tmp_path / "Office.txt", "1;1\n")
    err = fails(cache, "pairs", path)
    assert "Office.txt, line 1" in str(err) and "wrong separator" in str(err)


def test_wrong_separator_rechorus(tmp_path, cache):
    write(tmp_path / "train.csv", "user_id,item_id,time\n1,1,10\n")
    err = fails(cache, "rechorus", tmp_path)
    assert "train.csv, field 'user_id'" in str(err) and "wrong separator" in str(err)


def test_wrong_separator_item2index(tmp_path, cache):
    write(tmp_path / "train.csv", "user_id\titem_id\ttime\n1\t1\t10\n1\t2\t11\n1\t3\t12\n")
    write(tmp_path / "Office.text", "id\ttext\nA1\tPen\n")
    write(tmp_path / "Office.item2index", "A1 1\n")
    err = fails(cache, "rechorus", tmp_path)
    assert "Office.item2index, line 1" in str(err)
    assert "wrong separator" in str(err)


def test_wrong_separator_recbole(tmp_path, cache):
    write(tmp_path / "x.inter", "user_id:token,item_id:token\n1,2\n")
    err = fails(cache, "recbole", tmp_path)
    assert "x.inter, line 1" in str(err) and "wrong separator" in str(err)


# ---------------------------------------------------------------- missing required column


def test_missing_column_rechorus(tmp_path, cache):
    write(tmp_path / "train.csv", "user_id\titem_id\n1\t1\n")
    err = fails(cache, "rechorus", tmp_path)
    assert "train.csv, field 'time'" in str(err) and "required column" in str(err)


def test_missing_column_table(tmp_path, cache):
    path = write(tmp_path / "events.csv", "user,item_id\n1,2\n")
    err = fails(cache, "table", path)
    assert "events.csv, field 'user_id'" in str(err)
    assert "user, item_id" in str(err)  # the columns that do exist


def test_missing_mapped_column_table(tmp_path, cache):
    path = write(tmp_path / "events.csv", "user_id,item_id\n1,2\n")
    err = fails(cache, "table", path, columns={"timestamp": "ts"})
    assert "events.csv, field 'ts'" in str(err)


def test_missing_column_sequence_table(tmp_path, cache):
    path = write(tmp_path / "seqs.tsv", "split\tuser\titems\ntrain\t0\t1 2 3\n")
    err = fails(cache, "sequence", path, columns={"user": "user_idx", "items": "items"})
    assert "seqs.tsv, field 'user_idx'" in str(err)


def test_missing_field_amazon_review(tmp_path, cache):
    path = write(
        tmp_path / "reviews_X.json",
        json.dumps({"reviewerID": "A", "asin": "B", "unixReviewTime": 1}) + "\n"
        + json.dumps({"reviewerID": "A", "unixReviewTime": 2}) + "\n",
    )  # fmt: skip
    err = fails(cache, "amazon", path)
    assert "reviews_X.json, line 2, field 'asin'" in str(err)


def test_bad_timestamp_in_table(tmp_path, cache):
    path = write(tmp_path / "e.csv", "user_id,item_id,timestamp\n1,2,2020-01-01\n1,3,soon\n")
    err = fails(cache, "table", path)
    assert "e.csv, line 3, field 'timestamp'" in str(err)


# ---------------------------------------------------------------- metadata line


def test_meta_line_neither_json_nor_literal(tmp_path, cache):
    write(
        tmp_path / "reviews_X.json",
        "\n".join(
            json.dumps({"reviewerID": "A", "asin": a, "unixReviewTime": t})
            for t, a in enumerate("xyz")
        ),
    )
    write(
        tmp_path / "meta_X.json",
        "{'asin': 'x', 'title': 'fine'}\n{\"asin\": \"y\"}\n{'asin': 'z', 'title': broken\n",
    )
    err = fails(cache, "amazon", tmp_path)
    assert "meta_X.json, line 3" in str(err)
    assert "neither JSON nor a Python literal" in str(err)


def test_review_line_that_is_not_an_object(tmp_path, cache):
    path = write(tmp_path / "reviews_X.json", '["A", "B", 1]\n')
    err = fails(cache, "amazon", path)
    assert "reviews_X.json, line 1" in str(err)


def test_invalid_categories_json(tmp_path, cache):
    seq = write(tmp_path / "s.txt", "1 1 2 3\n")
    cats = write(tmp_path / "cats.json", '{"1": ["A"],\n "2": [B]}\n')
    err = fails(cache, "sequence", seq, item_text=[cats])
    assert "cats.json, line 2" in str(err)


# ---------------------------------------------------------------- user twice


def test_user_listed_twice_in_sequence_file(tmp_path, cache):
    path = write(tmp_path / "Beauty.txt", "1 1 2 3\n2 3 4 5\n1 6 7 8\n")
    err = fails(cache, "sequence", path)
    assert "Beauty.txt, line 3" in str(err)
    assert "user 1 is listed twice (first on line 1)" in str(err)


def test_user_listed_twice_in_sequence_table(tmp_path, cache):
    path = write(tmp_path / "seqs.tsv", "user\titems\n0\t1 2 3\n1\t2 3 4\n0\t5 6 7\n")
    err = fails(cache, "sequence", path, columns={"user": "user", "items": "items"})
    assert "seqs.tsv, line 4" in str(err) and "twice" in str(err)


# ---------------------------------------------------------------- encoding


def test_latin1_bytes_in_utf8_text_table(tmp_path, cache):
    seq = write(tmp_path / "s.txt", "1 1 2 3\n")
    titles = write(tmp_path / "titles.tsv", "item_id\ttitle\n1\tCafé\n", encoding="latin-1")
    err = fails(cache, "sequence", seq, item_text=[titles])
    assert "titles.tsv" in str(err) and "utf-8" in str(err)


# ---------------------------------------------------------------- unknown text ids: warn only


def test_text_table_with_unknown_ids_warns_with_count(tmp_path, cache, caplog):
    seq = write(tmp_path / "s.txt", "1 1 2 3\n")
    titles = write(
        tmp_path / "titles.tsv", "item_id\ttitle\n1\tOne\n40\tForty\n41\tForty-one\n42\tForty-two\n"
    )
    with caplog.at_level(logging.WARNING):
        ds = prepare(SourceSpec(format="sequence", path=seq, item_text=[titles]), "t", cache=cache)
    assert ds.n_items == 3
    assert ds.metadata["text"]["unmatched_text_ids"] == 3
    assert any("3 item text rows" in w for w in ds.metadata["warnings"])
    assert "3 item text rows" in caplog.text
    assert ds.item_text["title"].to_list() == ["One", None, None]


def test_latin1_bytes_in_categories_json(tmp_path, cache):
    seq = write(tmp_path / "s.txt", "1 1 2 3\n")
    cats = write(tmp_path / "cats.json", '{"1": ["Café"]}', encoding="latin-1")
    err = fails(cache, "sequence", seq, item_text=[cats])
    assert "cats.json" in str(err) and "utf-8" in str(err)
