"""The openai backend against a real OpenAI-compatible server (xllamacpp + SmolLM2 on
127.0.0.1) and, for faults a real model cannot produce on demand, a scripted local endpoint."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest
from text_helpers import (
    TEST_KEY,
    TEST_KEY_ENV,
    LocalServer,
    ScriptedServer,
    chat_completion,
    user_prompt,
)

from llmseqrec.text.cache import ResponseCache
from llmseqrec.text.errors import LlmRequestError
from llmseqrec.text.grounding import Grounder, GroundingStats
from llmseqrec.text.llm import ChatConfig, ChatModel

FAST_RETRIES = {"max_retries": 3, "backoff_s": 0.01, "backoff_max_s": 0.05}


def openai_chat(base_url: str, cache: Path, **overrides) -> ChatModel:
    config = ChatConfig(
        backend="openai",
        model="smollm2",
        base_url=base_url,
        api_key_env=TEST_KEY_ENV,
        cache_path=cache,
        timeout_s=60,
    )
    return ChatModel(config, **overrides)


@pytest.fixture()
def key_in_env(monkeypatch):
    monkeypatch.setenv(TEST_KEY_ENV, TEST_KEY)


def test_real_server_answers_with_json_schema(smol_server, key_in_env, tmp_path):
    chat = openai_chat(smol_server.base_url, tmp_path / "c.sqlite", concurrency=2)
    schema = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"type": "integer"}}},
        "required": ["items"],
    }
    prompts = [f"Candidates: 1. soap 2. shampoo 3. lotion. Pick {n} as JSON." for n in (1, 2, 3)]
    answers = chat.generate(prompts, max_tokens=64, json_schema=schema)
    assert len(answers) == 3
    assert chat.usage.calls == 3 and chat.usage.tokens_out > 0
    # Constrained decoding gives JSON (possibly cut short by max_tokens: then grounding copes).
    assert any(isinstance(json.loads(a), dict) for a in answers if a.rstrip().endswith("}"))
    rerun = openai_chat(smol_server.base_url, tmp_path / "c.sqlite")
    assert rerun.generate(prompts, max_tokens=64, json_schema=schema) == answers
    assert rerun.usage.calls == 0 and rerun.usage.cache_hits == 3


def test_server_killed_mid_stage_then_restarted_resumes(key_in_env, tmp_path):
    server = LocalServer(slots=1, api_key=TEST_KEY).start()
    cache_path = tmp_path / "stage.sqlite"
    prompts = [f"Write one sentence about product number {i}." for i in range(10)]
    watcher_cache = ResponseCache(cache_path)

    def kill_after_three() -> None:
        deadline = time.monotonic() + 120
        while len(watcher_cache) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        server.kill()

    try:
        chat = openai_chat(server.base_url, cache_path, concurrency=1, **FAST_RETRIES)
        killer = threading.Thread(target=kill_after_three)
        killer.start()
        with pytest.raises(LlmRequestError, match="rerun to resume") as failure:
            chat.generate(prompts, max_tokens=24)
        killer.join()
        kept = len(watcher_cache)
        assert 3 <= kept < len(prompts)
        assert failure.value.completed == kept and failure.value.failed == len(prompts) - kept
        before = {
            row[0]: row[1]
            for row in watcher_cache._conn.execute("SELECT key, response FROM responses")
        }

        server.start()
        resumed = openai_chat(server.base_url, cache_path, concurrency=2, **FAST_RETRIES)
        answers = resumed.generate(prompts, max_tokens=24)
        assert resumed.usage.calls == len(prompts) - kept and resumed.usage.cache_hits == kept
        after = {
            row[0]: row[1]
            for row in watcher_cache._conn.execute("SELECT key, response FROM responses")
        }
        assert len(after) == len(prompts) and len(answers) == len(prompts)
        assert all(after[k] == v for k, v in before.items())  # cached answers kept as they were
        assert [after[resumed_key] for resumed_key in _keys(resumed, prompts)] == answers
        usage = {r["backend"]: r for r in watcher_cache.usage()}["openai"]
        assert usage["calls"] == len(prompts) and usage["failures"] == len(prompts) - kept
    finally:
        server.stop()
        watcher_cache.close()


def _keys(chat: ChatModel, prompts: list[str]) -> list[str]:
    from llmseqrec.text.cache import CacheKeyParts
    from llmseqrec.text.llm import GenerationParams

    params = GenerationParams(max_tokens=24).model_dump(mode="json")
    parts = CacheKeyParts("openai", chat.identity, "raw", params)
    return [parts.key(p) for p in prompts]


def test_retries_on_500_and_429_then_succeeds(tmp_path):
    def script(number, body, headers):
        if number == 0:
            return 500, {"error": "boom"}, {}, 0
        if number == 1:
            return 429, {"error": "slow down"}, {"retry-after": "0"}, 0
        return 200, chat_completion(f"echo: {user_prompt(body)}"), {}, 0

    with ScriptedServer(script) as fake:
        chat = openai_chat(fake.base_url, tmp_path / "c.sqlite", concurrency=1, **FAST_RETRIES)
        assert chat.generate(["hi"]) == ["echo: hi"]
        assert len(fake.requests) == 3 and chat.usage.calls == 1


def test_persistent_errors_and_timeouts_fail_with_one_line(tmp_path):
    with ScriptedServer(lambda n, b, h: (503, "<html>down</html>", {}, 0)) as fake:
        chat = openai_chat(fake.base_url, tmp_path / "a.sqlite", concurrency=1, **FAST_RETRIES)
        with pytest.raises(LlmRequestError, match="HTTP 503") as failure:
            chat.generate(["a", "b"])
        assert "\n" not in str(failure.value)
        assert len(fake.requests) == 4  # 1 + 3 retries for the first; the second fails fast

    def slow_then_fast(number, body, headers):
        return (
            200,
            chat_completion("late" if number == 0 else "on time"),
            {},
            (4.0 if number == 0 else 0),
        )

    with ScriptedServer(slow_then_fast) as fake:
        # the margin (1.5 s for the on-time answer) holds on a loaded 2-core machine
        chat = openai_chat(fake.base_url, tmp_path / "b.sqlite", timeout_s=1.5, **FAST_RETRIES)
        assert chat.generate(["x"]) == ["on time"]

    with ScriptedServer(lambda n, b, h: (200, chat_completion("never"), {}, 2.0)) as fake:
        chat = openai_chat(
            fake.base_url, tmp_path / "c.sqlite", timeout_s=0.3, max_retries=1, backoff_s=0.01
        )
        with pytest.raises(LlmRequestError, match="timed out after 0.3s"):
            chat.generate(["x"])


def test_malformed_response_bodies_are_retried(tmp_path):
    def script(number, body, headers):
        if number == 0:
            return 200, "this is not json", {}, 0
        if number == 1:
            return 200, {"choices": []}, {}, 0
        return 200, chat_completion("fine"), {}, 0

    with ScriptedServer(script) as fake:
        chat = openai_chat(fake.base_url, tmp_path / "c.sqlite", **FAST_RETRIES)
        assert chat.generate(["q"]) == ["fine"]


def test_non_json_answers_and_unknown_items_are_grounded_or_counted(tmp_path, minilm):
    titles = ["", "Rose Shampoo", "Argan Oil Conditioner", "Red Nail Polish", "Blue Nail Polish"]
    replies = {
        "a": "Sure! I would pick the red nail polish, it matches.",  # prose, not JSON
        "b": '{"items": [99, "Golden Unicorn Perfume"]}',  # items that do not exist
        "c": '```json\n{"items": [2, "Rose Shampoo"]}\n```',
    }
    with ScriptedServer(
        lambda n, b, h: (200, chat_completion(replies[user_prompt(b)]), {}, 0)
    ) as fake:
        chat = openai_chat(fake.base_url, tmp_path / "c.sqlite")
        answers = chat.generate(list(replies))
    stats = GroundingStats()
    grounder = Grounder(titles, minilm, stats=stats, min_similarity=0.5)
    candidates = [1, 3, 4]  # Argan Oil Conditioner (2) is NOT allowed
    picked = [grounder.ground(a, candidates, expect_json=True) for a in answers]
    assert picked[0] == [3]  # embedding fallback finds the red polish
    assert picked[1] == []  # 99 is out of range; the unicorn perfume matches nothing
    assert picked[2] == [3, 1]  # index 2 of the candidates = item 3; exact title = item 1
    assert all(set(p) <= set(candidates) for p in picked)
    assert stats.non_json == 1 and stats.invalid_index == 1 and stats.failed == 2
    assert stats.by_embedding == 1 and stats.by_index == 1 and stats.by_exact_title == 1
    assert stats.empty_answers == 1


def test_api_key_never_leaks(smol_server, key_in_env, tmp_path, caplog, monkeypatch, capfd):
    caplog.set_level(logging.DEBUG)
    chat = openai_chat(smol_server.base_url, tmp_path / "c.sqlite", **FAST_RETRIES)
    chat.generate(["Say hello."], max_tokens=4)
    saved_config = chat.config.model_dump_json()

    # Wrong key: the server answers 401; the error must not show either key.
    monkeypatch.setenv(TEST_KEY_ENV, "sk-wrong-key-0000")
    with pytest.raises(LlmRequestError, match="HTTP 401") as wrong:
        chat.generate(["Say goodbye."], max_tokens=4)

    # A server that echoes the Authorization header in its error body.
    monkeypatch.setenv(TEST_KEY_ENV, TEST_KEY)
    with ScriptedServer(
        lambda n, b, h: (400, {"error": f"bad header {h.get('Authorization')}"}, {}, 0)
    ) as fake:
        echo = openai_chat(fake.base_url, tmp_path / "d.sqlite")
        with pytest.raises(LlmRequestError) as echoed:
            echo.generate(["x"])
    chat.close()
    echo.close()

    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    out, err = capfd.readouterr()
    for secret in (TEST_KEY, "sk-wrong-key-0000"):
        assert secret not in caplog.text
        assert secret not in str(wrong.value) and secret not in str(echoed.value)
        assert secret.encode() not in stored
        assert secret not in saved_config and secret not in repr(vars(chat.backend))
        assert secret not in out and secret not in err
    assert "***" in str(echoed.value)


def test_a_pasted_key_is_refused_as_config():
    with pytest.raises(ValueError, match="NAME of an environment variable"):
        ChatConfig(backend="openai", api_key_env="sk-abc123-secret")
