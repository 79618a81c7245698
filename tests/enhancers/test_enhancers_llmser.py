"""LLMSeR: leakage (planted marker), pools, weights, zero-weight parity, backbones, real LLM."""

from __future__ import annotations

import json
import sqlite3
import time
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from llmseqrec.data.dataset import Dataset
from llmseqrec.enhancers.base import make_enhancer
from llmseqrec.enhancers.llmser import LLMSeR, derived_dataset
from llmseqrec.errors import ConfigError
from llmseqrec.machine import cpu_model
from llmseqrec.text.llm import ChatConfig, ChatModel, Completion
from llmseqrec.training.batches import iterate_batches
from llmseqrec.training.config import build_run_config
from llmseqrec.training.run import train_run
from llmseqrec.training.trainer import Trainer

FAST = {"offline_epochs": 2, "offline_patience": 2, "chunk_users": 16}
MARK = "ZZMARKER planted item"


def config(
    model: str = "sasrec",
    enhancer: dict | None = None,
    epochs: int = 2,
    name: str = "tiny",
    device: str = "cpu",
):
    return build_run_config(
        name,
        model,
        "llmser",
        "p-s100",
        {"train": {"epochs": epochs, "threads": 1, "device": device}, "enhancer": enhancer or {}},
    )


def with_marker(base: Dataset) -> Dataset:
    """Every user's validation AND test item is one new item that appears nowhere else."""
    marker = base.n_items + 1
    items = base.items.copy()
    ends = base.offsets[1:]
    items[ends - 1] = marker
    items[ends - 2] = marker
    row = pl.DataFrame(
        {"item": [marker], "raw_id": ["MARKER"], "title": [MARK], "brand": ["ZZMARKER"]},
        schema_overrides={"item": pl.Int32},
    )
    text = pl.concat([base.item_text, row], how="diagonal_relaxed")
    return Dataset(
        name="marker",
        user_ids=base.user_ids,
        item_ids=np.append(base.item_ids, "MARKER"),
        offsets=base.offsets,
        items=items,
        item_text=text,
        metadata={"source": {"format": "synthetic"}},
    )


class FakeBackend:
    """Records prompts; answers with valid, out-of-range, free-text and empty answers."""

    name = "fake"
    identity = "fake-model"
    context_length = 2048

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def complete(self, prompts, params, on_result) -> None:
        for i, prompt in enumerate(prompts):
            self.prompts.append(prompt)
            n = len(self.prompts)
            if "missing purchase" in prompt:
                text = '{"reason": "similar", "item": 2}' if n % 3 else "no idea"
            elif n % 4 == 0:
                text = "I cannot tell."
            else:
                text = '{"reason": "item 1 fits", "items": [3, 1, 99, 2, 3]}'
            on_result(i, Completion(text, 10, 5, 0.001))

    def count_tokens(self, text: str) -> int:
        return len(text) // 4 + 1

    def close(self) -> None:
        pass


def test_options_are_validated_with_one_line_errors():
    with pytest.raises(ConfigError, match="n_pseudo"):
        LLMSeR({"n_pseudo": 0})
    with pytest.raises(ConfigError, match="bogus"):
        make_enhancer("llmser", {"bogus": 1})
    with pytest.raises(ConfigError, match="ablation"):
        LLMSeR({"ablation": "wo_everything"})


def test_derived_datasets_hold_training_items_only(tiny):
    split = tiny.split
    rev = derived_dataset(tiny, "reverse")
    fwd = derived_dataset(tiny, "forward")
    for u in (0, 7, 100):
        prefix = split.train_sequence(u)
        assert rev.sequence(u).tolist() == prefix[::-1].tolist() + [prefix[0]]
        assert fwd.sequence(u).tolist() == prefix.tolist() + [prefix[-1]]
        # their own valid/test targets are training items: v_1 (reverse), v_k (forward)
        assert rev.split.valid_target[u] == prefix[0]
        assert fwd.split.valid_target[u] == prefix[-1]


