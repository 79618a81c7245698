"""``llmseqrec llm check`` and ``llmseqrec llm stats`` (mounted by the main CLI as ``llm``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from llmseqrec.errors import LlmSeqRecError

llm_app = typer.Typer(
    help="Language-model backends: check one, show cache and usage counters.", no_args_is_help=True
)

_SAMPLE_PROMPT = (
    "A shopper bought: 1. OPI Nail Lacquer, Simmer and Shimmer 2. Essie Top Coat 3. Cuticle oil pen.\n"
    "Name one more item this shopper might like, in one short line."
)


def _fail(error: Exception) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(code=1)


@llm_app.command()
def check(
    backend: Annotated[str, typer.Option(help="llamacpp | openai | transformers")] = "llamacpp",
    model: Annotated[
        str | None,
        typer.Option(
            help="GGUF file, HF model directory, or the served model name (openai); default: packaged SmolLM2"
        ),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option(help="openai: endpoint base, e.g. http://127.0.0.1:8080/v1")
    ] = None,
    api_key_env: Annotated[
        str, typer.Option(help="openai: NAME of the environment variable holding the key")
    ] = "OPENAI_API_KEY",
    prompt: Annotated[str, typer.Option(help="the prompt to answer")] = _SAMPLE_PROMPT,
    max_tokens: Annotated[int, typer.Option(min=1)] = 48,
    timeout: Annotated[float, typer.Option(help="seconds per request")] = 120.0,
    requantize: Annotated[
        str,
        typer.Option(
            help="llamacpp: auto | off | q4_0 | q8_0 (auto: Q4_0 copy of the packaged model)"
        ),
    ] = "auto",
) -> None:
    """Load a model, answer one prompt (bypassing the cache) and print its speed."""
    from llmseqrec.text.llm import ChatConfig, ChatModel

    try:
        config = ChatConfig(
            backend=backend,  # type: ignore[arg-type]
            model=model,
            base_url=base_url,
            api_key_env=api_key_env,
            use_cache=False,
            timeout_s=timeout,
            max_retries=1,
            requantize=requantize,  # type: ignore[arg-type]
        )
        started = time.perf_counter()
        with ChatModel(config) as chat:
            typer.echo(f"backend: {backend}")
            typer.echo(f"model:   {chat.identity}")
            answer = chat.generate([prompt], max_tokens=max_tokens)[0]
            wall = time.perf_counter() - started
            usage = chat.usage
    except LlmSeqRecError as error:
        raise _fail(error) from None
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise _fail(problems) from None
    speed = usage.tokens_out / usage.seconds if usage.seconds else 0.0
    typer.echo(
        f"speed:   {speed:.1f} tokens/s generated ({usage.tokens_in} prompt + {usage.tokens_out} answer tokens "
        f"in {usage.seconds:.2f}s; {wall:.2f}s with loading)"
    )
    typer.echo(f"answer:  {' '.join(answer.split())}")


@llm_app.command()
def stats(
    cache: Annotated[
        Path | None,
        typer.Option(help="response cache file (default: $LLMSEQREC_CACHE/llm/responses.sqlite)"),
    ] = None,
) -> None:
    """Calls, cache hits, tokens and model seconds per backend and model, from the response cache."""
    from llmseqrec.text.cache import ResponseCache, default_cache_path

    path = cache or default_cache_path()
    if not path.is_file():
        raise _fail(f"no response cache at {path} (nothing has been generated yet)")
    with ResponseCache(path) as store:
        rows = store.usage()
        stored = len(store)
    typer.echo(f"cache: {path} ({stored} stored answers)")
    if not rows:
        typer.echo("no usage recorded")
        return
    header = (
        "backend",
        "model",
        "calls",
        "cache hits",
        "hit rate",
        "failures",
        "tokens in",
        "tokens out",
        "seconds",
        "stored",
    )
    lines = [header]
    for row in rows:
        asked = row["calls"] + row["cache_hits"]
        lines.append(
            (
                row["backend"],
                row["model"],
                str(row["calls"]),
                str(row["cache_hits"]),
                f"{row['cache_hits'] / asked:.1%}" if asked else "-",
                str(row["failures"]),
                str(row["tokens_in"]),
                str(row["tokens_out"]),
                f"{row['seconds']:.1f}",
                str(row["stored"]),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        typer.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
