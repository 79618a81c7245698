"""The LLMSeR report covers the whole grid, whichever part an invocation trained."""

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import llmser  # noqa: E402

from llmseqrec.training.config import build_run_config  # noqa: E402


def test_a_run_for_one_dataset_reports_every_dataset_and_seed(monkeypatch):
    # '--datasets office --seeds 42' used to write a report with Office seed 42 only.
    result = {"test": {"hr@10": 0.7, "ndcg@10": 0.4, "hr@20": 0.8, "ndcg@20": 0.5}, "best_epoch": 3}
    asked = []

    def finished(config):
        asked.append((config.dataset, config.train.seed))
        wanted = (config.dataset, config.model, config.method, config.train.seed)
        return result if wanted == ("yelp", "gru4rec", "none", 42) else None

    monkeypatch.setattr(llmser, "finished", finished)
    monkeypatch.setattr(llmser, "stage_section", lambda args, datasets: [])
    monkeypatch.setattr(llmser, "kept_blocks", _joined)
    args = argparse.Namespace(
        datasets=["office"], models=["sasrec"], seeds=[42], epochs=None, llm_users=None,
        sweeps=False, llm_ablations=False,
    )  # fmt: skip
    text = llmser.report(args, lambda name: SimpleNamespace(metadata={}))
    assert "## yelp, `p-s100`" in text and "| gru4rec | None | 0.7000 |" in text
    assert "- datasets office, beauty" in text  # no finished run there
    assert {seed for dataset, seed in asked if dataset == "office"} == set(llmser.SEEDS)


def test_finished_sweep_rows_stay_in_a_report_written_without_sweeps(monkeypatch):
    result = {"test": {"hr@10": 0.7, "ndcg@10": 0.4, "hr@20": 0.8, "ndcg@20": 0.5}, "best_epoch": 3}
    swept = dict(llmser.llmser_options(None, llm=False, n_pseudo=2))

    def finished(config):
        same = config.dataset == "office" and dict(config.enhancer) == swept
        return result if same and config.train.seed == 42 else None

    monkeypatch.setattr(llmser, "finished", finished)
    monkeypatch.setattr(llmser, "stage_section", lambda args, datasets: [])
    monkeypatch.setattr(llmser, "kept_blocks", _joined)
    args = argparse.Namespace(
        datasets=["office"], models=["sasrec"], seeds=None, epochs=None, llm_users=None,
        sweeps=False, llm_ablations=False,
    )  # fmt: skip
    text = llmser.report(args, lambda name: SimpleNamespace(metadata={}))
    assert "| sasrec | LLM-free M=2 | 0.7000 | 0.4000 |" in text
    assert "LLM-free M=4" not in text  # unfinished sweep rows only with --sweeps


def test_llm_ablation_rows_train_on_sasrec_p_s100_only_and_show_once_finished(monkeypatch):
    args = argparse.Namespace(
        datasets=["office"], models=["sasrec", "gru4rec"], seeds=[42], epochs=None,
        llm_users=None, sweeps=False, llm_ablations=True, pcl=True, pcl_llm=True,
    )  # fmt: skip
    ablated = [row for row in llmser.plan(args) if row[3].startswith("LLM w/o ")]
    assert {(protocol, model) for _, protocol, model, *_ in ablated} == {("p-s100", "sasrec")}
    assert sorted(row[5]["ablation"] for row in ablated) == sorted(llmser.LLM_ABLATIONS)
    assert all(row[5]["chat"] == llmser.llmser_options(None)["chat"] for row in ablated)
    without = argparse.Namespace(**{**vars(args), "llm_ablations": False})
    assert not any(row[3].startswith("LLM w/o ") for row in llmser.plan(without))

    result = {"test": {"hr@10": 0.7, "ndcg@10": 0.4, "hr@20": 0.8, "ndcg@20": 0.5}, "best_epoch": 3}
    wo_rcs = llmser.llmser_options(None, ablation="wo_rcs")
    free = llmser.llmser_options(None, llm=False, n_pseudo=2)

    def finished(config):
        ours = dict(config.enhancer) in (wo_rcs, free) and config.train.seed == 42
        return result if ours and config.dataset == "yelp" else None

    monkeypatch.setattr(llmser, "finished", finished)
    monkeypatch.setattr(llmser, "stage_section", lambda args, datasets: [])
    monkeypatch.setattr(llmser, "kept_blocks", _joined)
    text = llmser.report(without, lambda name: SimpleNamespace(metadata={}))
    ablation_row = "| sasrec | LLM w/o RCS (history oldest first) | 0.7000 | 0.4000 |"
    assert ablation_row in text
    assert "| LLM w/o SNF" not in text  # unfinished ablation rows only with --llm-ablations
    # the paper's LLMSeR figure sits beside the full method's row only (it was on every row)
    for row in (ablation_row, "| sasrec | LLM-free M=2 | 0.7000 | 0.4000 |"):
        assert text.split(row)[1].split("\n")[0].startswith(" 0.8000 / 0.5000 | 42 | - |")
    assert "| sasrec | LLMSeR (LLM for all users) | not run | | | | 0.7558 / 0.4950 |" in text


