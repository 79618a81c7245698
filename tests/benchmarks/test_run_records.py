"""Finished benchmark runs survive a fresh clone: records are kept in git and restored into runs/."""

import json
import sys
from pathlib import Path

import numpy as np

from llmseqrec.text.cache import CacheKeyParts, ResponseCache

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from run_records import (  # noqa: E402
    keep,
    keep_artefact,
    keep_files,
    keep_llm_answers,
    restore,
    restore_artefacts,
    restore_llm_answers,
    write_report,
)


def _run(root: Path, finished: bool) -> Path:
    directory = root / "beauty" / "none-sasrec" / "abc123"
    directory.mkdir(parents=True)
    (directory / "config.yaml").write_text("dataset: beauty\n")
    (directory / "metrics.json").write_text(
        json.dumps({"finished": finished, "test": {"hr@10": 0.1}})
    )
    np.save(directory / "ranks_test.npy", np.arange(50, dtype=np.int64))
    (directory / "state.pt").write_bytes(b"resume state")
    (directory / "checkpoint.pt").write_bytes(b"weights")
    return directory


def test_keep_copies_only_the_small_record_of_a_finished_run(tmp_path):
    runs, records = tmp_path / "runs", tmp_path / "records"
    record = keep(_run(runs, finished=True), runs, records)
    assert record == records / "beauty" / "none-sasrec" / "abc123"
    assert sorted(p.name for p in record.iterdir()) == ["config.yaml", "metrics.json", "ranks.npz"]


def test_an_unfinished_run_is_not_kept(tmp_path):
    runs, records = tmp_path / "runs", tmp_path / "records"
    assert keep(_run(runs, finished=False), runs, records) is None
    assert not records.exists()


def test_restore_replaces_an_unfinished_scratch_run_and_leaves_finished_ones(tmp_path):
    runs, records = tmp_path / "runs", tmp_path / "records"
    keep(_run(tmp_path / "elsewhere", finished=True), tmp_path / "elsewhere", records)
    scratch = _run(runs, finished=False)
    assert restore(runs, records) == 1
    assert json.loads((scratch / "metrics.json").read_text())["finished"] is True
    assert not (scratch / "state.pt").exists()  # a stale resume state would be resumed over
    ranks = np.load(scratch / "ranks_test.npy")
    assert ranks.dtype == np.int64 and np.array_equal(ranks, np.arange(50))
    assert restore(runs, records) == 0


def test_regenerating_a_report_keeps_its_hand_written_notes(tmp_path):
    report = tmp_path / "method.md"
    (tmp_path / "method.notes.md").write_text("## Reading\n\nWhat was tried.\n")
    write_report(report, "# Table v1\n")
    write_report(report, "# Table v2\n")
    assert report.read_text() == "# Table v2\n\n## Reading\n\nWhat was tried.\n"


def test_a_report_without_notes_is_just_the_tables(tmp_path):
    report = tmp_path / "method.md"
    write_report(report, "# Table\n\n")
    assert report.read_text() == "# Table\n"


def test_every_script_reads_seeds_as_seed_values_and_refuses_a_count():
    # The scripts disagreed: four read '--seeds 3' as a count, sracl as seed values, so the
    # same flag meant seeds 42-44 in one and seed 3 in another.
    import argparse

    import pytest
    from run_records import SEEDS, add_seeds_argument, seeds_to_train

    parser = argparse.ArgumentParser(prog="bench")
    add_seeds_argument(parser)
    default = parser.parse_args([])
    assert seeds_to_train(default, multi_seed=True) == list(SEEDS)
    assert seeds_to_train(default, multi_seed=False) == [42]
    asked = parser.parse_args(["--seeds", "43,44"])
    assert seeds_to_train(asked, multi_seed=False) == [43, 44]
    for bad in ("3", "42,x", ","):
        with pytest.raises(SystemExit):
            parser.parse_args(["--seeds", bad])


