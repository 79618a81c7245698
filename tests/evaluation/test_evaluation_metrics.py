"""Metrics against hand-computed rankings, ties, masking, sampled negatives, groups, tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from llmseqrec.evaluation.config import EvalConfig
from llmseqrec.evaluation.groups import item_popularity_groups, user_length_groups
from llmseqrec.evaluation.metrics import metrics_from_ranks, per_user_metric, rank_of_target
from llmseqrec.evaluation.ranking import eval_histories, rank_users, sample_negatives
from llmseqrec.evaluation.significance import (
    paired_seed_test,
    paired_user_test,
    same_seed_difference,
    versus_same_seeds,
)


def test_rank_of_target_hand_computed_with_ties():
    scores = np.array(
        [
            [0.1, 0.9, 0.5, 0.3],  # target col 2 (0.5): one higher -> rank 1
            [0.7, 0.7, 0.7, 0.7],  # all tied: pessimistic -> rank 3 (last)
            [0.2, 0.8, 0.8, 0.1],  # target col 1 tied with col 2 -> rank 1
            [-np.inf, 0.3, 0.1, 0.2],  # -inf never counts
        ]
    )
    target_cols = np.array([2, 0, 1, 2])
    ranks = rank_of_target(scores, scores[np.arange(4), target_cols])
    assert ranks.tolist() == [1, 3, 1, 2]


def test_metrics_hand_computed():
    ranks = np.array([0, 1, 4, 9, 10])
    m = metrics_from_ranks(ranks, ks=[5, 10])
    assert m["hr@5"] == pytest.approx(3 / 5)
    assert m["hr@10"] == pytest.approx(4 / 5)
    assert m["recall@10"] == m["hr@10"]
    ndcg10 = (1 + 1 / math.log2(3) + 1 / math.log2(6) + 1 / math.log2(11)) / 5
    assert m["ndcg@10"] == pytest.approx(ndcg10)
    assert m["mrr@5"] == pytest.approx((1 + 1 / 2 + 1 / 5) / 5)
    assert per_user_metric(ranks, "ndcg@10").mean() == pytest.approx(ndcg10)


class FixedScorer(torch.nn.Module):
    """Scores item i with a fixed vector, whatever the history."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.scores = scores

    def score_last(self, histories: torch.Tensor) -> torch.Tensor:
        return self.scores.expand(len(histories), -1).clone()


def test_history_masking_changes_ranks_only_when_on(tiny):
    # Score items by id: high ids first. Masking removes the user's history items above the target.
    scores = torch.arange(tiny.n_items + 1, dtype=torch.float32)
    model = FixedScorer(scores)
    off = rank_users(model, tiny, EvalConfig(mask_history=False), "valid", 50)
    on = rank_users(model, tiny, EvalConfig(mask_history=True), "valid", 50)
    offsets, items, targets = eval_histories(tiny, "valid")
    expected_off = tiny.n_items - targets  # items with a higher id
    assert off.tolist() == expected_off.tolist()
    for user in range(0, tiny.n_users, 37):
        history = set(items[offsets[user] : offsets[user + 1]].tolist()) - {int(targets[user])}
        above = sum(1 for i in history if i > targets[user])
        assert on[user] == expected_off[user] - above


def test_test_stage_history_includes_validation_item(tiny):
    offsets, items, targets = eval_histories(tiny, "test")
    split = tiny.split
    for user in (0, 5, 17):
        history = items[offsets[user] : offsets[user + 1]]
        assert history.tolist() == tiny.sequence(user)[:-1].tolist()
        assert targets[user] == split.test_target[user]


def test_sampled_negatives_exclude_user_items_and_are_seeded(tiny):
    config = EvalConfig(ranking="sampled", num_negatives=20)
    a = sample_negatives(tiny, config, "test")
    b = sample_negatives(tiny, config, "test")
    assert np.array_equal(a, b)
    assert not np.array_equal(
        a, sample_negatives(tiny, config.model_copy(update={"negative_seed": 1}), "test")
    )
    for user in range(tiny.n_users):
        row = a[user]
        assert len(set(row.tolist())) == 20
        assert not set(row.tolist()) & set(tiny.sequence(user).tolist())
        assert row.min() >= 1 and row.max() <= tiny.n_items
    pop = sample_negatives(
        tiny, config.model_copy(update={"negative_sampling": "popularity"}), "test"
    )
    assert pop.shape == a.shape


