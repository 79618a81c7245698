"""Every reader on small handmade files written in exactly the real schemas."""

from __future__ import annotations

import gzip
import json

import numpy as np
import polars as pl
from data_helpers import write


def seqs(ds) -> dict[str, list[str]]:
    """Raw user id -> raw item ids in dataset order."""
    return {
        str(ds.user_ids[u]): [str(ds.item_ids[i - 1]) for i in ds.sequence(u)]
        for u in range(ds.n_users)
    }


def text_of(ds, raw_item: str, field: str):
    row = ds.item_text.filter(pl.col("raw_id") == raw_item)
    assert row.height == 1
    return row[field][0]


# ---------------------------------------------------------------- MovieLens

MOVIES_DAT = (
    "1::Toy Story (1995)::Animation|Children's|Comedy\n"
    "2::Jumanji (1995)::Adventure|Children's|Fantasy\n"
    "3::Metisse (Café au Lait) (1993)::Comedy\n"
    "4::Misérables, Les (1995)::Drama|Musical\n"
    "5::Unrated Movie (2000)::Drama\n"
)


def test_movielens_ratings_dat_latin1_titles_and_time_order(tmp_path, run):
    folder = tmp_path / "ml-1m"
    # UserID::MovieID::Rating::Timestamp, deliberately not in time order within a user.
    write(
        folder / "ratings.dat",
        "1::3::5::300\n1::1::4::100\n1::2::3::200\n"
        "2::4::5::50\n2::1::1::10\n2::3::2::30\n2::2::2::20\n",
    )
    write(folder / "movies.dat", MOVIES_DAT, encoding="latin-1")
    ds = run("movielens", folder)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 4, 7)
    assert seqs(ds) == {"1": ["1", "2", "3"], "2": ["1", "2", "3", "4"]}
    assert ds.timestamps.tolist() == [100, 200, 300, 10, 20, 30, 50]
    assert text_of(ds, "3", "title") == "Metisse (Café au Lait) (1993)"
    assert text_of(ds, "4", "title") == "Misérables, Les (1995)"
    assert text_of(ds, "1", "categories").to_list() == ["Animation", "Children's", "Comedy"]
    # Movie 5 has metadata but no ratings: counted, not fatal.
    assert ds.metadata["text"]["unmatched_text_ids"] == 1
    assert ds.metadata["ordered_by"] == "timestamp"
    assert ds.metadata["has_timestamps"] is True


def test_movielens_u_data_and_u_item(tmp_path, run):
    folder = tmp_path / "ml-100k"
    write(
        folder / "u.data",
        "196\t242\t3\t881250949\n196\t302\t3\t881250950\n196\t377\t1\t881250948\n"
        "22\t242\t1\t878887116\n22\t377\t4\t878887117\n22\t302\t2\t878887115\n",
    )
    flags_none = "|".join(["0"] * 19)
    flags_comedy = "|".join("1" if i == 5 else "0" for i in range(19))
    write(
        folder / "u.item",
        f"242|Kolya (1996)|24-Jan-1997||http://us.imdb.com/M/title-exact?Kolya%20(1996)|{flags_comedy}\n"
        f"302|L.A. Confidential (1997)|01-Jan-1997||http://us.imdb.com/x|{flags_none}\n"
        f"377|Misérables, Les (1995)|||http://us.imdb.com/y|{flags_comedy}\n",
        encoding="latin-1",
    )
    ds = run("movielens", folder)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 3, 6)
    # Numeric ids keep numeric order: user 22 before 196.
    assert ds.user_ids.tolist() == ["22", "196"]
    assert seqs(ds) == {"22": ["302", "242", "377"], "196": ["377", "242", "302"]}
    assert text_of(ds, "377", "title") == "Misérables, Les (1995)"
    assert text_of(ds, "242", "categories").to_list() == ["Comedy"]
    assert text_of(ds, "302", "categories").to_list() == []
    assert text_of(ds, "242", "release_date") == "24-Jan-1997"
    assert text_of(ds, "377", "release_date") is None


