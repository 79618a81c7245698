"""``ChatModel``: one front for three backends, with a persistent response cache.

Backends
- ``llamacpp``: a GGUF file run in-process by xllamacpp (llama.cpp's server engine); prompts
  run concurrently in ``parallel_slots`` slots that llama.cpp batches together.
- ``openai``: any OpenAI-compatible ``/chat/completions`` endpoint (vLLM, Ollama, llama.cpp
  server, DeepSeek, GLM, ...); async with a concurrency limit, timeouts and retries with
  backoff on 429 / 5xx / timeouts / dropped connections. The key is read from the
  environment variable *named* in the config at request time: it is never stored, logged or
  part of a cache key.
- ``transformers``: a local Hugging Face causal LM directory or a GGUF file (default: the
  packaged SmolLM2, which transformers dequantises), batched, on the GPU when one is present,
  bf16 on CPUs with native bf16; grammars and JSON schemas enforced by llguidance masks.

Every answer is written to the cache the moment it arrives; ``generate`` asks the backend
only for prompts the cache does not hold, so a rerun of a finished stage makes zero calls and
a stage that died half-way resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmseqrec.errors import ConfigError
from llmseqrec.text.cache import CacheKeyParts, ResponseCache, UsageCounters
from llmseqrec.text.constrained import (
    GrammarMask,
    check_grammar,
    compile_grammar,
    guidance_tokenizer,
)
from llmseqrec.text.errors import LlmRequestError, ModelNotFoundError
from llmseqrec.text.locate import model_fingerprint, offline_hub, packaged_gguf, require_path
from llmseqrec.text.requant import resolve_gguf

log = logging.getLogger(__name__)

BackendName = Literal["llamacpp", "openai", "transformers"]
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Statuses worth another try: rate limits, server-side trouble, request timeouts.
_RETRY_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504}


class GenerationParams(BaseModel):
    """Sampling settings; all of them are part of the cache key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = 0
    stop: tuple[str, ...] = ()
    system: str | None = Field(None, description="system message sent before every prompt")
    json_schema: dict[str, Any] | None = Field(
        None, description="constrain the answer to this JSON schema where the backend supports it"
    )
    grammar: str | None = Field(
        None, description="a GBNF grammar (llama.cpp backends and transformers; not openai)"
    )


class ChatConfig(BaseModel):
    """Which model answers, and how it is reached. Safe to save: it holds no secret."""

    model_config = ConfigDict(extra="forbid")

    backend: BackendName = "llamacpp"
    model: str | None = Field(
        None,
        description="llamacpp / transformers: a .gguf path (default: packaged SmolLM2-135M-Instruct) "
        "or, for transformers, a local HF model directory; openai: the served model name",
    )
    base_url: str | None = Field(
        None, description="openai: endpoint base, e.g. http://127.0.0.1:8080/v1"
    )
    api_key_env: str | None = Field(
        "OPENAI_API_KEY", description="openai: NAME of the environment variable holding the key"
    )
    model_identity: str | None = Field(
        None, description="override the model identity used in cache keys"
    )
    context_length: int | None = Field(
        None,
        ge=64,
        description="tokens per request (default: 2048 llamacpp, 8192 openai, model's own for transformers)",
    )
    parallel_slots: int = Field(
        16, ge=1, description="llamacpp: requests decoded together (16: 2.15x one at a time on CPU)"
    )
    threads: int | None = Field(
        None,
        ge=1,
        description="llamacpp: CPU threads (default: all cores); transformers on CPU: torch's "
        "thread count, process-wide (default: torch's own)",
    )
    gpu_layers: int = Field(
        0, ge=-1, description="llamacpp: layers offloaded to a GPU build (-1 = all)"
    )
    requantize: Literal["auto", "off", "q4_0", "q8_0"] = Field(
        "auto",
        description="llamacpp: convert the GGUF weights once (cached) to a type whose CPU kernels "
        "batch parallel slots; auto = q4_0 for the packaged Q4_1 model, off for your own files",
    )
    concurrency: int = Field(8, ge=1, description="openai: requests in flight")
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(4, ge=0)
    backoff_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    structured_output: bool = Field(
        True,
        description="send json_schema / grammar to the server (turn off for endpoints that reject them)",
    )
    batch_size: int = Field(8, ge=1, description="transformers: prompts per forward batch")
    device: str | None = Field(
        None, description="transformers: cuda / cpu / mps (default: cuda when present)"
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="transformers: weight type; auto = float16 on cuda, bfloat16 on CPUs with "
        "native bf16, float32 otherwise (bf16's prompt tokens/s: ~3x float32's with AMX, "
        "~1.7x with AVX512-BF16 alone, where bf16 decoding is ~0.6x float32's)",
    )
    cache_path: Path | None = Field(
        None, description="response cache file (default: $LLMSEQREC_CACHE/llm/responses.sqlite)"
    )
    use_cache: bool = True
    verbose: bool = False

    @field_validator("api_key_env")
    @classmethod
    def _env_name_only(cls, value: str | None) -> str | None:
        # A pasted key here would end up in saved configs: refuse anything that is not a name.
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(
                "api_key_env must be the NAME of an environment variable (e.g. DEEPSEEK_API_KEY), not a key"
            )
        return value


