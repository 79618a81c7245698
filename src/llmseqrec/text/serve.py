"""A local OpenAI-compatible server for a GGUF model (llama.cpp's server via xllamacpp).

    python -m llmseqrec.text.serve --port 8080 [--model file.gguf] [--slots 8] [--api-key-env NAME]

Serves ``/v1/chat/completions`` on 127.0.0.1 until SIGTERM/SIGINT. With ``--api-key-env``
the server requires the key held in that environment variable (the key itself is never a
command-line argument, where ``ps`` would show it).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from llmseqrec.text.requant import resolve_gguf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llmseqrec.text.serve", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", help="GGUF file (default: the packaged SmolLM2-135M-Instruct)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--slots", type=int, default=16, help="parallel decoding slots")
    parser.add_argument("--context", type=int, default=2048, help="context tokens per slot")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--alias", default=None, help="model name reported by /v1/models")
    parser.add_argument(
        "--requantize",
        default="auto",
        choices=["auto", "off", "q4_0", "q8_0"],
        help="convert the weights once (cached) for faster CPU batching; auto: the packaged model only",
    )
    parser.add_argument(
        "--api-key-env", default=None, help="NAME of an environment variable with the required key"
    )
    args = parser.parse_args(argv)

    import xllamacpp as xlc

    _, model, _ = resolve_gguf(args.model, args.requantize)
    params = xlc.CommonParams()
    params.model.path = str(model)
    params.hostnames = [args.host]
    params.port = args.port
    params.n_parallel = args.slots
    params.n_ctx = args.context * args.slots
    threads = args.threads or os.cpu_count() or 1
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.verbosity = -1
    if args.alias:
        params.model_alias = {args.alias}
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            print(f"error: environment variable {args.api_key_env} is empty", file=sys.stderr)
            return 2
        params.api_keys = [key]

    stop = threading.Event()

    def stop_on_signals() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())

    stop_on_signals()
    server = xlc.Server(params)
    # llama.cpp may install its own handlers while loading: take the signals back.
    stop_on_signals()
    print(f"listening on {server.listening_address}", flush=True)
    while not stop.wait(timeout=0.5):
        pass
    del server
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