def test_movielens_sequence_file_joined_with_movies_dat(tmp_path, run):
    folder = tmp_path / "ml-1m"
    write(folder / "derived_user_sequences_original_ids.txt", "1 3 1 2\n2 4 2 1 3\n")
    write(folder / "movies.dat", MOVIES_DAT, encoding="latin-1")
    ds = run("movielens", folder)
    assert seqs(ds) == {"1": ["3", "1", "2"], "2": ["4", "2", "1", "3"]}
    assert ds.metadata["ordered_by"] == "file order"
    assert ds.timestamps is None
    assert text_of(ds, "3", "title") == "Metisse (Café au Lait) (1993)"
    # Items keep numeric order of their MovieLens ids.
    assert ds.item_ids.tolist() == ["1", "2", "3", "4"]


def test_movielens_file_path_and_explicit_meta(tmp_path, run):
    write(tmp_path / "r" / "ratings.dat", "7::2::5::2\n7::1::5::1\n7::4::5::3\n")
    write(tmp_path / "m" / "movies.dat", MOVIES_DAT, encoding="latin-1")
    ds = run("movielens", tmp_path / "r" / "ratings.dat", meta=tmp_path / "m" / "movies.dat")
    assert seqs(ds) == {"7": ["1", "2", "4"]}
    assert text_of(ds, "4", "title") == "Misérables, Les (1995)"


# ---------------------------------------------------------------- sequence files


def test_sequence_file_with_title_and_attribute_tables(tmp_path, run):
    folder = tmp_path / "beauty"
    write(folder / "Beauty.txt", "1 1 2 3 4 5\n2 6 7 8 9 10 4 11\n3 4 2 1\n")
    write(
        folder / "derived_item_titles.tsv",
        "item_id\tasin\ttitle\n"
        + "".join(f"{i}\tB00{i:04d}\tProduct {i}\n" for i in range(1, 12))
        + "99\tB0099\tNot in the interactions\n",
    )
    write(
        folder / "derived_item_attributes.tsv",
        "item_id\tasin\tattributes\n1\tB000001\tOPI | Makeup | Nails | Nail Polish\n2\tB000002\tNYX\n",
    )
    ds = run(
        "sequence",
        folder / "Beauty.txt",
        item_text=[folder / "derived_item_titles.tsv", folder / "derived_item_attributes.tsv"],
        text_fields={"attributes": "brand+categories"},
    )
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (3, 11, 15)
    # File order is kept and ids 1..N stay unchanged.
    assert ds.sequence(0).tolist() == [1, 2, 3, 4, 5]
    assert ds.sequence(1).tolist() == [6, 7, 8, 9, 10, 4, 11]
    assert ds.sequence(2).tolist() == [4, 2, 1]
    assert text_of(ds, "7", "title") == "Product 7"
    assert text_of(ds, "7", "asin") == "B000007"
    assert text_of(ds, "1", "brand") == "OPI"
    assert text_of(ds, "1", "categories").to_list() == ["Makeup", "Nails", "Nail Polish"]
    assert text_of(ds, "2", "brand") == "NYX"
    assert text_of(ds, "2", "categories").to_list() == []
    assert text_of(ds, "3", "brand") is None
    assert text_of(ds, "3", "description") is None
    assert ds.metadata["text"]["unmatched_text_ids"] == 1
    assert any("1 item text rows" in w for w in ds.metadata["warnings"])
    split = ds.split
    assert split.train_sequence(0).tolist() == [1, 2, 3]
    assert (split.valid_target[0], split.test_target[0]) == (4, 5)