def test_the_reading_sets_the_llm_row_beside_its_llm_free_twin_and_ablations_beside_it(
    monkeypatch,
):
    # The reading compared every row with the backbone only, so "what does the chat model add"
    # (LLM row against the LLM-free row) had to be worked out by hand in the notes.
    ndcg = {"none": 0.30, "llm": 0.32, "free": 0.33, "wo_snf": 0.31}
    llm, free = llmser.llmser_options(None), llmser.llmser_options(None, llm=False)
    wo_snf = llmser.llmser_options(None, ablation="wo_snf")

    def finished(config):
        if config.dataset != "office" or config.protocol != "p-s100" or config.model != "sasrec":
            return None
        enhancer = dict(config.enhancer)
        row = next((k for k, v in (("llm", llm), ("free", free), ("wo_snf", wo_snf))
                    if enhancer == v), "none" if config.method == "none" else None)  # fmt: skip
        if row is None:
            return None
        value = ndcg[row] + 0.001 * (config.train.seed - 43)  # seeds move every row alike
        test = {"hr@10": value + 0.2, "ndcg@10": value, "hr@20": 0.8, "ndcg@20": 0.5}
        return {"test": test, "best_epoch": 3}

    monkeypatch.setattr(llmser, "finished", finished)
    monkeypatch.setattr(llmser, "stage_section", lambda args, datasets: [])
    monkeypatch.setattr(llmser, "kept_blocks", _joined)
    groups = {group: {"ndcg@10": 0.3, "users": 1} for group in llmser.GROUPS}
    monkeypatch.setattr(llmser, "group_metrics", lambda config, data: groups)
    monkeypatch.setattr(llmser, "plot_groups", lambda rows: None)
    args = argparse.Namespace(
        datasets=["office"], models=["sasrec"], seeds=None, epochs=None, llm_users=None,
        sweeps=False, llm_ablations=False,
    )  # fmt: skip
    text = llmser.report(args, lambda name: SimpleNamespace(metadata={}))
    reading = text.split("## Reading")[1]
    where = "- office `p-s100` sasrec, "
    assert (
        f"{where}LLMSeR (LLM for all users): NDCG@10 +0.0200, HR@10 +0.0200 vs None on the same "
        "seeds (helps; seeds 42,43,44)." in reading
    )
    assert (
        f"{where}LLMSeR (LLM for all users): NDCG@10 -0.0100, HR@10 -0.0100 vs LLMSeR LLM-free "
        "(CCG top-M, fwd top-1) on the same seeds (lower; seeds 42,43,44)." in reading
    )
    assert (
        f"{where}LLM w/o SNF (CCG top-M, LLM ARV): NDCG@10 -0.0100, HR@10 -0.0100 vs LLMSeR "
        "(LLM for all users) on the same seeds (lower; seeds 42,43,44)." in reading
    )
    assert reading.count(" vs ") == 5  # three rows against None, two pairs beside them


