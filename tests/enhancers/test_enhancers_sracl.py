"""SRA-CL: no validation/test item reaches the offline artefacts, substitution views, attention
synthesis, cached reruns, ablations, and training on SASRec and GRU4Rec."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from llmseqrec.data.dataset import Dataset
from llmseqrec.enhancers.base import make_enhancer
from llmseqrec.enhancers.sracl import (
    SRACL,
    AttentionSynthesis,
    LlmStageIncomplete,
    SraclOptions,
    artefact_directory,
    prepare_artefacts,
)
from llmseqrec.errors import ConfigError
from llmseqrec.text.llm import ChatModel, Completion
from llmseqrec.training.batches import Batch, left_pad
from llmseqrec.training.config import RunConfig, build_run_config
from llmseqrec.training.run import enhancer_workdir, train_run
from llmseqrec.training.trainer import build_model


def with_markers(base: Dataset, n_users: int, shortest: bool = False) -> Dataset:
    """The first (or ``shortest``) ``n_users`` of ``base`` with every validation and test item replaced by a new
    item whose text carries a unique marker string."""
    offsets = [0]
    items: list[int] = []
    n = base.n_items
    titles = base.item_text.get_column("title").to_list()
    new_titles = list(titles)
    chosen = np.argsort(base.lengths, kind="stable")[:n_users] if shortest else range(n_users)
    for user in range(n_users):
        seq = base.sequence(int(chosen[user])).astype(int).tolist()
        valid, test = n + 1, n + 2
        n += 2
        new_titles += [f"ZQXMARKER{user}V gadget", f"ZQXMARKER{user}T gadget"]
        items += seq[:-2] + [valid, test]
        offsets.append(len(items))
    return Dataset(
        name="marked",
        user_ids=np.array([str(u) for u in range(n_users)]),
        item_ids=np.array([str(i) for i in range(1, n + 1)]),
        offsets=np.array(offsets, dtype=np.int64),
        items=np.array(items, dtype=np.int32),
        item_text=pl.DataFrame({"item": list(range(1, n + 1)), "title": new_titles}),
        metadata={"cache_key": f"marked-{n_users}"},
    )


class EchoBackend:
    """A chat backend that answers with its whole prompt: any leak in a prompt is also a leak in
    the summaries and therefore in every downstream artefact."""

    name = "echo"
    identity = "echo-1"
    context_length = 2048

    def __init__(self) -> None:
        self.calls = 0
        self.systems: dict[str, set] = {}
        self.lock = threading.Lock()

    def complete(self, prompts, params, on_result):
        for i, prompt in enumerate(prompts):
            with self.lock:
                self.calls += 1
                kind = "user" if "shopper bought" in prompt else "item"
                self.systems.setdefault(kind, set()).add(params.system)
            on_result(i, Completion("summary: " + prompt[-300:], len(prompt) // 4, 10, 0.0))

    def count_tokens(self, text: str) -> int:
        return len(text) // 4

    def close(self) -> None:
        pass


def _all_text(directory: Path) -> str:
    files = [p for p in directory.iterdir() if p.suffix == ".json"]
    return "\n".join(p.read_text(errors="replace") for p in files)


def _cached_prompts(cache_file: Path) -> list[str]:
    with sqlite3.connect(cache_file) as conn:
        return [row[0] + row[1] for row in conn.execute("SELECT prompt, response FROM responses")]


def _assert_no_marker(directory: Path, dataset: Dataset, extra_texts: list[str]) -> None:
    text = _all_text(directory) + "\n".join(extra_texts)
    assert "ZQXMARKER" not in text
    markers = set(dataset.split.valid_target.tolist()) | set(dataset.split.test_target.tolist())
    users = np.load(directory / "user_neighbours.npy")
    items = np.load(directory / "item_neighbours.npy")
    assert not markers & set(items.ravel().tolist())
    assert (items[sorted(markers)] == 0).all()  # markers have no neighbours either
    assert users.shape == (dataset.n_users, 10)
    assert (users != np.arange(dataset.n_users)[:, None]).all()  # never its own neighbour


def test_planted_markers_reach_no_prompt_summary_or_neighbour_list(tiny, home):
    dataset = with_markers(tiny, 30)
    backend = EchoBackend()
    options = SraclOptions(chat={"cache_path": str(home / "responses.sqlite")})
    chat = ChatModel(options_to_config(options), backend=backend)
    directory = prepare_artefacts(dataset, options, home / "work", progress=False, chat=chat)
    n_trained = len(np.unique(dataset.split.train_items))
    assert backend.calls == dataset.n_users + n_trained
    cost = json.loads((directory / "cost.json").read_text())
    assert cost["calls"] == backend.calls and cost["backend"] == "echo"
    assert cost["users_done"] == dataset.n_users and cost["items_done"] == n_trained
    prompts = _cached_prompts(home / "responses.sqlite")
    assert len(prompts) == backend.calls
    _assert_no_marker(directory, dataset, prompts)
    # Training items do reach the prompts (the check above is not vacuous).
    first = dataset.render_item_texts()[int(dataset.split.train_items[0])][:20]
    assert any(first in p for p in prompts)

    # A rerun of the LLM stage makes zero model calls (artefacts deleted, cache kept).
    for path in directory.iterdir():
        path.unlink()
    backend.calls = 0
    prepare_artefacts(dataset, options, home / "work", progress=False, chat=chat)
    assert backend.calls == 0
    assert json.loads((directory / "cost.json").read_text())["cache_hits"] > 0


def test_raw_text_ablation_makes_no_calls_and_leaks_nothing(tiny, home):
    dataset = with_markers(tiny, 30)
    options = SraclOptions(text_source="raw")
    directory = prepare_artefacts(dataset, options, home / "work", progress=False)
    assert not (home / "cache" / "llm").exists()  # no chat model was ever opened
    _assert_no_marker(directory, dataset, [])
    assert json.loads((directory / "cost.json").read_text())["calls"] == 0
    mean = prepare_artefacts(
        dataset, SraclOptions(text_source="raw", raw_user="mean"), home / "work", progress=False
    )
    assert mean != directory
    _assert_no_marker(mean, dataset, [])


def test_llm_limit_stops_with_coverage_and_resumes(tiny, home):
    dataset = with_markers(tiny, 20)
    backend = EchoBackend()
    options = SraclOptions(llm_limit=7, chunk=3, chat={"cache_path": str(home / "r.sqlite")})
    chat = ChatModel(options_to_config(options), backend=backend)
    with pytest.raises(LlmStageIncomplete, match="incomplete"):
        prepare_artefacts(dataset, options, home / "work", progress=False, chat=chat)
    assert backend.calls == 7
    total = dataset.n_users + len(np.unique(dataset.split.train_items))
    full = SraclOptions(chat={"cache_path": str(home / "r.sqlite")})
    prepare_artefacts(dataset, full, home / "work", progress=False, chat=chat)
    assert backend.calls == total  # nothing asked twice


def options_to_config(options: SraclOptions):
    from llmseqrec.text import ChatConfig

    return ChatConfig.model_validate(options.chat)


@pytest.mark.slow  # ~10 model calls, but loading SmolLM2 + MiniLM takes minutes on busy cores
def test_real_smollm2_stage_on_two_users_leaks_nothing_and_reruns_free(tiny, home):
    """The real packaged model on a handful of prompts (8 answer tokens each)."""
    dataset = with_markers(tiny, 2, shortest=True)
    options = SraclOptions(user_tokens=8, item_tokens=8, k=2, chat={"parallel_slots": 4})
    directory = prepare_artefacts(dataset, options, home / "work", progress=False)
    cost = json.loads((directory / "cost.json").read_text())
    assert cost["calls"] == cost["users_total"] + cost["items_total"] > 0
    assert "SmolLM2" in cost["model"]
    prompts = _cached_prompts(home / "cache" / "llm" / "responses.sqlite")
    assert "ZQXMARKER" not in "\n".join(prompts) + _all_text(directory)
    for path in directory.iterdir():
        path.unlink()
    prepare_artefacts(dataset, options, home / "work", progress=False)
    assert json.loads((directory / "cost.json").read_text())["calls"] == 0


def test_substitution_views_keep_length_and_use_only_neighbours(tiny):
    enhancer = SRACL({"text_source": "raw"})
    enhancer.bind(tiny, 20, seed=0)
    rng = np.random.default_rng(0)
    neighbours = np.zeros((tiny.n_items + 1, 10), dtype=np.int64)
    neighbours[1:] = rng.integers(1, tiny.n_items + 1, size=(tiny.n_items, 10))
    neighbours[5] = 0  # an item without neighbours is never substituted
    enhancer.item_neighbours = torch.from_numpy(neighbours)
    rows = torch.from_numpy(rng.integers(1, tiny.n_items + 1, size=(64, 20)))
    rows[:, :7] = 0
    rows[:, 10] = 5
    view = enhancer.substitution_view(rows)
    assert view.shape == rows.shape
    assert ((view > 0) == (rows > 0)).all()  # same length, padding untouched
    changed = view != rows
    assert 0.1 < changed[rows > 0].float().mean() < 0.3  # about 20%
    for r, c in changed.nonzero().tolist():
        assert int(view[r, c]) in neighbours[int(rows[r, c])].tolist()
    assert not changed[:, 10].any()


def test_synthesis_weights_sum_to_one_and_skip_missing_neighbours():
    module = AttentionSynthesis(8, torch.Generator().manual_seed(0))
    anchor = torch.randn(5, 8)
    neighbours = torch.randn(5, 4, 8)
    valid = torch.ones(5, 4, dtype=torch.bool)
    valid[2, 1:] = False
    p = module.weights(anchor, neighbours, valid)
    assert torch.allclose(p.sum(1), torch.ones(5))
    assert (p[2, 1:] == 0).all() and p[2, 0] == 1
    assert torch.allclose(module(anchor, neighbours, valid)[2], neighbours[2, 0])
    p.sum().backward()  # differentiable w.r.t. W and a
    assert module.W.grad is not None


def test_bad_option_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match="enhancer.alpha"):
        make_enhancer("sracl", {"alpha": -1})
    with pytest.raises(ConfigError, match="enhancer.nope"):
        make_enhancer("sracl", {"nope": 1})


def plant_artefacts(dataset: Dataset, options: dict, workdir: Path) -> Path:
    """Random neighbours in place of the (tested above) text pipeline: training tests stay fast."""
    directory = artefact_directory(dataset, SraclOptions(**options), workdir)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    k = SraclOptions(**options).k
    users = rng.integers(0, dataset.n_users, size=(dataset.n_users, k))
    users[users == np.arange(dataset.n_users)[:, None]] = -1
    trained = np.unique(dataset.split.train_items)
    items = np.zeros((dataset.n_items + 1, k), dtype=np.int64)
    items[trained] = rng.choice(trained, size=(len(trained), k))
    np.save(directory / "user_neighbours.npy", users)
    np.save(directory / "item_neighbours.npy", items)
    (directory / "meta.json").write_text("{}")
    return directory


def _train(config: RunConfig) -> tuple[dict, Path]:
    from llmseqrec.data.prepare import load

    dataset = load("tiny")
    plant_artefacts(dataset, config.enhancer, enhancer_workdir(config, dataset))
    result, directory = train_run(config, dataset, progress=False)
    return result, directory


@pytest.mark.parametrize("model", ["sasrec", "gru4rec"])
def test_trains_on_sasrec_and_gru4rec_with_both_losses(home, pcl_config, model, device):
    result, directory = _train(pcl_config("sracl", model, device, text_source="raw", k=5))
    log = [json.loads(line) for line in (directory / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in log if r.get("event") == "epoch"]
    assert epochs and all(np.isfinite(e["cs"]) and np.isfinite(e["is"]) for e in epochs)
    assert result["finished"]
    state = torch.load(directory / "state.pt", weights_only=False)
    assert set(state["enhancer"]["synthesis"]) == {"W", "a"}


def test_ablations_switch_losses_and_wo_cl_equals_backbone(home):
    from llmseqrec.data.prepare import load

    tiny = load("tiny")
    for options, names in [
        ({"use_cs": False}, {"is"}),
        ({"use_is": False}, {"cs"}),
        ({"unlearnable": True}, {"cs", "is"}),
        ({"cs_sample": 2}, {"cs", "is"}),
    ]:
        enhancer = make_enhancer("sracl", {"text_source": "raw", "k": 5, **options})
        plant_artefacts(tiny, {"text_source": "raw", "k": 5}, home / "work")
        enhancer.prepare(tiny, home / "work")
        model = enhancer.wrap(_tiny_model(tiny))
        enhancer.bind(tiny, 20, 0)
        split = tiny.split
        rows = torch.from_numpy(left_pad(split.train_offsets, split.train_items, 21, np.arange(8)))
        batch = Batch(users=torch.arange(8), inputs=rows[:, :-1], targets=rows[:, 1:])
        losses = enhancer.extra_loss(model, batch, model.encode(batch.inputs))
        assert set(losses) == names
        assert all(torch.isfinite(v) for v in losses.values())
        if "cs_sample" in options:  # attention over 2 of the 5 neighbours per step
            assert enhancer.neighbour_rows(torch.arange(8))[1].shape == (8, 2)
        learnable = "cs" in names and not options.get("unlearnable")
        assert (len(enhancer.trainable_modules()) == 1) == learnable
    none = make_enhancer("sracl", {"use_cs": False, "use_is": False})
    none.prepare(tiny, home / "work")  # w/o CL: no offline step at all
    assert none.extra_loss(None, None, None) == {}


def _tiny_model(dataset: Dataset):
    config = build_run_config(
        "tiny", model="sasrec", protocol="p-cl", overrides={"backbone": {"max_len": 20}}
    )
    return build_model(config, dataset)


def test_wo_cl_trains_exactly_like_the_backbone(home, pcl_config):
    from llmseqrec.data.prepare import load

    dataset = load("tiny")
    results = []
    for method, options in [("none", {}), ("sracl", {"use_cs": False, "use_is": False})]:
        results.append(train_run(pcl_config(method, **options), dataset, progress=False)[0])
    assert results[0]["test"] == results[1]["test"]


def test_user_summaries_alone_ask_no_item_prompt(tiny, home):
    """Item and user summaries can be written by two processes sharing the cache."""
    from llmseqrec.enhancers.sracl import run_llm_stage

    dataset = with_markers(tiny, 12)
    backend = EchoBackend()
    options = SraclOptions(chat={"cache_path": str(home / "r.sqlite")})
    chat = ChatModel(options_to_config(options), backend=backend)
    out = run_llm_stage(dataset, options, chat, progress=False, kinds=("user",))
    assert backend.calls == dataset.n_users
    assert all(a is not None for a in out["users"])
    assert all(a is None for a in out["item_answers"])
    prepare_artefacts(dataset, options, home / "work", progress=False, chat=chat)
    assert backend.calls == dataset.n_users + len(np.unique(dataset.split.train_items))
    # Only user prompts carry the analyst system message (SmolLM2's default one made the
    # model describe the shopper as itself).
    assert backend.systems == {"user": {options.user_system}, "item": {None}}
    assert "analyst" in options.user_system
    with pytest.raises(ConfigError, match="unknown summary kind 'items'"):
        run_llm_stage(dataset, options, chat, progress=False, kinds=("items",))


def test_shards_split_one_kind_without_asking_twice(tiny, home):
    """Two processes sharing the cache split the user summaries: together they ask each once."""
    from llmseqrec.enhancers.sracl import run_llm_stage

    dataset = with_markers(tiny, 12)
    backend = EchoBackend()
    options = SraclOptions(chat={"cache_path": str(home / "r.sqlite")})
    chat = ChatModel(options_to_config(options), backend=backend)
    first = run_llm_stage(dataset, options, chat, progress=False, kinds=("user",), shard=(0, 2))
    assert backend.calls == (dataset.n_users + 1) // 2
    assert [a is not None for a in first["users"]] == [i % 2 == 0 for i in range(dataset.n_users)]
    second = run_llm_stage(dataset, options, chat, progress=False, kinds=("user",), shard=(1, 2))
    assert backend.calls == dataset.n_users
    assert all(a is not None for a in second["users"])
    with pytest.raises(ConfigError, match="shard 2/2"):
        run_llm_stage(dataset, options, chat, progress=False, shard=(2, 2))


def test_neighbour_agreement_reads_training_prefixes_only(tmp_path):
    """Every user shares the same validation and test items; only training items may count."""
    from llmseqrec.enhancers.sracl import neighbour_agreement

    histories = [[1, 2, 9, 10], [3, 4, 9, 10], [5, 6, 9, 10], [1, 7, 9, 10]]
    dataset = Dataset(
        name="agree",
        user_ids=np.array([str(u) for u in range(4)]),
        item_ids=np.array([str(i) for i in range(1, 11)]),
        offsets=np.array([0, 4, 8, 12, 16], dtype=np.int64),
        items=np.array(sum(histories, []), dtype=np.int32),
        item_text=pl.DataFrame({"item": list(range(1, 11)), "title": [f"t{i}" for i in range(10)]}),
        metadata={"cache_key": "agree"},
    )
    users = np.full((4, 2), -1)
    users[0, 0], users[1, 0], users[3, 0] = 3, 0, 0  # shares item 1; nothing; shares item 1
    items = np.zeros((11, 2), dtype=np.int64)
    items[1, 0], items[3, 0], items[9, 0] = 2, 5, 10  # u0 bought both; nobody; only in valid/test
    np.save(tmp_path / "user_neighbours.npy", users)
    np.save(tmp_path / "item_neighbours.npy", items)
    got = neighbour_agreement(dataset, tmp_path)
    assert got["users_sharing_an_item"] == pytest.approx(2 / 3, abs=1e-4)
    assert got["items_bought_together"] == pytest.approx(1 / 2)
    assert 0.0 <= got["users_sharing_an_item_random"] <= 1.0