def test_sequence_file_with_names_and_json_categories(tmp_path, run):
    folder = tmp_path / "yelp"
    write(folder / "Yelp.txt", "1 1 2 3 2\n2 3 1 2\n")
    write(
        folder / "derived_item_names.tsv",
        "item_id\tbusiness_id\tname\n1\tabc\tThe Great Greek\n2\tdef\tSal's Pizza\n3\tghi\tCafé Zoë\n",
    )
    write(
        folder / "closed_categories.json",
        json.dumps({"2": ["Restaurants", "Pizza"], "1": ["Restaurants", "Greek"], "77": ["Bars"]}),
    )
    ds = run(
        "sequence",
        folder / "Yelp.txt",
        item_text=[folder / "derived_item_names.tsv", folder / "closed_categories.json"],
    )
    # Repeated items inside a sequence are kept.
    assert seqs(ds) == {"1": ["1", "2", "3", "2"], "2": ["3", "1", "2"]}
    assert text_of(ds, "3", "title") == "Café Zoë"
    assert text_of(ds, "3", "business_id") == "ghi"
    assert text_of(ds, "2", "categories").to_list() == ["Restaurants", "Pizza"]
    assert text_of(ds, "3", "categories") is None
    assert ds.metadata["text"]["unmatched_text_ids"] == 1


def test_sequence_table_with_columns_and_id_name_file(tmp_path, run):
    folder = tmp_path / "lastfm"
    write(
        folder / "derived_user_sequences.tsv",
        "split\tuser_idx\titem_ids (LLaRA sequence order, space-separated)\n"
        "train\t0\t0 1 2 3\ntrain\t1\t4 0 2\ntest\t2\t3 4 1 0\n",
    )
    write(folder / "id2name.txt", "0::Morcheeba\n1::Enigma\n2::Café Del Mar\n3::A::B\n4::Nena\n")
    ds = run(
        "sequence",
        folder / "derived_user_sequences.tsv",
        item_text=[folder / "id2name.txt"],
        columns={"user": "user_idx", "items": "item_ids"},
    )
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (3, 5, 11)
    # Raw item 0 is a real item: it becomes internal 1 (0 stays padding).
    assert ds.item_ids.tolist() == ["0", "1", "2", "3", "4"]
    assert ds.sequence(0).tolist() == [1, 2, 3, 4]
    assert ds.items.min() >= 1
    assert text_of(ds, "2", "title") == "Café Del Mar"
    assert text_of(ds, "3", "title") == "A::B"


def test_sequence_file_non_numeric_ids(tmp_path, run):
    path = write(tmp_path / "s.txt", "alice x y z\nbob z y x w\n")
    ds = run("sequence", path, numeric_ids=False)
    assert seqs(ds) == {"alice": ["x", "y", "z"], "bob": ["z", "y", "x", "w"]}
    # Non-integer ids are numbered in order of first appearance.
    assert ds.item_ids.tolist() == ["x", "y", "z", "w"]


def test_sequence_directory_with_one_txt(tmp_path, run):
    write(tmp_path / "d" / "Data.txt", "1 1 2 3\n")
    assert run("sequence", tmp_path / "d").n_interactions == 3


def test_text_table_handles_crlf_and_bom(tmp_path, run):
    path = write(tmp_path / "s.txt", "\ufeff1 1 2 3\r\n2 3 2 1\r\n")
    titles = write(tmp_path / "t.tsv", "\ufeffitem_id\ttitle\r\n1\tOne\r\n2\tTwo\r\n")
    ds = run("sequence", path, item_text=[titles])
    assert seqs(ds) == {"1": ["1", "2", "3"], "2": ["3", "2", "1"]}
    assert text_of(ds, "2", "title") == "Two"


# ---------------------------------------------------------------- pairs


def test_pairs_file_keeps_line_order(tmp_path, run):
    path = write(tmp_path / "Office.txt", "1 1\n1 2\n1 3\n2 3\n2 1\n2 4\n1 4\n")
    ds = run("pairs", path)
    assert seqs(ds) == {"1": ["1", "2", "3", "4"], "2": ["3", "1", "4"]}
    assert ds.timestamps is None