def test_llm_rows_name_their_chat_backend_and_llm_free_rows_keep_their_hash():
    assert "chat" not in llmser.llmser_options(None, llm=False)  # finished runs stay matched
    assert llmser.llmser_options(None)["chat"]["backend"] == "transformers"
    assert llmser.llmser_options(8)["chat"]["dtype"] == "bfloat16"


def test_stage_build_time_comes_from_the_chunks_not_from_the_call_that_read_them():
    read_only = {"prepare_wall_seconds_this_call": 1.2, "chunks": 10}
    assert llmser.build_time({**read_only, "build_seconds": 640.0, "chunks_timed": 10}) == (
        "chunks built in 640 s of one process"
    )
    assert "at least 64 s" in llmser.build_time(
        {**read_only, "build_seconds": 64.0, "chunks_timed": 1}
    )
    untimed = llmser.build_time(read_only)
    assert untimed.startswith("build time not recorded") and "read it in 1 s" in untimed


def _joined(name, blocks) -> list[str]:
    return [line for _, lines, _ in blocks for line in lines]


def _chunk(path: Path, users, chosen, verify, picked, omega, counters) -> None:
    offsets = np.cumsum([0] + [len(c) for c in chosen])
    np.savez(
        path, users=np.array(users), pseudo_offsets=offsets,
        pseudo_items=np.array([i for c in chosen for i in c], dtype=np.int64),
        verify=np.array(verify), picked=np.array(picked), omega=np.array(omega, np.float32),
        counters=np.array(json.dumps(counters)),
    )  # fmt: skip


def test_stage_section_sets_each_chat_model_choice_next_to_its_own_llm_free_choice(
    monkeypatch, tmp_path
):
    # Three users through the LLM on Office; their last training items (the masked ARV
    # targets) are 10, 13 and 16.
    chunks = tmp_path / "office-stage" / "chunks"
    chunks.mkdir(parents=True)
    counters = {"snf_users": 3, "snf_fallback_users": 1, "calls": 4, "cache_hits": 1,
                "tokens_in": 400, "tokens_out": 40, "llm_wall_seconds": 8.0}  # fmt: skip
    verify = [[10, 11, 12], [13, 14, 15], [16, 17, 18]]
    _chunk(chunks / "llm-0000000-0000003.npz", [0, 1, 2], [[5, 6], [8, 9], [20]],
           verify, [10, 15, 18], [1.0, 0.5, 0.0], counters)  # fmt: skip
    _chunk(chunks / "plain-0000000-0000003.npz", [0, 1, 2], [[5, 6], [7, 8], [20, 21]],
           verify, [10, 13, 17], [1.0, 1.0, 0.4], {})  # fmt: skip
    free_cost = {"users": 4, "build_seconds": 30.0, "chunks_timed": 1, "chunks": 1,
                 "prepare_wall_seconds_this_call": 0.5, "ccg_seconds": 3.0,
                 "mean_pseudo_items": 2.0, "mean_omega": 1.0}  # fmt: skip

    def stage_cost(dataset, data, enhancer, protocol, epochs):
        directory = tmp_path / ("office-stage" if (dataset, protocol) == ("office", "p-s100")
                                else f"{dataset}-{protocol}")  # fmt: skip
        if directory.name == "office-stage" and enhancer.get("llm") is False:
            return free_cost, directory / "cost-llm0.json"
        return None, directory / "cost-llm4.json"

    targets = {0: 10, 1: 13, 2: 16}
    data = SimpleNamespace(
        n_users=4, split=SimpleNamespace(train_sequence=lambda u: np.array([3, targets[u]]))
    )
    monkeypatch.setattr(llmser, "stage_cost", stage_cost)
    monkeypatch.setattr(llmser, "ROOT", tmp_path)
    monkeypatch.setattr(llmser, "arv_order_probe", lambda args, dataset, data: [])
    monkeypatch.setenv("LLMSEQREC_HOME", str(tmp_path))  # no response cache there
    args = argparse.Namespace(llm_users=None, epochs=None)

    blocks = llmser.stage_section(args, lambda name: data)
    text = "\n".join(_joined("stage", blocks))
    seen = {key: n for key, _, n in blocks}

    # each block says how much of the cache it shows, so a fuller kept one can stand in for it
    assert seen["free:office:p-s100"] == 4 and seen["chunks:office:p-s100"] == 3
    assert seen["choices:office:p-s100"] == 3 and seen["runs:office:p-s100"] == 0
    assert seen["answers"] == 3 and seen["choices:beauty:p-cl"] == 0
    assert "office `p-s100`, LLM-free stage" in text and "chunks built in 30 s" in text
    assert "3 / 4 users through the LLM (coverage 75.0%); 4 model calls, 1 cache hits (20%)" in (
        text
    )
    assert "- beauty `p-s100`: no finished LLM chunk (16 users)." in text
    assert "beauty `p-s100`, LLM chunks on disk" not in text  # one line for both when empty
    assert "`p-cl`" not in text  # no p-cl stage has begun
    assert "| SNF: answer grounded to M items without CCG fill | 66.7% |" in text
    assert "| SNF: pseudo items shared with CCG top-M | 66.7% | 100% |" in text
    assert "| SNF: same items in the same order as CCG top-M | 33.3% | 100% |" in text
    assert "| ARV: pick = forward model's top-1 | 33.3% | 100% |" in text
    assert "| ARV: pick position in the forward top-H (1, 2, 3) | 1: 33%, 2: 0%, 3: 67% |" in text
    assert "| ARV: pick = the last of the H candidates | 66.7% | 0% |" in text
    assert "| ARV: pick = the masked (true) item | 33.3% | 66.7% |" in text
    assert "| mean omega | 0.500 | 0.800 |" in text
    assert "the stage is unfinished: only the first 3 of 4 users" in text
    assert "Built on a CPU not recorded: 1 chunk." in text