@dataclass(frozen=True)
class Completion:
    text: str
    tokens_in: int
    tokens_out: int
    seconds: float


ResultCallback = Callable[[int, Completion], None]


class ChatBackend(Protocol):
    name: str
    # True: a GBNF ``grammar`` is held token by token in this process (else: send a JSON schema)
    enforces_grammar: bool
    identity: str
    context_length: int

    def complete(
        self, prompts: Sequence[str], params: GenerationParams, on_result: ResultCallback
    ) -> None:
        """Answer every prompt, calling ``on_result(i, completion)`` as each arrives.

        Raises :class:`LlmRequestError` after the others finish when some failed.
        """

    def count_tokens(self, text: str) -> int: ...

    def close(self) -> None: ...


def estimate_tokens(text: str) -> int:
    """A deliberately high token estimate (BPE averages ~4 bytes a token in English)."""
    return len(text.encode("utf-8")) // 3 + 1


@functools.lru_cache(maxsize=4)
def gguf_tokenizer(path: str) -> Any:
    """The tokenizer stored in a GGUF file (via transformers; ~10 s to parse, once per process)."""
    offline_hub()
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    gguf = Path(path)
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def _messages(prompt: str, params: GenerationParams) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": params.system}] if params.system else []
    messages.append({"role": "user", "content": prompt})
    return messages


def _chat_body(prompt: str, params: GenerationParams, *, structured: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messages": _messages(prompt, params),
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "seed": params.seed,
    }
    if params.stop:
        body["stop"] = list(params.stop)
    if structured and params.json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": params.json_schema, "strict": True},
        }
    elif structured and params.grammar is not None:
        body["grammar"] = params.grammar
    return body


def _parse_chat_response(payload: Any) -> tuple[str, int, int]:
    try:
        text = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        text = None
    if not isinstance(text, str):
        raise ValueError(f"response without choices[0].message.content: {str(payload)[:200]}")
    usage = payload.get("usage") or {}
    return text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def _raise_if_failed(backend: str, model: str, errors: list[str], total: int) -> None:
    """One error for a batch with failed requests: how many, and the first reason; the answers
    that did come back are already cached, so a rerun resumes."""
    if not errors:
        return
    completed = total - len(errors)
    raise LlmRequestError(
        f"{len(errors)} of {total} {backend} requests to {model} failed ({completed} answers "
        f"saved to the cache; rerun to resume): {errors[0]}",
        completed=completed,
        failed=len(errors),
    )


# --------------------------------------------------------------------------- llamacpp


