"""Shared real parts for the text-layer tests: one SmolLM2 in-process, one local server, MiniLM.

Everything expensive is session-scoped; every test that writes answers gets its own cache file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from text_helpers import TEST_KEY, LocalServer


@pytest.fixture(scope="session")
def text_cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Model file hashes are remembered under the cache root: one root for the whole session
    # hashes each model file once.
    return tmp_path_factory.mktemp("llmseqrec-cache")


@pytest.fixture(autouse=True)
def _isolated_cache(text_cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMSEQREC_CACHE", str(text_cache_root))


def _with_cache(root: Path, build):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLMSEQREC_CACHE", str(root))
        return build()


@pytest.fixture(scope="session")
def smol_backend(text_cache_root: Path):
    """The packaged SmolLM2 loaded once, in-process (llamacpp backend)."""
    from llmseqrec.text.llm import ChatConfig, LlamaCppBackend

    # One thread: llama.cpp's spinning thread pool collapses when other test processes
    # compete for the same two cores; a single thread degrades gracefully.
    config = ChatConfig(parallel_slots=4, context_length=1024, threads=1)
    backend = _with_cache(text_cache_root, lambda: LlamaCppBackend(config))
    yield backend
    backend.close()


@pytest.fixture()
def smol_chat(smol_backend, tmp_path: Path):
    """A ChatModel over the shared SmolLM2 with a fresh cache file."""
    from llmseqrec.text.llm import ChatModel

    chat = ChatModel(
        smol_backend.config, backend=smol_backend, cache_path=tmp_path / "responses.sqlite"
    )
    yield chat
    chat.cache.close()


@pytest.fixture(scope="session")
def smol_server() -> Iterator[LocalServer]:
    """A real OpenAI-compatible server (xllamacpp + SmolLM2) on 127.0.0.1, requiring TEST_KEY."""
    server = LocalServer(slots=2, api_key=TEST_KEY).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def minilm(text_cache_root: Path):
    from llmseqrec.text.encoders import SentenceEncoder

    return _with_cache(text_cache_root, lambda: SentenceEncoder(cache=False))


@pytest.fixture(scope="session")
def attention_encoder(text_cache_root: Path):
    from llmseqrec.text.encoders import AttentionEncoder

    return _with_cache(text_cache_root, AttentionEncoder)