def test_planted_marker_never_reaches_pools_prompts_choices_or_weights(tiny, home, tmp_path):
    data = with_marker(tiny)
    marker = data.n_items
    backend = FakeBackend()
    enhancer = LLMSeR({**FAST, "llm_users": 40})
    enhancer.configure(config(enhancer=enhancer.options, name="marker"))
    enhancer.chat_model = ChatModel(ChatConfig(cache_path=tmp_path / "r.sqlite"), backend=backend)
    enhancer.prepare(data, tmp_path / "work" / "llmser")

    assert backend.prompts, "the LLM path ran"
    assert not any("ZZMARKER" in p for p in backend.prompts)
    with sqlite3.connect(tmp_path / "r.sqlite") as db:
        cached = [row[0] for row in db.execute("SELECT prompt FROM responses")]
    assert cached and not any("ZZMARKER" in p for p in cached)
    assert not (enhancer.candidates == marker).any()
    assert not (enhancer.pseudo_items == marker).any()
    assert not (enhancer.picked == marker).any()
    split = data.split
    assert not (split.train_items == marker).any()  # omega compares picked vs v_k (training)

    # pseudo items: from the pool, never in the history, at most M; weights in [0, 1]
    for u in range(split.n_users):
        p = enhancer.pseudo_items[enhancer.pseudo_offsets[u] : enhancer.pseudo_offsets[u + 1]]
        pool = enhancer.candidates[u]
        assert set(p.tolist()) <= set(pool[pool > 0].tolist())
        assert not set(p.tolist()) & set(split.train_sequence(u).tolist())
        assert len(p) <= 12 and len(set(p.tolist())) == len(p)
    assert ((enhancer.omega >= 0) & (enhancer.omega <= 1)).all()
    alpha = enhancer.compute_alpha(data)
    assert ((alpha >= 0) & (alpha <= 1)).all() and (alpha > 0).any()

    cost = json.loads((enhancer.artefact_dir / "cost.json").read_text())
    assert cost["llm_users"] == 40 and cost["calls"] > 0
    assert cost["snf_fallback_users"] > 0 and cost["arv_fallback_users"] > 0
    assert cost["grounding_invalid_index"] > 0  # "99" is outside the pool: never accepted

    # resumable: a second prepare reads the chunks and asks nothing
    asked = len(backend.prompts)
    again = LLMSeR({**FAST, "llm_users": 40})
    again.configure(enhancer.run_config)
    again.chat_model = enhancer.chat_model
    again.prepare(data, tmp_path / "work" / "llmser")
    assert len(backend.prompts) == asked
    np.testing.assert_array_equal(again.pseudo_items, enhancer.pseudo_items)
    np.testing.assert_array_equal(again.omega, enhancer.omega)


def test_dual_channel_batches_weigh_original_and_augmented(tiny, home, tmp_path):
    enhancer = LLMSeR({**FAST, "llm": False})
    enhancer.configure(config(enhancer=enhancer.options))
    enhancer.prepare(tiny, tmp_path / "llmser")
    enhancer.omega = np.full_like(enhancer.omega, 0.6)
    enhancer.bind(tiny, 50, 0)
    trainer_rows = Trainer(config(enhancer=enhancer.options), tiny, tmp_path / "run")
    batch = next(
        iterate_batches(
            trainer_rows.windows, trainer_rows.window_users, 64, np.random.default_rng(0)
        )
    )
    out = enhancer.augment_batch(batch, 0)
    n = len(batch.users)
    assert len(out.users) > n and out.weights is not None
    assert ((out.weights >= 0) & (out.weights <= 1)).all()
    per_user: dict[int, float] = {}
    for u, w in zip(out.users.tolist(), out.weights.tolist(), strict=True):
        per_user[u] = per_user.get(u, 0.0) + w
    assert all(abs(v - 1.0) < 1e-6 for v in per_user.values())  # (1 - a) + a
    # the augmented row ends with the same prefix and starts with the pseudo items
    extra = out.inputs[n]
    u = int(out.users[n])
    seq = np.concatenate([out.inputs[n][out.inputs[n] > 0].numpy(), out.targets[n][-1:].numpy()])
    prefix = tiny.split.train_sequence(u)
    assert seq[-len(prefix) :].tolist() == prefix.tolist()
    assert extra.shape[0] == out.inputs.shape[1]