def test_sampled_rank_counts_only_candidates(tiny):
    scores = torch.arange(tiny.n_items + 1, dtype=torch.float32)
    config = EvalConfig(ranking="sampled", num_negatives=10)
    negatives = sample_negatives(tiny, config, "valid")
    ranks = rank_users(FixedScorer(scores), tiny, config, "valid", 50, negatives)
    targets = tiny.split.valid_target
    expected = (negatives > targets[:, None]).sum(1)
    assert ranks.tolist() == expected.tolist()


def test_groups_partition_users(tiny):
    groups = user_length_groups(tiny)
    total = sum(int(m.sum()) for m in groups.values())
    assert total == tiny.n_users
    pop = item_popularity_groups(tiny, tiny.split.test_target)
    assert (pop["head"] ^ pop["tail"]).all()


def test_paired_tests():
    result = paired_seed_test([0.30, 0.31, 0.29], [0.33, 0.35, 0.32])
    assert result["mean_diff"] == pytest.approx(0.0333, abs=1e-3)
    assert result["p"] < 0.05
    same = paired_user_test(np.ones(10), np.ones(10))
    assert same["p"] == 1.0


@pytest.mark.parametrize("model_name", ["sasrec", "gru4rec", "bert4rec"])
def test_length_sorted_trimmed_evaluation_matches_full_padding(tiny, model_name):
    from llmseqrec.models.registry import build_backbone
    from llmseqrec.training.batches import left_pad
    from llmseqrec.training.recommender import Recommender

    torch.manual_seed(0)
    model = Recommender(build_backbone(model_name, tiny.n_items, {"max_len": 20})).eval()
    config = EvalConfig(mask_history=False, batch_users=7)
    fast = rank_users(model, tiny, config, "test", 20)
    offsets, items, targets = eval_histories(tiny, "test")
    with torch.no_grad():
        scores = model.score_last(torch.from_numpy(left_pad(offsets, items, 20))).float()
    scores[:, 0] = -torch.inf
    target_scores = scores.gather(1, torch.from_numpy(targets.astype(np.int64))[:, None])[:, 0]
    slow = rank_of_target(scores.numpy(), target_scores.numpy())
    assert np.array_equal(fast, slow) or np.abs(fast - slow).max() <= 1  # float ties only


def test_rows_are_compared_with_a_reference_row_on_common_seeds_only():
    backbone = {42: 0.0399, 43: 0.0405, 44: 0.0396}
    assert versus_same_seeds({42: 0.0445}, backbone) == "+0.0046 (1 seed: no test)"
    text = versus_same_seeds({42: 0.0443, 43: 0.0442, 44: 0.0427}, backbone)
    assert text.startswith("+0.0037 (paired t over 3 seeds, p 0.01")
    assert versus_same_seeds({45: 0.05}, backbone) == "no common seed"
    assert versus_same_seeds({42: 0.05}, {}) == "reference not run"


def test_the_same_seed_difference_gives_the_numbers_each_report_words_its_own_way():
    backbone = {42: 0.0399, 43: 0.0405, 44: 0.0396}
    one = same_seed_difference({42: 0.0445, 45: 0.05}, backbone)
    assert one == {"mean_diff": pytest.approx(0.0046), "p": None, "n": 1}
    three = same_seed_difference({44: 0.0427, 42: 0.0443, 43: 0.0442}, backbone)
    assert three["n"] == 3 and three["mean_diff"] == pytest.approx(0.0037333, abs=1e-6)
    assert three["p"] == pytest.approx(
        paired_seed_test([0.0396, 0.0399, 0.0405], [0.0427, 0.0443, 0.0442])["p"]
    )
    assert same_seed_difference({45: 0.05}, backbone) is None