class LlamaCppBackend:
    """A GGUF model in this process via xllamacpp, ``parallel_slots`` prompts decoded together."""

    name = "llamacpp"
    enforces_grammar = True  # GBNF held by llama.cpp itself

    def __init__(self, config: ChatConfig) -> None:
        self.config = config
        source, self.path, requantized = resolve_gguf(config.model, config.requantize)
        self.source = source  # requantised copies keep its vocabulary
        # The identity names the source file and the conversion: the converted copy is a cache.
        identity = f"{source.name}#{model_fingerprint(source)}"
        if requantized:
            identity += f"+{requantized}"
        self.identity = config.model_identity or identity
        self.context_length = config.context_length or 2048
        self._server: Any = None
        self._load_lock = threading.Lock()

    def _load(self) -> Any:
        with self._load_lock:
            if self._server is None:
                try:
                    import xllamacpp as xlc
                except ImportError as error:
                    raise ModelNotFoundError(
                        "the llamacpp backend needs xllamacpp: pip install xllamacpp"
                    ) from error
                params = xlc.CommonParams()
                params.model.path = str(self.path)
                params.n_parallel = self.config.parallel_slots
                # llama.cpp splits n_ctx across the slots: give each slot the full context.
                params.n_ctx = self.context_length * self.config.parallel_slots
                threads = self.config.threads or os.cpu_count() or 1
                params.cpuparams.n_threads = threads
                params.cpuparams_batch.n_threads = threads
                params.n_gpu_layers = self.config.gpu_layers
                params.verbosity = 3 if self.config.verbose else -1
                # xllamacpp also opens an HTTP endpoint on 127.0.0.1; a random key nobody
                # knows keeps other local users off it (direct calls do not need the key).
                params.api_keys = [secrets.token_hex(16)]
                log.info("loading %s with %d slots", self.path.name, self.config.parallel_slots)
                self._server = xlc.Server(params)
            return self._server

    def count_tokens(self, text: str) -> int:
        # Exact: the byte estimate undercounts titles full of model numbers and codes, and a
        # prompt over the context is refused by the server (2,249 tokens for a 2,048 context).
        return len(gguf_tokenizer(str(self.source))(text, add_special_tokens=False)["input_ids"])

    def complete(
        self, prompts: Sequence[str], params: GenerationParams, on_result: ResultCallback
    ) -> None:
        server = self._load()
        errors: list[str] = []

        def run(index: int) -> None:
            body = _chat_body(prompts[index], params, structured=self.config.structured_output)
            started = time.perf_counter()
            try:
                text, tokens_in, tokens_out = _parse_chat_response(
                    server.handle_chat_completions(body)
                )
            except Exception as error:  # a failed prompt must not lose the others' answers
                errors.append(str(error).splitlines()[0] if str(error) else type(error).__name__)
                return
            on_result(index, Completion(text, tokens_in, tokens_out, time.perf_counter() - started))

        # The C++ server releases the GIL while decoding, so threads fill its slots.
        with ThreadPoolExecutor(max_workers=self.config.parallel_slots) as pool:
            list(pool.map(run, range(len(prompts))))
        _raise_if_failed(self.name, self.identity, errors, len(prompts))

    def close(self) -> None:
        self._server = None


# --------------------------------------------------------------------------- openai


class _Fatal(Exception):
    """A request error that another attempt will not fix (e.g. HTTP 401)."""