def test_pairs_file_with_timestamps(tmp_path, run):
    path = write(tmp_path / "p.txt", "1 1 30\n1 2 10\n1 3 20\n")
    ds = run("pairs", path)
    assert seqs(ds) == {"1": ["2", "3", "1"]}
    assert ds.timestamps.tolist() == [10, 20, 30]


# ---------------------------------------------------------------- ReChorus


def test_rechorus_train_dev_test_with_asin_text(tmp_path, run):
    folder = tmp_path / "office"
    write(
        folder / "train.csv",
        "user_id\titem_id\ttime\n1\t1\t100\n1\t2\t200\n2\t3\t100\n2\t1\t100\n",
    )
    negs = "[5, 6, 7]"
    write(
        folder / "dev.csv",
        f"user_id\titem_id\ttime\tneg_items\n1\t3\t300\t{negs}\n2\t2\t150\t{negs}\n",
    )
    write(
        folder / "test.csv",
        f"user_id\titem_id\ttime\tneg_items\n1\t4\t300\t{negs}\n2\t4\t160\t{negs}\n",
    )
    write(
        folder / "Office.text",
        "id\ttext\nB0000AG93P\tHP 78 Tri-Color Printer Cartridge HP\n"
        "B00004VVIX\tBrother PT-65 Labeler Brother\nB000059RDW\tCafé Pens\nBZZZ\tnot indexed\n",
    )
    write(
        folder / "Office.item2index", "B0000AG93P\t1\nB00004VVIX\t2\nB000059RDW\t3\nB0XXXXXXXX\t4\n"
    )
    ds = run("rechorus", folder)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 4, 8)
    # Time order; equal times keep file order (train before dev before test).
    assert seqs(ds) == {"1": ["1", "2", "3", "4"], "2": ["3", "1", "2", "4"]}
    assert text_of(ds, "1", "title") == "HP 78 Tri-Color Printer Cartridge HP"
    assert text_of(ds, "3", "title") == "Café Pens"
    assert text_of(ds, "3", "asin") == "B000059RDW"
    assert text_of(ds, "4", "title") is None


# ---------------------------------------------------------------- Amazon

REVIEWS_2014 = [
    {"reviewerID": "A2SUAM1J3GNN3B", "asin": "0000013714", "reviewerName": "J. McDonald",
     "helpful": [2, 3], "reviewText": "I bought this for my husband...", "overall": 5.0,
     "summary": "Heavenly Highway Hymns", "unixReviewTime": 1252800000, "reviewTime": "09 13, 2009"},
    {"reviewerID": "A2SUAM1J3GNN3B", "asin": "B000GHOST1", "overall": 4.0, "unixReviewTime": 1252700000},
    {"reviewerID": "A2SUAM1J3GNN3B", "asin": "0000031852", "overall": 3.0, "unixReviewTime": 1252900000},
    {"reviewerID": "AXXXX", "asin": "0000031852", "overall": 3.0, "unixReviewTime": 1},
    {"reviewerID": "AXXXX", "asin": "0000013714", "overall": 3.0, "unixReviewTime": 2},
    {"reviewerID": "AXXXX", "asin": "B000GHOST1", "overall": 3.0, "unixReviewTime": 3},
]  # fmt: skip

META_2014_LINES = [
    # The 2014 dump is Python literals (single quotes), not JSON.
    "{'asin': '0000031852', 'title': 'Girls Ballet Tutu Zebra Hot Pink', 'price': 3.17, "
    "'imUrl': 'http://ecx.images-amazon.com/images/I/51fAmVkTbyL._SY300_.jpg', "
    "'related': {'also_bought': ['B00JHONN1S']}, 'salesRank': {'Toys & Games': 211836}, "
    "'brand': 'Coxlures', 'categories': [['Sports & Outdoors', 'Other Sports', 'Dance'], "
    "['Clothing', 'Girls', 'Dance']]}",
    "{'asin': '0000013714', 'description': \"It's a Café hymnal\", 'categories': [['Books']]}",
]