def test_a_finished_stage_that_the_rows_used_gets_one_line_not_two(monkeypatch, tmp_path):
    # Beauty's report once printed the same stage twice: "this table's runs" and "LLM chunks
    # on disk (full stage, may still run)", word for word, once the stage was complete.
    chunks = tmp_path / "office-stage" / "chunks"
    chunks.mkdir(parents=True)
    counters = {"snf_users": 3, "calls": 6, "cache_hits": 0, "llm_wall_seconds": 9.0}
    _chunk(chunks / "llm-0000000-0000003.npz", [0, 1, 2], [[5], [8], [20]],
           [[10, 11], [13, 14], [16, 17]], [10, 13, 16], [1.0, 0.5, 0.0], counters)  # fmt: skip
    used = {"llm_users": 3, "users": 3, "coverage": 1.0, "mean_omega": 0.5, **counters}

    def stage_cost(dataset, data, enhancer, protocol, epochs):
        directory = tmp_path / ("office-stage" if (dataset, protocol) == ("office", "p-s100")
                                else f"{dataset}-{protocol}")  # fmt: skip
        if "ablation" in enhancer:  # an ablation row's own stage: none here
            directory = tmp_path / f"{dataset}-{enhancer['ablation']}"
        elif directory.name == "office-stage" and enhancer.get("llm") is not False:
            return used or None, directory / "cost-llm3.json"
        return None, directory / "cost-llm3.json"

    data = SimpleNamespace(
        n_users=3, split=SimpleNamespace(train_sequence=lambda u: np.array([3, 10 + 3 * u]))
    )
    monkeypatch.setattr(llmser, "stage_cost", stage_cost)
    monkeypatch.setattr(llmser, "ROOT", tmp_path)
    monkeypatch.setattr(llmser, "arv_order_probe", lambda args, dataset, data: [])
    monkeypatch.setenv("LLMSEQREC_HOME", str(tmp_path))
    args = argparse.Namespace(llm_users=None, epochs=None)

    blocks = llmser.stage_section(args, lambda name: data)
    office = [line for _, lines, _ in blocks for line in lines if "office `p-s100`" in line]
    seen = {key: n for key, _, n in blocks}

    assert len(office) == 1
    assert office[0].startswith("- office `p-s100`, this table's runs = the LLM chunks on disk: ")
    assert "3 / 3 users through the LLM" in office[0] and "Built on" in office[0]
    # both blocks count the stage, so an older kept pair of lines cannot stand in for them
    assert seen["runs:office:p-s100"] == seen["chunks:office:p-s100"] == 3

    used.clear()  # a machine that never assembled the stage: the rows read every chunk
    blocks = llmser.stage_section(args, lambda name: data)
    office = [line for _, lines, _ in blocks for line in lines if "office `p-s100`, " in line]
    assert len(office) == 1 and "this table's runs = the LLM chunks on disk: 3 / 3" in office[0]

    used.update(llm_users=3, users=3, coverage=1.0, mean_omega=0.5, **counters)
    used["calls"] = 4  # rows trained on an earlier part of the stage: two lines again
    blocks = llmser.stage_section(args, lambda name: data)
    text = "\n".join(line for _, lines, _ in blocks for line in lines)
    assert "office `p-s100`, this table's runs: " in text
    assert "office `p-s100`, LLM chunks on disk (full stage, may still run): " in text