def test_a_machine_without_the_cache_keeps_the_recorded_section(tmp_path, monkeypatch):
    # Sections read from cache/ (LLM chunks, summaries, embedding timings) used to shrink to
    # 'not run yet' when a report was regenerated on a new machine, losing measured figures
    # (the Office LLMSeR stage: 288 users; SRA-CL's 7,312 summaries; LLM-CFSR's timings).
    import run_records

    monkeypatch.setattr(run_records, "ROOT", tmp_path)
    store = tmp_path / "sections"
    fuller = ["- office: 288 / 4905 users through the LLM"]
    assert run_records.kept_section("stage", fuller, 912, store) == fuller
    kept = run_records.kept_section("stage", ["- office: no finished LLM chunk"], 0, store)
    assert kept[0] == fuller[0] and "0 vs 912" in kept[-2]
    assert json.loads((store / "stage.json").read_text())["lines"] == fuller
    more = ["- office: 400 / 4905 users through the LLM"]
    assert run_records.kept_section("stage", more, 1200, store) == more
    assert json.loads((store / "stage.json").read_text())["seen"] == 1200
    assert run_records.kept_section("never-ran", ["not run."], 0, store) == ["not run."]
    assert not (store / "never-ran.json").exists()


def test_blocks_are_kept_one_by_one_so_a_machine_ahead_on_one_stage_keeps_the_others(
    tmp_path, monkeypatch
):
    # A new machine had restored the LLM chunks and answers from git (so it saw more of
    # those) but not the LLM-free stages or the choice tables, which rebuild from cache/; as
    # one section, its report dropped every Office table and LLM-free line (stop 48).
    import run_records

    monkeypatch.setattr(run_records, "ROOT", tmp_path)
    store = tmp_path / "sections"
    first = [
        ("free:office", ["- office LLM-free: 4905 users"], 4905),
        ("choices:office", ["", "Office table, 4905 users"], 4905),
        ("chunks:beauty", ["- beauty: no finished LLM chunk"], 0),
        ("answers", ["19852 answers"], 19852),
    ]
    assert run_records.kept_blocks("stage", first, store) == [
        line for _, lines, _ in first for line in lines
    ]
    later = [
        ("free:office", [], 0),
        ("choices:office", ["", "Office table, 256 users"], 256),
        ("chunks:beauty", ["- beauty: 288 / 22363 users"], 288),
        ("answers", ["20428 answers"], 20428),
    ]
    text = run_records.kept_blocks("stage", later, store)
    assert text[:5] == [
        "- office LLM-free: 4905 users",
        "",
        "Office table, 4905 users",
        "- beauty: 288 / 22363 users",
        "20428 answers",
    ]
    assert "kept in `sections/stage.json`" in text[-2]
    record = json.loads((store / "stage.json").read_text())["blocks"]
    assert record["chunks:beauty"]["seen"] == 288 and record["free:office"]["seen"] == 4905
    # a block the report no longer produces is still shown, after the others
    assert run_records.kept_blocks("stage", later[1:], store)[4] == "- office LLM-free: 4905 users"


def _epochs(directory: Path, count: int) -> None:
    lines = [json.dumps({"event": "epoch", "epoch": e}) for e in range(count)]
    (directory / "log.jsonl").write_text("\n".join(lines) + "\n")


def test_a_paused_run_travels_in_flight_to_a_new_machine_and_is_dropped_once_finished(tmp_path):
    old_runs, new_runs, records = (
        tmp_path / "old" / "runs",
        tmp_path / "new" / "runs",
        tmp_path / "records",
    )
    paused = _run(old_runs, finished=False)
    _epochs(paused, 3)
    assert keep(paused, old_runs, records) is None  # not a record: a resume state
    inflight = tmp_path / "inflight" / "beauty" / "none-sasrec" / "abc123"
    assert (inflight / "state.pt").read_bytes() == b"resume state"
    assert (inflight / "checkpoint.pt").read_bytes() == b"weights"
    assert not (inflight / "ranks_test.npy").exists() and not records.exists()

    assert restore(new_runs, records) == 1  # the new machine continues this run
    moved = new_runs / "beauty" / "none-sasrec" / "abc123"
    assert (moved / "state.pt").read_bytes() == b"resume state"
    assert restore(new_runs, records) == 0  # already there, as far

    _epochs(moved, 5)  # it went on here: an older in-flight copy must not overwrite it
    (moved / "state.pt").write_bytes(b"later state")
    assert restore(new_runs, records) == 0
    assert (moved / "state.pt").read_bytes() == b"later state"

    (moved / "metrics.json").write_text(json.dumps({"finished": True, "test": {"hr@10": 0.2}}))
    assert keep(moved, new_runs, records) is not None
    assert not inflight.exists()  # finished: only the small record stays in git


def test_a_stale_in_flight_copy_never_replaces_a_finished_record(tmp_path):
    runs, records = tmp_path / "runs", tmp_path / "records"
    keep(_run(tmp_path / "a", finished=False), tmp_path / "a", records)
    keep(_run(tmp_path / "b", finished=True), tmp_path / "b", records)
    restore(runs, records)
    restored = runs / "beauty" / "none-sasrec" / "abc123"
    assert json.loads((restored / "metrics.json").read_text())["finished"] is True
    assert not (restored / "state.pt").exists()