class OpenAIBackend:
    """Any OpenAI-compatible chat endpoint over HTTP."""

    name = "openai"
    enforces_grammar = False  # servers differ: the JSON schema is what they share

    def __init__(self, config: ChatConfig) -> None:
        if not config.base_url:
            raise ConfigError("the openai backend needs base_url (e.g. http://127.0.0.1:8080/v1)")
        if not config.model:
            raise ConfigError("the openai backend needs model: the name the endpoint serves")
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        self.identity = config.model_identity or config.model
        self.context_length = config.context_length or 8192

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def _api_key(self) -> str | None:
        # Read at call time and kept in locals only: never an attribute, never logged.
        return os.environ.get(self.config.api_key_env) if self.config.api_key_env else None

    def complete(
        self, prompts: Sequence[str], params: GenerationParams, on_result: ResultCallback
    ) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self._complete_all(prompts, params, on_result))
            return
        # Called from inside an event loop (a notebook): run ours on a worker thread.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, self._complete_all(prompts, params, on_result)).result()

    async def _complete_all(
        self, prompts: Sequence[str], params: GenerationParams, on_result: ResultCallback
    ) -> None:
        import httpx

        key = self._api_key()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        limit = asyncio.Semaphore(self.config.concurrency)
        # Once one request has exhausted its retries on a dead endpoint, the queued ones
        # fail fast instead of each waiting out its own backoff.
        endpoint_down = asyncio.Event()
        errors: list[str] = []

        async def one(client: httpx.AsyncClient, index: int) -> None:
            async with limit:
                if endpoint_down.is_set():
                    errors.append("not attempted: the endpoint stopped answering")
                    return
                try:
                    completion = await self._request(client, prompts[index], params)
                except _Fatal as error:
                    errors.append(_redact(str(error), key))
                    return
                except LlmRequestError as error:
                    endpoint_down.set()
                    errors.append(_redact(str(error), key))
                    return
                on_result(index, completion)

        timeout = httpx.Timeout(self.config.timeout_s)
        limits = httpx.Limits(max_connections=self.config.concurrency)
        async with httpx.AsyncClient(headers=headers, timeout=timeout, limits=limits) as client:
            await asyncio.gather(*(one(client, i) for i in range(len(prompts))))
        _raise_if_failed(self.name, self.identity, errors, len(prompts))

    async def _request(self, client: Any, prompt: str, params: GenerationParams) -> Completion:
        import httpx

        body = _chat_body(prompt, params, structured=self.config.structured_output)
        body["model"] = self.config.model
        url = f"{self.base_url}/chat/completions"
        last_problem = "no attempt made"
        retry_after: float | None = None
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                await asyncio.sleep(self._backoff(attempt, retry_after))
                retry_after = None
            started = time.perf_counter()
            try:
                response = await client.post(url, json=body)
            except httpx.TimeoutException:
                last_problem = f"timed out after {self.config.timeout_s:g}s"
                continue
            except httpx.TransportError as error:
                last_problem = f"connection failed ({type(error).__name__})"
                continue
            if response.status_code in _RETRY_STATUSES:
                last_problem = f"HTTP {response.status_code}: {_short(response.text)}"
                retry_after = _retry_after_seconds(response.headers.get("retry-after"))
                continue
            if response.status_code >= 400:
                raise _Fatal(f"HTTP {response.status_code} from {url}: {_short(response.text)}")
            try:
                text, tokens_in, tokens_out = _parse_chat_response(response.json())
            except ValueError as error:
                last_problem = f"malformed response: {_short(str(error))}"
                continue
            return Completion(text, tokens_in, tokens_out, time.perf_counter() - started)
        raise LlmRequestError(
            f"{url}: {last_problem} (after {self.config.max_retries + 1} attempts)"
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.config.backoff_max_s)
        ceiling = min(self.config.backoff_max_s, self.config.backoff_s * 2 ** (attempt - 1))
        return ceiling * (0.5 + random.random() / 2)  # jitter keeps parallel retries apart

    def close(self) -> None:
        pass


def _retry_after_seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to exponential backoff


def _short(text: str, limit: int = 200) -> str:
    return " ".join(text.split())[:limit]


def _redact(text: str, secret: str | None) -> str:
    # Belt and braces: a server could echo the Authorization header in an error body.
    return text.replace(secret, "***") if secret else text


# --------------------------------------------------------------------------- transformers