def test_amazon_2014_reviews_and_python_literal_meta(tmp_path, run):
    folder = tmp_path / "amazon"
    write(folder / "reviews_Clothing_5.json", "\n".join(json.dumps(r) for r in REVIEWS_2014) + "\n")
    write(folder / "meta_Clothing.json", "\n".join(META_2014_LINES) + "\n")
    ds = run("amazon", folder)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 3, 6)
    assert seqs(ds) == {
        "A2SUAM1J3GNN3B": ["B000GHOST1", "0000013714", "0000031852"],
        "AXXXX": ["0000031852", "0000013714", "B000GHOST1"],
    }
    assert text_of(ds, "0000031852", "title") == "Girls Ballet Tutu Zebra Hot Pink"
    assert text_of(ds, "0000031852", "brand") == "Coxlures"
    assert text_of(ds, "0000031852", "categories").to_list() == [
        "Sports & Outdoors", "Other Sports", "Dance", "Clothing", "Girls",
    ]  # fmt: skip
    assert text_of(ds, "0000013714", "description") == "It's a Café hymnal"
    assert text_of(ds, "0000013714", "title") is None
    assert text_of(ds, "B000GHOST1", "title") is None


def test_amazon_2018_gzip_json_meta(tmp_path, run):
    folder = tmp_path / "amazon18"
    reviews = [
        {"overall": 5.0, "verified": True, "reviewTime": "09 1, 2016", "reviewerID": "U1",
         "asin": "B1", "style": {"Size:": " Medium"}, "unixReviewTime": 1472688000},
        {"overall": 4.0, "reviewerID": "U1", "asin": "B2", "unixReviewTime": 1472688001},
        {"overall": 4.0, "reviewerID": "U1", "asin": "B3", "unixReviewTime": 1472688002},
    ]  # fmt: skip
    meta = [
        {"asin": "B1", "title": "Crème Brûlée Kit", "brand": "Acme", "category": ["Home", "Kitchen"],
         "description": ["Line one.", "Line two."], "also_buy": [], "price": "$9.99"},
        {"asin": "B2", "title": "", "brand": "", "category": [], "description": []},
    ]  # fmt: skip
    with gzip.open(folder / "Clothing_5.json.gz" if folder.mkdir() is None else None, "wt") as fh:
        fh.write("\n".join(json.dumps(r) for r in reviews) + "\n")
    with gzip.open(folder / "meta_Clothing.json.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(json.dumps(m, ensure_ascii=False) for m in meta) + "\n")
    ds = run("amazon", folder)
    assert seqs(ds) == {"U1": ["B1", "B2", "B3"]}
    assert text_of(ds, "B1", "title") == "Crème Brûlée Kit"
    assert text_of(ds, "B1", "categories").to_list() == ["Home", "Kitchen"]
    assert text_of(ds, "B1", "description") == "Line one. Line two."
    # Empty strings and lists are absent values, not empty text.
    assert text_of(ds, "B2", "title") is None
    assert text_of(ds, "B2", "brand") is None


def test_amazon_meta_never_evaluates_code(tmp_path, run):
    """A metadata line with an expression is rejected, never executed."""
    folder = tmp_path / "amazon"
    marker = tmp_path / "pwned"
    write(folder / "reviews_X.json", "\n".join(json.dumps(r) for r in REVIEWS_2014) + "\n")
    write(
        folder / "meta_X.json",
        META_2014_LINES[0] + "\n" + f"__import__('pathlib').Path({str(marker)!r}).touch()\n",
    )
    import pytest

    from llmseqrec.errors import DataFormatError

    with pytest.raises(
        DataFormatError, match=r"meta_X\.json, line 2: .*neither JSON nor a Python literal"
    ):
        run("amazon", folder)
    assert not marker.exists()


# ---------------------------------------------------------------- RecBole


def test_recbole_atomic_files_with_typed_headers(tmp_path, run):
    folder = tmp_path / "ml-100k"
    write(
        folder / "ml-100k.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "196\t242\t3\t881250949\n196\t302\t3\t881250948\n196\t377\t1\t881250950\n",
    )
    write(
        folder / "ml-100k.item",
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "242\tKolya\t1996\tComedy\n302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery Thriller\n",
    )
    ds = run("recbole", folder)
    assert seqs(ds) == {"196": ["302", "242", "377"]}
    assert text_of(ds, "242", "title") == "Kolya"
    assert text_of(ds, "302", "categories").to_list() == [
        "Crime",
        "Film-Noir",
        "Mystery",
        "Thriller",
    ]
    assert text_of(ds, "242", "release_year") == "1996"
    assert text_of(ds, "377", "title") is None


def test_recbole_amazon_style_item_file(tmp_path, run):
    folder = tmp_path / "beauty"
    write(
        folder / "Amazon_Beauty.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "A1\tB1\t5\t3\nA1\tB2\t5\t1\nA1\tB3\t5\t2\n",
    )
    write(
        folder / "Amazon_Beauty.item",
        "item_id:token\ttitle:token\tsales_rank:float\tcategories:token_seq\tbrand:token\n"
        "B1\tRose Water\t12.0\tBeauty Skin_Care\tThayers\n",
    )
    ds = run("recbole", folder)
    assert seqs(ds) == {"A1": ["B2", "B3", "B1"]}
    assert text_of(ds, "B1", "title") == "Rose Water"
    assert text_of(ds, "B1", "brand") == "Thayers"
    assert text_of(ds, "B1", "categories").to_list() == ["Beauty", "Skin_Care"]


# ---------------------------------------------------------------- generic tables


def test_table_csv_with_column_mapping_and_text_columns(tmp_path, run):
    path = write(
        tmp_path / "events.csv",
        'uid,iid,ts,name,genre\nu1,i1,3,"Café, The",Drama|Comedy\nu1,i2,1,Two,Drama\n'
        'u1,i3,2,Three,\nu2,i1,5,"Café, The",Drama|Comedy\nu2,i2,4,Two,Drama\nu2,i3,6,Three,\n',
    )
    ds = run(
        "table",
        path,
        columns={
            "user": "uid",
            "item": "iid",
            "timestamp": "ts",
            "title": "name",
            "categories": "genre",
        },
    )
    assert seqs(ds) == {"u1": ["i2", "i3", "i1"], "u2": ["i2", "i1", "i3"]}
    assert text_of(ds, "i1", "title") == "Café, The"
    assert text_of(ds, "i1", "categories").to_list() == ["Drama", "Comedy"]


def test_table_detects_timestamp_column_by_default(tmp_path, run):
    path = write(
        tmp_path / "events.tsv",
        "user_id\titem_id\ttimestamp\n1\t10\t30\n1\t11\t10\n1\t12\t20\n",
    )
    ds = run("table", path)
    assert seqs(ds) == {"1": ["11", "12", "10"]}
    assert ds.metadata["ordered_by"] == "timestamp"


def test_table_parquet(tmp_path, run):
    path = tmp_path / "events.parquet"
    pl.DataFrame(
        {"user_id": [5, 5, 5, 6, 6, 6], "item_id": [1, 2, 3, 3, 2, 1], "t": [3, 2, 1, 1, 2, 3]}
    ).write_parquet(path)
    ds = run("table", path, columns={"timestamp": "t"})
    assert seqs(ds) == {"5": ["3", "2", "1"], "6": ["3", "2", "1"]}
    assert np.array_equal(ds.timestamps, [1, 2, 3, 1, 2, 3])


def test_table_order_column(tmp_path, run):
    path = write(tmp_path / "e.csv", "user_id,item_id,pos\na,x,2\na,y,0\na,z,1\n")
    ds = run("table", path, columns={"order": "pos"})
    assert seqs(ds) == {"a": ["y", "z", "x"]}