def test_a_kept_scoring_artefact_reaches_a_new_machine_and_never_overwrites_its_cache(tmp_path):
    old_cache, new_cache, kept = tmp_path / "old", tmp_path / "new", tmp_path / "artefacts"
    artefact = old_cache / "beauty" / "cllmrec" / "37a9201e"
    (artefact / "chunks").mkdir(parents=True)
    np.save(artefact / "scores.npy", np.arange(5, dtype=np.float32))
    (artefact / "cost.json").write_text('{"seconds": 1}')
    np.save(artefact / "chunks" / "chunk-00000.npy", np.zeros(5))  # scratch: not kept
    target = keep_artefact(artefact, old_cache, ("scores.npy", "cost.json", "options.json"), kept)
    assert sorted(p.name for p in target.iterdir()) == ["cost.json", "scores.npy"]

    assert restore_artefacts(new_cache, kept) == 2
    moved = new_cache / "beauty" / "cllmrec" / "37a9201e"
    np.testing.assert_array_equal(np.load(moved / "scores.npy"), np.arange(5))
    (moved / "cost.json").write_text('{"seconds": 2}')  # this machine's own file wins
    assert restore_artefacts(new_cache, kept) == 0
    assert (moved / "cost.json").read_text() == '{"seconds": 2}'


def test_a_growing_stage_keeps_each_new_file_once(tmp_path):
    cache, kept = tmp_path / "cache", tmp_path / "artefacts"
    chunks = cache / "office" / "llmser" / "d84f" / "chunks"
    chunks.mkdir(parents=True)
    (chunks / "llm-0000000-0000032.npz").write_bytes(b"first")
    assert keep_files(sorted(chunks.iterdir()), cache, kept) == 1
    (chunks / "llm-0000032-0000064.npz").write_bytes(b"second")
    assert keep_files(sorted(chunks.iterdir()), cache, kept) == 1  # only the new chunk
    assert restore_artefacts(tmp_path / "elsewhere", kept) == 2


def test_llm_answers_accumulate_in_parts_across_machines(tmp_path):
    parts = CacheKeyParts("llamacpp", "smollm2", "user_summary@v1")
    store = tmp_path / "llm-answers"
    first = ResponseCache(tmp_path / "first.sqlite")  # a session that got two answers
    for user in range(2):
        first.put(parts.key(f"u{user}"), parts, f"u{user}", f"summary {user}")
    assert keep_llm_answers(first, store) is not None
    assert keep_llm_answers(first, store) is None  # nothing new: no new part

    second = ResponseCache(tmp_path / "second.sqlite")  # a new machine continues the stage
    assert restore_llm_answers(second, store) == 2
    second.put(parts.key("u2"), parts, "u2", "summary 2")
    assert keep_llm_answers(second, store) is not None
    assert len(list(store.glob("*.jsonl.xz"))) == 2  # the second part holds only u2

    third = ResponseCache(tmp_path / "third.sqlite")
    assert restore_llm_answers(third, store) == 3
    assert third.get_many([parts.key("u2")])[parts.key("u2")].response == "summary 2"


def test_two_shards_stopping_together_keep_their_shared_answers_once(tmp_path, monkeypatch):
    import threading

    import run_records

    parts = CacheKeyParts("transformers", "smollm2", "llmser_pick_one@v1")
    store = tmp_path / "llm-answers"
    caches = [ResponseCache(tmp_path / f"shard{k}.sqlite") for k in (0, 1)]
    for cache in caches:  # the shards share one response cache: both hold every answer
        cache.put(parts.key("u0"), parts, "u0", "3")
    both_read = threading.Barrier(2)
    read_keys = run_records._kept_answer_keys

    def read_after_the_other(folder):
        try:  # without a lock both shards read the store before either writes its part
            both_read.wait(timeout=1)
        except threading.BrokenBarrierError:
            pass
        return read_keys(folder)

    monkeypatch.setattr(run_records, "_kept_answer_keys", read_after_the_other)
    shards = [threading.Thread(target=keep_llm_answers, args=(c, store)) for c in caches]
    for shard in shards:
        shard.start()
    for shard in shards:
        shard.join()
    assert len(list(store.glob("*.jsonl.xz"))) == 1


