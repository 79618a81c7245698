"""Helpers for the text-layer tests: a real local server process and a scripted HTTP endpoint.

(A uniquely named module: test folders share one import namespace.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

TEST_KEY_ENV = "LLMSEQREC_TEST_API_KEY"
TEST_KEY = "sk-llmseqrec-test-7f3a9c1e5b2d4f60"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServer:
    """``python -m llmseqrec.text.serve`` as a child process, stopped by its PID."""

    def __init__(
        self, *, slots: int = 2, api_key: str | None = None, port: int | None = None
    ) -> None:
        self.slots = slots
        self.api_key = api_key
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120.0) -> LocalServer:
        env = dict(os.environ)
        # One thread: llama.cpp's spinning thread pool collapses when other test processes
        # compete for the same two cores; a single thread degrades gracefully.
        command = [
            sys.executable,
            "-m",
            "llmseqrec.text.serve",
            "--port",
            str(self.port),
            "--slots",
            str(self.slots),
        ]
        command += ["--threads", "1"]
        if self.api_key:
            env[TEST_KEY_ENV] = self.api_key
            command += ["--api-key-env", TEST_KEY_ENV]
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.process.stdout.read()}")
            try:
                if (
                    httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1.0).status_code
                    == 200
                ):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("server did not become healthy")

    def kill(self) -> None:
        """SIGKILL by PID: the server dies mid-request, as a crash would."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def chat_completion(content: str, prompt_tokens: int = 5, completion_tokens: int = 3) -> dict:
    return {
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content},
            }
        ],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }


class ScriptedServer:
    """A tiny HTTP endpoint for faults a real model cannot produce on demand.

    ``script(request_number, body, headers)`` returns ``(status, payload, extra_headers,
    delay_seconds)``; payload is a dict (sent as JSON) or a str (sent as is).
    """

    def __init__(
        self, script: Callable[[int, dict, dict], tuple[int, object, dict, float]]
    ) -> None:
        self.script = script
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(
                    self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}"
                )
                with outer._lock:
                    number = len(outer.requests)
                    outer.requests.append(body)
                status, payload, headers, delay = outer.script(number, body, dict(self.headers))
                if delay:
                    time.sleep(delay)
                data = (
                    payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                )
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def user_prompt(body: dict) -> str:
    return body["messages"][-1]["content"]