def test_zero_weights_train_exactly_like_the_backbone(tiny, home, tmp_path):
    plain_cfg = build_run_config(
        "tiny", "sasrec", "none", "p-s100", {"train": {"epochs": 2, "threads": 1}}
    )
    plain = Trainer(plain_cfg, tiny, tmp_path / "plain", progress=False)
    plain.fit()
    enhancer = LLMSeR({**FAST, "llm": False})
    cfg = config(enhancer=enhancer.options)
    enhancer.configure(cfg)
    enhancer.prepare(tiny, tmp_path / "llmser")
    enhancer.omega = np.zeros_like(enhancer.omega)  # every alpha_u = 0
    zero = Trainer(cfg, tiny, tmp_path / "zero", enhancer, progress=False)
    zero.fit()
    for (name, a), (_, b) in zip(
        plain.model.state_dict().items(), zero.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("model", ["sasrec", "gru4rec", "bert4rec"])
def test_trains_on_each_backbone(tiny, home, model, device):
    run_config = config(model, {**FAST, "llm": False}, device=device)
    result, directory = train_run(run_config, tiny, progress=False)
    assert result["finished"] and 0 <= result["test"]["ndcg@10"] <= 1
    cost = next((home / "cache" / "tiny" / "llmser").glob("*/cost.json"))
    assert json.loads(cost.read_text())["llm_users"] == 0


def test_stage_cost_keeps_the_build_time_when_a_later_call_only_reads_the_chunks(
    tiny, home, tmp_path
):
    # The report printed the reading call's wall time (1 s) as the Yelp stage's cost.
    first = LLMSeR({**FAST, "llm": False})
    first.configure(config(enhancer=first.options))
    first.prepare(tiny, tmp_path / "llmser")
    built = first.cost
    assert built["chunks_timed"] == built["chunks"] == -(-tiny.n_users // FAST["chunk_users"])
    assert built["build_seconds"] > 0
    again = LLMSeR({**FAST, "llm": False})
    again.configure(first.run_config)
    again.prepare(tiny, tmp_path / "llmser")
    assert again.cost["build_seconds"] == built["build_seconds"]
    assert again.cost["chunks_timed"] == built["chunks"]


def test_ablations_change_the_right_parts(tiny, home, tmp_path):
    base = LLMSeR({**FAST, "llm": False})
    base.configure(config(enhancer=base.options))
    base.prepare(tiny, tmp_path / "llmser")
    popular = LLMSeR({**FAST, "llm": False, "ablation": "wo_ccg", "pool": "popular"})
    popular.configure(base.run_config)
    popular.prepare(tiny, tmp_path / "llmser")
    assert not np.array_equal(popular.candidates, base.candidates)
    no_arv = LLMSeR({**FAST, "llm": False, "ablation": "wo_arv", "beta": 0.3})
    no_arv.configure(base.run_config)
    no_arv.prepare(tiny, tmp_path / "llmser")
    alpha = no_arv.compute_alpha(tiny)
    assert all(np.isclose(a, [0.0, 0.3, 1.0]).any() for a in np.unique(alpha))
    no_wd = LLMSeR({**FAST, "llm": False, "ablation": "wo_wd", "beta": 0.0})
    no_wd.configure(base.run_config)
    no_wd.prepare(tiny, tmp_path / "llmser")
    np.testing.assert_allclose(no_wd.compute_alpha(tiny), no_wd.omega * (no_wd.omega > 0))


@pytest.mark.slow  # 2 SmolLM2 calls: ~3 min on the shared 2-core machine (model load + decode)
def test_real_llm_on_a_handful_of_users(tiny, home, tmp_path):
    """SmolLM2 in-process on 1 user (2 calls): answers grounded to the pool; costs recorded."""
    options = {**FAST, "llm_users": 1, "chunk_users": 1, "ablation": "wo_reason", "max_tokens": 16}
    enhancer = LLMSeR(options)
    enhancer.configure(config(enhancer=options))
    started = time.perf_counter()
    enhancer.prepare(tiny, tmp_path / "llmser")
    cost = json.loads((enhancer.artefact_dir / "cost.json").read_text())
    assert cost["llm_users"] == 1 and cost["calls"] + cost["cache_hits"] == 2
    for u in range(1):
        p = enhancer.pseudo_items[enhancer.pseudo_offsets[u] : enhancer.pseudo_offsets[u + 1]]
        pool = enhancer.candidates[u]
        assert len(p) == 12 and set(p.tolist()) <= set(pool.tolist())
    assert time.perf_counter() - started >= 0  # timings are reported, never asserted
    assert Path(enhancer.artefact_dir / "chunks").is_dir()


def test_transformers_backend_answers_inside_the_grammar(tiny, home, tmp_path):
    """The packaged SmolLM2 through transformers gets the stage's GBNF grammar (llguidance
    masks), not the looser JSON schema: every SNF/ARV answer parses and names pool items."""
    chat = {"backend": "transformers", "device": "cpu", "batch_size": 2, "context_length": 2048}
    options = {**FAST, "llm_users": 2, "chunk_users": 2, "chat": chat}
    enhancer = LLMSeR(options)
    enhancer.configure(config(enhancer=options))
    enhancer.prepare(tiny, tmp_path / "llmser")
    cost = json.loads((enhancer.artefact_dir / "cost.json").read_text())
    assert cost["calls"] == 4 and cost["llm_failures"] == 0
    assert cost["chat_model"].endswith(("@bfloat16", "@float32"))
    for u in range(2):
        p = enhancer.pseudo_items[enhancer.pseudo_offsets[u] : enhancer.pseudo_offsets[u + 1]]
        assert len(p) == 12 and set(p.tolist()) <= set(enhancer.candidates[u].tolist())
    # where it was built: this CPU, no GPU (a chunk made on one also names the GPU)
    (chunk,) = (enhancer.artefact_dir / "chunks").glob("llm-*.npz")
    assert "cpu" in np.load(chunk).files and "gpu" not in np.load(chunk).files
    assert enhancer.chat_model.accelerator is None


class PromptKeyedBackend(FakeBackend):
    """Answers depend on the prompt only, not on call order: sharded and whole runs agree."""

    def complete(self, prompts, params, on_result) -> None:
        for i, prompt in enumerate(prompts):
            self.prompts.append(prompt)
            if "missing purchase" in prompt:
                text = '{"reason": "similar", "item": 2}'
            elif zlib.crc32(prompt.encode()) % 3 == 0:
                text = "I cannot tell."
            else:
                text = '{"reason": "item 1 fits", "items": [3, 1, 2]}'
            on_result(i, Completion(text, 10, 5, 0.001))


def test_shards_split_the_stage_and_assemble_like_one_process(tiny, home, tmp_path):
    options = {**FAST, "llm_users": 64}
    whole_backend = PromptKeyedBackend()
    whole = LLMSeR(options)
    whole.configure(config(enhancer=options))
    whole.chat_model = ChatModel(
        ChatConfig(cache_path=tmp_path / "a.sqlite"), backend=whole_backend
    )
    whole.prepare(tiny, tmp_path / "a" / "llmser")

    work = tmp_path / "b" / "llmser"
    backend = PromptKeyedBackend()
    chat = ChatModel(ChatConfig(cache_path=tmp_path / "b.sqlite"), backend=backend)
    asked = []
    for k in (0, 1):
        # threads only change speed: the shard must land in the same stage directory
        shard = LLMSeR({**options, "chat": {"threads": 1}})
        shard.configure(config(enhancer=options))
        shard.chat_model = chat
        shard.prepare(tiny, work, shard=(k, 2))
        asked.append(len(backend.prompts))
        assert shard.stage_dir(tiny, work) == whole.stage_dir(tiny, work)
    assert shard.cost.get("chunks_missing") is None  # the last shard found all chunks: assembled
    assert 0 < asked[0] < asked[1]  # each shard asked for its own chunks only
    assert sorted(backend.prompts) == sorted(whole_backend.prompts)

    final = LLMSeR(options)
    final.configure(config(enhancer=options))
    final.chat_model = chat
    final.prepare(tiny, work)
    assert len(backend.prompts) == asked[1]  # assembling asks nothing
    np.testing.assert_array_equal(final.pseudo_items, whole.pseudo_items)
    np.testing.assert_array_equal(final.omega, whole.omega)
    with pytest.raises(ConfigError, match="shard 2/2"):
        final.prepare(tiny, work, shard=(2, 2))


class FirstCandidateBackend(FakeBackend):
    """Always names candidate number 1: a chat model with a pure position preference."""

    def complete(self, prompts, params, on_result) -> None:
        for i, prompt in enumerate(prompts):
            self.prompts.append(prompt)
            answer = '"item": 1' if "missing purchase" in prompt else '"items": [1]'
            text = '{"reason": "first", ' + answer + "}"
            on_result(i, Completion(text, 10, 5, 0.001))


def test_arv_candidate_order_decides_which_candidate_number_one_is(tiny, home, tmp_path):
    """The ARV answer is grounded in the order the prompt showed: "1" is the forward top-1
    when ranked, the forward model's last candidate when reversed; shuffled is per user."""
    picks, dirs = {}, {}
    for order in ("ranked", "reversed", "shuffled"):
        options = {**FAST, "llm_users": 32, "arv_order": order}
        enhancer = LLMSeR(options)
        enhancer.configure(config(enhancer=options))
        backend = FirstCandidateBackend()
        enhancer.chat_model = ChatModel(
            ChatConfig(cache_path=tmp_path / f"{order}.sqlite"), backend=backend
        )
        enhancer.prepare(tiny, tmp_path / "llmser")
        picks[order] = enhancer.picked[:32].copy()
        dirs[order] = enhancer.stage_dir(tiny, tmp_path / "llmser")
        verify = np.load(sorted((dirs[order] / "chunks").glob("llm-*.npz"))[0])["verify"]
    last = np.array([v[v > 0][-1] for v in verify])
    np.testing.assert_array_equal(picks["ranked"][:16], verify[:, 0])
    np.testing.assert_array_equal(picks["reversed"][:16], last)
    shuffled = picks["shuffled"][:16]
    assert all(p in v for p, v in zip(shuffled, verify, strict=True))
    assert (shuffled != verify[:, 0]).any() and (shuffled != last).any()
    assert len(set(dirs.values())) == 3  # each order is its own stage (own prompts)
    default = LLMSeR(FAST)
    default.configure(config(enhancer=FAST))
    assert "arv_order" not in default._stage_payload(tiny)  # older stages keep their hash


@pytest.mark.parametrize("reason", [True, False])
def test_answer_cap_holds_the_longest_answer_the_grammar_allows(reason):
    """Bug: a 96-token cap cut SNF item lists off after an 80-character reason, so the answer
    grounded to nothing and every such user silently fell back to CCG top-M."""
    from llmseqrec.enhancers.llmser import REASON_CHARS, answer_token_cap

    for n in (1, 12, 20):
        head = '{"reason": "' + "1. " * (REASON_CHARS // 3) + "1" * (REASON_CHARS % 3) + '", '
        items = ", ".join(["99"] * n)
        longest = (head if reason else "{") + f'"items": [{items}]}}'
        assert len(longest.encode()) <= answer_token_cap(reason, n)  # a token is >= 1 byte
    assert answer_token_cap(True, 12) > 96


def test_answers_can_name_candidate_numbers_only():
    """SmolLM2 answered history positions and numbers past the candidates (Office, 2026-12-01):
    the grammar and schema now admit 1..n only, and the history carries no numbers."""
    from llmseqrec.enhancers.llmser import arv_grammar, arv_schema, snf_grammar, snf_schema

    for reason in (True, False):
        assert snf_grammar(reason, 12, 20).endswith(
            "num ::= " + " | ".join(f'"{i}"' for i in range(1, 21)) + "\n"
        )
        assert 'num ::= "1" | "2" | "3"\n' in arv_grammar(reason, 3)
        assert snf_schema(reason, 12, 20)["properties"]["items"]["items"]["maximum"] == 20
        assert arv_schema(reason, 10)["properties"]["item"] == {
            "type": "integer",
            "minimum": 1,
            "maximum": 10,
        }
    with pytest.raises(ConfigError, match="100 candidates"):
        arv_grammar(False, 100)


class RefusingBackend(FakeBackend):
    def complete(self, prompts, params, on_result) -> None:
        raise AssertionError(f"asked {len(prompts)} prompts: the stage should have travelled")


def test_travelling_files_let_another_machine_go_on_without_retraining_or_asking(
    tiny, home, tmp_path
):
    options = {**FAST, "llm_users": 32}
    first = LLMSeR(options)
    first.configure(config(enhancer=options))
    first.chat_model = ChatModel(
        ChatConfig(cache_path=tmp_path / "a.sqlite"), backend=PromptKeyedBackend()
    )
    here = tmp_path / "here"
    first.prepare(tiny, here / "tiny" / "llmser")
    files = first.travelling_files(tiny, here / "tiny" / "llmser")
    names = {f.name for f in files}
    assert {"checkpoint.pt", "ccg.npz", "options.json"} <= names
    assert any(n.startswith("llm-") for n in names) and not any(
        n.startswith("plain-") for n in names
    )
    assert not {"state.pt", "log.jsonl"} & names  # the resumable state stays behind

    there = tmp_path / "there"  # another machine: its own empty cache plus the kept files
    for source in files:
        target = there / source.relative_to(here)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    second = LLMSeR(options)
    second.configure(config(enhancer=options))
    second.chat_model = ChatModel(
        ChatConfig(cache_path=tmp_path / "b.sqlite"), backend=RefusingBackend()
    )
    second.prepare(tiny, there / "tiny" / "llmser")
    models = second.models_dir(there / "tiny" / "llmser", tiny)
    assert not list(models.rglob("state.pt"))  # reloaded, not retrained
    np.testing.assert_array_equal(second.pseudo_items, first.pseudo_items)
    np.testing.assert_array_equal(second.omega, first.omega)


def test_users_below_builds_only_the_chunks_those_users_need(tiny, home, tmp_path):
    """The LLM-free twin of an unfinished stage: chunks up to user K, then whole as usual."""
    options = {**FAST, "llm": False, "chunk_users": 4}
    work = tmp_path / "part" / "llmser"
    part = LLMSeR(options)
    part.configure(config(enhancer=options))
    part.prepare(tiny, work, users_below=10)  # 10 is inside the third chunk: two are built
    chunks = part.stage_dir(tiny, work) / "chunks"
    built = sorted(path.name for path in chunks.glob("*.npz"))
    assert built == ["plain-0000000-0000004.npz", "plain-0000004-0000008.npz"]
    assert str(np.load(chunks / built[0])["cpu"]) == cpu_model()  # where its timings came from
    n_chunks = -(-tiny.split.n_users // 4)
    assert part.cost["chunks_missing"] == n_chunks - 2 and part.cost["built_now"] == 2

    rest = LLMSeR(options)
    rest.configure(config(enhancer=options))
    rest.prepare(tiny, work)
    whole = LLMSeR(options)
    whole.configure(config(enhancer=options))
    whole.prepare(tiny, tmp_path / "whole" / "llmser")
    np.testing.assert_array_equal(rest.pseudo_items, whole.pseudo_items)
    np.testing.assert_array_equal(rest.omega, whole.omega)
    with pytest.raises(ConfigError, match="users_below -1"):
        rest.prepare(tiny, work, users_below=-1)