def test_run_progress_reads_validation_only_and_says_when_a_run_never_started(tmp_path):
    from run_records import run_progress

    assert run_progress(tmp_path / "never", "ndcg@10") is None
    run = tmp_path / "run"
    run.mkdir()
    epochs = [
        {"event": "start"},
        {"event": "epoch", "epoch": 0},
        {"event": "epoch", "epoch": 1, "valid": {"ndcg@10": 0.2, "hr@10": 0.5}},
        {"event": "epoch", "epoch": 2, "valid": {"ndcg@10": 0.1, "hr@10": 0.6}},
    ]
    (run / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs[:2]))
    assert run_progress(run, "ndcg@10") == "1 epochs, not validated yet"
    (run / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
    # the best epoch is chosen by the selection metric, and the other metric read at that epoch
    assert run_progress(run, "ndcg@10", "hr@10") == (
        "3 epochs so far, best validation hr@10 0.5000 at epoch 2 (test not read until it ends)"
    )


def _restore_into(runs: Path, records: Path, artefacts: Path, cache: Path) -> None:
    restore(runs, records)
    restore_artefacts(cache, artefacts)


def test_two_benchmarks_restoring_on_a_fresh_machine_at_once_both_get_every_record(tmp_path):
    # Stop 55: sracl.py and llmser.py started together on a fresh clone; one emptied a run folder
    # the other was copying into, and the LLM stage died with FileNotFoundError.
    import multiprocessing

    runs, records = tmp_path / "runs", tmp_path / "records"
    artefacts, cache = tmp_path / "artefacts", tmp_path / "cache"
    for k in range(150):
        record = records / "beauty" / "none-sasrec" / f"run{k}"
        record.mkdir(parents=True)
        (record / "config.yaml").write_text("dataset: beauty\n")
        (record / "log.jsonl").write_text('{"event": "epoch"}\n' * 20_000)
        (record / "metrics.json").write_text(json.dumps({"finished": True}))
        (artefacts / f"stage{k}").mkdir(parents=True)
        (artefacts / f"stage{k}" / "ccg.npz").write_bytes(bytes(200_000))
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_restore_into, args=(runs, records, artefacts, cache))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert [worker.exitcode for worker in workers] == [0, 0]
    assert restore(runs, records) == 0
    assert all((cache / f"stage{k}" / "ccg.npz").stat().st_size == 200_000 for k in range(150))


def test_every_training_benchmark_takes_the_flags_a_lent_gpus_grid_appends():
    # benchmarks/device/grid.sh appends --data, --device and --max-minutes to each line of its
    # list; llmser.py once lacked --device, so its rows could not go on a GPU grid.
    import re
    import subprocess

    root = Path(__file__).resolve().parents[2]
    scripts = ("backbones", "cllmrec", "llmcfsr", "llmser", "sracl")
    helps = {
        script: subprocess.Popen(
            [sys.executable, str(root / "benchmarks" / f"{script}.py"), "--help"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for script in scripts
    }
    for script, process in helps.items():
        usage, _ = process.communicate(timeout=120)
        assert process.returncode == 0, f"{script}.py --help failed"
        for flag in ("--data", "--device", "--max-minutes", "--epochs", "--seeds"):
            # a whole flag: llmser.py's --device-pack is not --device
            assert re.search(rf"{flag}(?![\w-])", usage), f"{script}.py lacks {flag}"


def test_an_llm_stage_stopped_by_sigterm_keeps_its_answers(tmp_path):
    """`timeout` and `kill` stop a background lane with SIGTERM, whose default action skips every
    finally: the answers the stage got must still be exported."""
    import os
    import subprocess

    benchmarks = Path(__file__).resolve().parents[2] / "benchmarks"
    stage = f"""
import os, signal, sys, time
sys.path.insert(0, {str(benchmarks)!r})
from pathlib import Path
from run_records import llm_answers_travel
from llmseqrec.text.cache import CacheKeyParts, ResponseCache
parts = CacheKeyParts("llamacpp", "smollm2", "user_summary@v1")
with llm_answers_travel(Path({str(tmp_path / "llm-answers")!r})):
    with ResponseCache() as cache:
        cache.put(parts.key("u0"), parts, "u0", "summary 0")
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)
"""
    env = {**os.environ, "LLMSEQREC_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-c", stage], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0  # stopped, not finished
    assert "new LLM answers kept in" in result.stdout, result.stdout + result.stderr
    second = ResponseCache(tmp_path / "second.sqlite")
    assert restore_llm_answers(second, tmp_path / "llm-answers") == 1