class TransformersBackend:
    """A local Hugging Face causal LM, batched with left padding; GPU when present."""

    name = "transformers"
    enforces_grammar = True  # GBNF held by llguidance masks

    def __init__(self, config: ChatConfig) -> None:
        import torch

        self.config = config
        self.path = require_path(config.model, "model") if config.model else packaged_gguf()
        self.device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = resolve_dtype(config.dtype, self.device)
        # Weight types change answers, so they are part of the identity (hence of cache keys).
        self.identity = config.model_identity or (
            f"{self.path.name}#{model_fingerprint(self.path)}@{self.dtype}"
        )
        self._model: Any = None
        self._tokenizer: Any = None
        self._guidance: Any = None
        self._stop_ids: list[int] = []
        self._load_lock = threading.Lock()
        self.context_length = config.context_length or 2048  # refined on load

    def _load(self) -> tuple[Any, Any]:
        with self._load_lock:
            if self._model is None:
                offline_hub()
                import torch
                from transformers import AutoModelForCausalLM, AutoTokenizer

                if self.config.threads and self.device == "cpu":
                    torch.set_num_threads(self.config.threads)
                source, extra = (str(self.path), {})
                if self.path.is_file():  # a GGUF file: transformers dequantises it (needs `gguf`)
                    source, extra = str(self.path.parent), {"gguf_file": self.path.name}
                tokenizer = AutoTokenizer.from_pretrained(source, **extra)
                tokenizer.padding_side = "left"
                if tokenizer.pad_token is None:
                    tokenizer.pad_token = tokenizer.eos_token
                model = (
                    AutoModelForCausalLM.from_pretrained(
                        source, dtype=getattr(torch, self.dtype), **extra
                    )
                    .to(self.device)
                    .eval()
                )
                stops = model.generation_config.eos_token_id
                stops = [stops] if isinstance(stops, int) else list(stops or [])
                if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in stops:
                    stops.append(tokenizer.eos_token_id)
                self._tokenizer, self._model, self._stop_ids = tokenizer, model, stops
                if self.config.context_length is None:
                    limit = getattr(model.config, "max_position_embeddings", None) or 2048
                    self.context_length = int(min(limit, 32768))
            return self._model, self._tokenizer

    @property
    def accelerator(self) -> str | None:
        """The GPU's name when the model runs on one (a stage records where it was built)."""
        if not self.device.startswith("cuda"):
            return None
        import torch

        return torch.cuda.get_device_name(self.device)

    def _guidance_tokenizer(self) -> Any:
        if self._guidance is None:
            model, tokenizer = self._load()
            width = model.get_output_embeddings().weight.shape[0]
            self._guidance = guidance_tokenizer(tokenizer, width, self._stop_ids)
        return self._guidance

    def count_tokens(self, text: str) -> int:
        _, tokenizer = self._load()
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def _render(self, tokenizer: Any, prompt: str, params: GenerationParams) -> str:
        if getattr(tokenizer, "chat_template", None):
            return tokenizer.apply_chat_template(
                _messages(prompt, params), tokenize=False, add_generation_prompt=True
            )
        return f"{params.system}\n\n{prompt}" if params.system else prompt

    def complete(
        self, prompts: Sequence[str], params: GenerationParams, on_result: ResultCallback
    ) -> None:
        import torch

        model, tokenizer = self._load()
        grammar = compile_grammar(params.grammar, params.json_schema)
        if grammar is not None:
            check_grammar(grammar, self._guidance_tokenizer())
        texts = [self._render(tokenizer, p, params) for p in prompts]
        # Similar lengths in one batch waste less padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self.config.batch_size):
            batch = order[start : start + self.config.batch_size]
            encoded = tokenizer(
                [texts[i] for i in batch],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            ).to(self.device)
            width = encoded["input_ids"].shape[1]
            masks = (
                [GrammarMask(self._guidance_tokenizer(), grammar, len(batch), width)]
                if grammar is not None
                else []
            )
            torch.manual_seed(params.seed)
            started = time.perf_counter()
            with torch.inference_mode():
                prefilled = self._prefill_unpadded(model, encoded, params.max_tokens)
                if prefilled is not None and params.temperature == 0:
                    new_tokens = self._decode_greedy(
                        model, prefilled, encoded, params.max_tokens, masks[0] if masks else None
                    )
                else:
                    output = model.generate(
                        cache=prefilled,
                        # Only these two: some tokenizers add token_type_ids a causal LM rejects.
                        input_ids=encoded["input_ids"],
                        attention_mask=encoded["attention_mask"],
                        max_new_tokens=params.max_tokens,
                        do_sample=params.temperature > 0,
                        temperature=params.temperature if params.temperature > 0 else None,
                        top_p=params.top_p if params.temperature > 0 else None,
                        pad_token_id=tokenizer.pad_token_id,
                        eos_token_id=self._stop_ids or None,
                        logits_processor=masks or None,
                    )
                    new_tokens = list(output[:, width:])
            seconds = (time.perf_counter() - started) / len(batch)
            for row, index in enumerate(batch):
                tokens = new_tokens[row]
                tokens = tokens[tokens != tokenizer.pad_token_id]
                text = _cut_at_stop(tokenizer.decode(tokens, skip_special_tokens=True), params.stop)
                tokens_in = int(encoded["attention_mask"][row].sum())
                on_result(index, Completion(text.strip(), tokens_in, int(len(tokens)), seconds))

    def _prefill_unpadded(self, model: Any, encoded: Any, max_new_tokens: int) -> Any:
        """A KV cache holding every prompt but its last token, each prompt read alone (CPU only).

        On CPU, attention under a padding mask takes PyTorch's slow math path: a padded batch of
        16 LLMSeR prompts took 46 s to read on one core, the same prompts one by one 14 s. The
        rows' states are then left-padded into one preallocated (static) batch cache, the pad
        slots masked, so ``generate`` reads only the last prompt tokens, decodes the batch
        together and never re-concatenates a growing cache. None (plain ``generate``) on a GPU,
        where masked batches are fast, or for a model with sliding-window or hybrid layers.
        """
        from transformers import StaticCache
        from transformers.cache_utils import StaticLayer

        ids, mask = encoded["input_ids"], encoded["attention_mask"]
        rows, width = ids.shape
        if self.device != "cpu" or width < 2:
            return None
        cache = StaticCache(config=model.config, max_cache_len=width - 1 + max_new_tokens)
        if not all(type(layer) is StaticLayer for layer in cache.layers):
            return None
        padded: list[tuple[Any, Any]] = []
        for row in range(rows):
            length = int(mask[row].sum())
            if length < 2:
                continue  # nothing to read before its last token; its slots stay masked
            out = model(
                input_ids=ids[row : row + 1, width - length : width - 1],
                use_cache=True,
                logits_to_keep=1,
            )
            for index, layer in enumerate(out.cache.layers):
                if len(padded) <= index:
                    shape = (rows, layer.keys.shape[1], width - 1, layer.keys.shape[3])
                    padded.append((layer.keys.new_zeros(shape), layer.values.new_zeros(shape)))
                keys, values = padded[index]
                keys[row, :, width - length :] = layer.keys[0]
                values[row, :, width - length :] = layer.values[0]
        if not padded:
            return None
        for index, (keys, values) in enumerate(padded):
            cache.update(keys, values, index)
        return cache

    def _decode_greedy(
        self, model: Any, cache: Any, encoded: Any, max_new_tokens: int, grammar: Any
    ) -> list[Any]:
        """Greedy answer tokens of each row (stop token included), from a prefilled cache.

        ``generate`` keeps a finished row in the batch until the longest answer ends, and on
        CPU every decode step reads each row's whole cache: on the LLMSeR stage the average
        answer is half its batch's longest. So rows that have ended are dropped from the cache
        once they are a quarter of it (a compaction copies the cache once, about one step's
        reading). Positions and masks are those ``generate`` would give each row.
        """
        import torch

        mask = encoded["attention_mask"]
        feed = encoded["input_ids"][:, -1:]
        rows = list(range(feed.shape[0]))  # the batch row of each cache row
        answers: list[list[int]] = [[] for _ in rows]
        ended = [False] * len(rows)
        stops = set(self._stop_ids)
        picked: list[int] | None = None
        for _ in range(max_new_tokens):
            positions = mask.long().cumsum(-1)[:, -1:] - 1
            logits = (
                model(
                    input_ids=feed,
                    attention_mask=mask,
                    position_ids=positions,
                    cache=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                .logits[:, -1]
                .float()
            )
            live = [i for i, row in enumerate(rows) if not ended[row]]
            if grammar is not None:
                logits[live] = grammar.restrict(
                    [rows[i] for i in live],
                    None if picked is None else [picked[i] for i in live],
                    logits[live],
                )
            picked = logits.argmax(-1).tolist()
            for i in live:
                answers[rows[i]].append(picked[i])
                ended[rows[i]] = picked[i] in stops
            if all(ended[row] for row in rows):
                break
            feed = torch.tensor(picked, device=feed.device)[:, None]
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
            done = sum(ended[row] for row in rows)
            if done * 4 >= len(rows):
                keep = [i for i, row in enumerate(rows) if not ended[row]]
                index = torch.tensor(keep, device=feed.device)
                cache.reorder_cache(index)
                feed, mask = feed[index], mask[index]
                picked = [picked[i] for i in keep]
                rows = [rows[i] for i in keep]
        return [torch.tensor(tokens, dtype=torch.long) for tokens in answers]

    def close(self) -> None:
        self._model = self._tokenizer = self._guidance = None


def resolve_dtype(choice: str, device: str) -> str:
    """``auto``: float16 on CUDA; bfloat16 where the CPU has native bf16; float32 otherwise."""
    if choice != "auto":
        return choice
    if device.startswith("cuda"):
        return "float16"
    if device == "cpu":
        import torch

        try:  # oneDNN's own check for AVX512-BF16 / AMX (without them bf16 is emulated, slower)
            native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            native = False
        return "bfloat16" if native else "float32"
    return "float32"


def _cut_at_stop(text: str, stops: Sequence[str]) -> str:
    cut = min((text.find(s) for s in stops if s and s in text), default=-1)
    return text[:cut] if cut >= 0 else text


_BACKENDS: dict[str, Callable[[ChatConfig], ChatBackend]] = {
    "llamacpp": LlamaCppBackend,
    "openai": OpenAIBackend,
    "transformers": TransformersBackend,
}


# --------------------------------------------------------------------------- front


class ChatModel:
    """Batched, cached text generation: ``generate(prompts) -> answers`` in prompt order."""

    def __init__(
        self,
        config: ChatConfig | None = None,
        *,
        backend: ChatBackend | None = None,
        **overrides: Any,
    ) -> None:
        """``backend``: reuse an already loaded backend (e.g. one model, several caches)."""
        base = config or ChatConfig()
        self.config = (
            ChatConfig.model_validate({**base.model_dump(), **overrides}) if overrides else base
        )
        self.backend: ChatBackend = backend or _BACKENDS[self.config.backend](self.config)
        self.cache = ResponseCache(self.config.cache_path) if self.config.use_cache else None
        self.usage = UsageCounters()
        self._usage_lock = threading.Lock()

    @property
    def identity(self) -> str:
        return self.backend.identity

    @property
    def context_length(self) -> int:
        return self.backend.context_length

    @property
    def accelerator(self) -> str | None:
        """The GPU the backend runs on, by name; None on a CPU or behind a server."""
        return getattr(self.backend, "accelerator", None)

    def count_tokens(self, text: str) -> int:
        return self.backend.count_tokens(text)

    def generate(
        self,
        prompts: Sequence[str],
        *,
        params: GenerationParams | None = None,
        template: str = "raw",
        progress: bool = False,
        **param_overrides: Any,
    ) -> list[str]:
        """Answers in prompt order. ``template`` (name@version) is part of the cache key."""
        params = params or GenerationParams()
        if param_overrides:
            params = GenerationParams.model_validate({**params.model_dump(), **param_overrides})
        parts = CacheKeyParts(
            self.backend.name, self.identity, template, params.model_dump(mode="json")
        )
        keys = [parts.key(p) for p in prompts]
        answers: dict[str, str] = {}
        delta = UsageCounters()
        if self.cache is not None:
            for key, hit in self.cache.get_many(keys).items():
                answers[key] = hit.response
        delta.cache_hits = sum(1 for k in keys if k in answers)
        # Identical prompts in one batch are asked once.
        todo = list(dict.fromkeys(k for k in keys if k not in answers))
        prompt_of = dict(zip(keys, prompts, strict=True))
        log.info(
            "%s %s: %d prompts, %d from cache, %d to ask",
            self.backend.name,
            self.identity,
            len(keys),
            delta.cache_hits,
            len(todo),
        )
        bar = None
        if progress and todo:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc=f"llm {self.backend.name}", unit="prompt")

        def on_result(index: int, completion: Completion) -> None:
            key = todo[index]
            with self._usage_lock:
                answers[key] = completion.text
                delta.calls += 1
                delta.tokens_in += completion.tokens_in
                delta.tokens_out += completion.tokens_out
                delta.seconds += completion.seconds
                if bar is not None:
                    bar.update(1)
            if self.cache is not None:
                self.cache.put(
                    key,
                    parts,
                    prompt_of[key],
                    completion.text,
                    tokens_in=completion.tokens_in,
                    tokens_out=completion.tokens_out,
                    seconds=completion.seconds,
                )

        try:
            if todo:
                self.backend.complete([prompt_of[k] for k in todo], params, on_result)
        except LlmRequestError as error:
            delta.failures += error.failed
            raise
        finally:
            if bar is not None:
                bar.close()
            self.usage.add(delta)
            if self.cache is not None:
                self.cache.add_usage(self.backend.name, self.identity, delta)
        return [answers[k] for k in keys]

    def close(self) -> None:
        self.backend.close()
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> ChatModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
