"""LLM-ESR baseline: training-prefix user similarity, causal cross-attention, self-distillation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from llmseqrec.enhancers import llmesr as llmesr_mod
from llmseqrec.enhancers.base import make_enhancer
from llmseqrec.models.registry import build_backbone
from llmseqrec.training.config import build_run_config
from llmseqrec.training.recommender import Recommender
from llmseqrec.training.run import train_run

torch.set_num_threads(1)


@pytest.fixture
def patched(patch_item_embeddings):
    return patch_item_embeddings(llmesr_mod, seed=1)


def test_user_similarity_reads_training_prefixes_only(tiny, tmp_path, patched):
    split = tiny.split
    vectors = llmesr_mod.user_semantic_vectors(tiny, patched)
    for user in (0, 7, 42):
        assert np.allclose(vectors[user], patched[split.train_sequence(user)].mean(0), atol=1e-6)
    # Planted marker: give every validation / test target a huge embedding. Users' vectors
    # change only through items of their own training prefixes, never through held-out ones.
    marked = patched.copy()
    held_out = np.setdiff1d(np.union1d(split.valid_target, split.test_target), split.train_items)
    marked[held_out] += 1000.0
    assert np.allclose(llmesr_mod.user_semantic_vectors(tiny, marked), vectors)
    enhancer = make_enhancer("llmesr", {"sim_users": 5})
    enhancer.prepare(tiny, tmp_path / "llmesr")
    assert enhancer.neighbours.shape == (tiny.n_users, 5)
    assert not (enhancer.neighbours == np.arange(tiny.n_users)[:, None]).any()  # self excluded
    assert list((tmp_path / "llmesr").glob("neighbours-*.npy"))
    enhancer.bind(tiny, 12, 0)
    rows = enhancer._teacher_rows.numpy()
    for user in (0, 7, 42):  # teacher rows end with the training prefix, never a target
        assert rows[user][rows[user] > 0][-1] == split.train_sequence(user)[-1]


def test_cross_attention_is_causal_in_the_wrapped_model(tiny, tmp_path, patched):
    enhancer = make_enhancer("llmesr", {"alpha": 0.0})
    enhancer.prepare(tiny, tmp_path / "llmesr")
    torch.manual_seed(0)
    backbone = build_backbone("sasrec", tiny.n_items, {"max_len": 12, "hidden_size": 16})
    model = enhancer.wrap(Recommender(backbone)).eval()
    assert model.emb_fusion and not model.seq_fusion and not model.pred_fusion
    seq = torch.randint(1, tiny.n_items + 1, (3, 12))
    with torch.no_grad():
        base = model.encode(seq)
        for t in range(2, 11):
            changed = seq.clone()
            changed[:, t + 1] = changed[:, t + 1] % tiny.n_items + 1
            out = model.encode(changed)
            assert torch.allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-6)


@pytest.mark.parametrize("model", ["sasrec", "gru4rec"])
def test_llmesr_trains_with_self_distillation(home, patched, model, device):
    from llmseqrec.data.prepare import load

    data = load("tiny")
    config = build_run_config(
        "tiny",
        model,
        "llmesr",
        None,
        {
            "train": {"epochs": 3, "batch_size": 64, "device": device},
            "enhancer": {"sim_users_per_step": 3},
        },
    )
    result, directory = train_run(config, data, progress=False)
    assert result["finished"] and np.isfinite(result["test"]["ndcg@10"])
    epochs = [
        json.loads(x)
        for x in (directory / "log.jsonl").read_text().splitlines()
        if '"epoch"' in x and '"event": "epoch"' in x
    ]
    assert all(e["distill"] > 0 for e in epochs)
    assert epochs[-1]["rec"] < epochs[0]["rec"]


def test_ablations(tiny):
    assert make_enhancer("llmesr", {"ablation": "no_distill"}).opts.alpha == 0.0
    off = make_enhancer("llmesr", {"ablation": "no_cross_attention"}).opts
    assert not off.fusion_embedding and off.alpha > 0
    only = make_enhancer("llmesr", {"ablation": "semantic_only"}).opts
    assert only.views == "semantic" and only.alpha == 0.0


@pytest.mark.parametrize("model_name", ["sasrec", "gru4rec"])
def test_neighbour_states_do_not_depend_on_the_padding_they_are_encoded_with(
    tiny, tmp_path, patched, model_name
):
    """The distillation teacher encodes neighbour prefixes in length groups, each trimmed to
    its longest row: every row's last state must equal the one at the full padded width."""
    from llmseqrec.enhancers.views import represent_by_length

    enhancer = make_enhancer("llmesr", {"sim_users": 5})
    enhancer.prepare(tiny, tmp_path / "llmesr")
    enhancer.bind(tiny, 12, 0)
    torch.manual_seed(0)
    backbone = build_backbone(model_name, tiny.n_items, {"max_len": 12, "hidden_size": 16})
    model = enhancer.wrap(Recommender(backbone)).eval()
    rows = enhancer._teacher_rows[enhancer._neighbours_t[:8].reshape(-1)]
    assert len(set((rows > 0).sum(1).tolist())) > 1  # prefixes of different lengths
    with torch.no_grad():
        full = model.encode(rows)[:, -1, :]
        grouped = represent_by_length(lambda part: model.encode(part)[:, -1, :], rows)
    torch.testing.assert_close(grouped, full, atol=1e-5, rtol=1e-4)