def test_llm_users_reached_stops_at_the_first_user_without_a_finished_chunk(tmp_path):
    chunks = tmp_path / "chunks"
    chunks.mkdir()
    assert llmser.llm_users_reached(tmp_path) == 0
    for name in ("llm-0000000-0000016", "llm-0000016-0000032", "llm-0000048-0000064"):
        (chunks / f"{name}.npz").touch()
    (chunks / "plain-0000032-0000048.npz").touch()  # an LLM-free chunk is no LLM user
    assert llmser.llm_users_reached(tmp_path) == 32


def test_chunks_built_on_a_gpu_are_named_and_kept_out_of_the_one_core_rate(tmp_path):
    chunks = tmp_path / "chunks"
    chunks.mkdir()
    for name, users, wall, gpu in (("0000000-0000002", [0, 1], 20.0, None),
                                   ("0000002-0000004", [2, 3], 1.0, "NVIDIA H100")):  # fmt: skip
        _chunk(chunks / f"llm-{name}.npz", users, [[5], [6]], [[5], [6]], [5, 6], [0.5, 0.5],
               {"llm_wall_seconds": wall, "calls": 4})  # fmt: skip
        data = dict(np.load(chunks / f"llm-{name}.npz"))
        data["cpu"] = np.array("AMD EPYC")
        if gpu:
            data["gpu"] = np.array(gpu)
        np.savez(chunks / f"llm-{name}.npz", **data)
    totals = llmser.chunk_totals(tmp_path)
    assert totals["llm_users"] == 4 and totals["llm_wall_seconds"] == 21.0
    assert (totals["cpu_users"], totals["cpu_wall_seconds"]) == (2, 20.0)
    assert llmser.built_on(totals) == "built on AMD EPYC: 1 chunk, NVIDIA H100 (GPU): 1 chunk"


def test_device_pack_carries_the_chat_model_and_every_item_embedding(tiny, home, tmp_path):
    # A lent GPU gets neither model package: the stage's omega must find every item text's
    # embedding under the encoder's recorded identity, and the GGUF must be byte-identical
    # (its hash is part of every answer's cache key).
    from llmseqrec.text import packaged_gguf
    from llmseqrec.text.encoders import EmbeddingCache

    enhancer = llmser.LLMSeR({"chunk_users": 16})
    enhancer.configure(build_run_config("tiny", "sasrec", "llmser", "p-s100", {}))
    llmser.device_pack(enhancer, tiny, tmp_path / "pack")
    gguf = packaged_gguf()
    assert (tmp_path / "pack" / gguf.parent.name / gguf.name).read_bytes() == gguf.read_bytes()
    assert (tmp_path / "pack" / gguf.parent.name / "__init__.py").exists()
    identities = json.loads((tmp_path / "pack/cache/text/model_identities.json").read_text())
    identity = identities["sentence-encoder|packaged"]["identity"]
    hashes = {EmbeddingCache.text_hash(t) for t in enhancer.item_texts(tiny)}
    packed = EmbeddingCache(tmp_path / "pack/cache/text/embeddings.sqlite")
    assert len(packed.get_many(identity, sorted(hashes))) == len(hashes)
