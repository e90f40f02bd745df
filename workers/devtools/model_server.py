"""A sample model server: `python -m workers.devtools.model_server [--port N]`.

GET /health answers 200 (or 503 once told to fail); POST /v1/completions and
/v1/chat/completions give a deterministic toy completion with OpenAI's `usage`
(`prompt_tokens_details.cached_tokens` included), streamed as server-sent events when
asked (`"stream": true`; the usage in the last chunk with `stream_options.include_usage`);
GET /metrics is Prometheus text (requests in flight, requests served, and vLLM's names
for what its simulated engine does: `workers.devtools.engine`, whose cost model the
MODEL_MAX_RUNNING, MODEL_KV_BLOCKS, MODEL_BLOCK_CHARS, MODEL_PREFILL_S_PER_TOKEN,
MODEL_DECODE_S_PER_TOKEN and MODEL_OUTPUT_TOKENS variables set; unset, it answers at
once). MODEL_LATENCY_S makes each completion take that long;
MODEL_STARTUP_S makes it load that long first (port open, health and completions 503);
MODEL_ERROR_RATE answers that share of completions 500 (exactly: 0.5 fails every second one);
MODEL_RESET_RATE resets that share of completions' connections without an answer (what a
replica that refuses or drops connections looks like to a proxy; health still passes).
POST /admin/fail-health and /admin/recover switch the
health answer, so a demo or a test can make one replica sick. With MODEL_SERVED_DIR set,
every completion it computes appends its `X-Request-Id` to a file of its own there
(`{pid}.served`), so a test can tell whether any request ran twice.

On SIGTERM it stops accepting connections, finishes the requests in flight,
then exits 0: what a scheduler's stop must not cut short.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from workers.contracts.prompts import CHAT_COMPLETIONS, COMPLETIONS, prompt_of
from workers.devtools.engine import Engine, EngineConfig, Prefilled
from workers.domain import REVISION_VARIABLE  # the deployment revision it runs
from workers.standalone.machine import BIND_HOST_VARIABLE, PORT_VARIABLE

IDLE_CONNECTION_S = 5.0  # uvicorn's keep-alive timeout, which many model servers run on
SERVED_DIR_VARIABLE = "MODEL_SERVED_DIR"
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: closing sends RST
REQUEST_ID_HEADER = "X-Request-Id"


class ModelState:
    def __init__(
        self,
        name: str,
        latency_s: float = 0.0,
        revision: int | None = None,
        startup_s: float = 0.0,
        error_rate: float = 0.0,
        reset_rate: float = 0.0,
    ) -> None:
        self.name = name
        self.engine = Engine()  # no cost unless configured (`_engine_from_environment`)
        # MODEL_ERROR_RATE: this share of completions answer 500, evenly spread and exactly
        # (with 0.5, every second one), so a test knows how many fail; MODEL_RESET_RATE:
        # this share get their connection reset instead, the same way.
        self.error_rate = error_rate
        self.reset_rate = reset_rate
        self.completions = 0
        self.resets_counted = 0
        # MODEL_STARTUP_S: its port is open at once, but it loads its weights until then
        # (health 503, completions 503): what "up but not ready" looks like.
        self.loaded_at = time.monotonic() + startup_s
        self.revision = revision  # MODELFLEET_REVISION: every answer says which one answered
        self.latency_s = latency_s  # how long a completion takes: lets a demo build up load
        self.healthy = True
        self.in_flight = 0
        self.served = 0
        self.lock = threading.Lock()
        served_dir = os.environ.get(SERVED_DIR_VARIABLE)
        self.served_log = Path(served_dir) / f"{os.getpid()}.served" if served_dir else None

    def note_served(self, request_id: str | None) -> None:
        """Keep the id of a request it computed (MODEL_SERVED_DIR): one line, one write."""
        if self.served_log is None or not request_id:
            return
        with self.served_log.open("a") as ledger:
            ledger.write(f"{request_id[:64]}\n")

    def complete(
        self, prompt: str, max_tokens: int | None = None, arrived: float | None = None, *,
        stream: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """The answer, after the engine's time; with `stream`, its chunks go out as they
        come (the first after the prefill) and the answer returned is the last chunk."""
        arrived = time.monotonic() if arrived is None else arrived
        max_tokens = self.engine.config.output_tokens if max_tokens is None else max_tokens
        with self.lock:
            self.in_flight += 1
        try:
            with self.engine.admitted():
                time.sleep(self.latency_s)
                done = self.engine.prefill(prompt)
                time.sleep(done.prefill_s)
                self.engine.first_token_after(time.monotonic() - arrived)
                text = " ".join(reversed(prompt.split())) or "..."
                if stream is not None:
                    stream(self._answer(f"echo: {text.split()[0]}", None))
                time.sleep(max_tokens * self.engine.config.decode_s_per_token)
            return self._answer(f"echo: {text}", _usage(done, max_tokens))
        finally:
            with self.lock:
                self.in_flight -= 1
                self.served += 1

    def _answer(self, text: str, usage: dict[str, Any] | None) -> dict[str, Any]:
        answer: dict[str, Any] = {"model": self.name, "choices": [{"index": 0, "text": text}]}
        if usage is not None:
            answer["usage"] = usage
        if self.revision is not None:
            answer["revision"] = self.revision
        return answer

    def next_fails(self) -> bool:
        """Whether the next completion is one of the injected failures (a 500)."""
        with self.lock:
            self.completions += 1
            n = self.completions
        return _one_of(n, self.error_rate)

    def next_resets(self) -> bool:
        """Whether the next completion's connection is reset instead (MODEL_RESET_RATE)."""
        with self.lock:
            self.resets_counted += 1
            n = self.resets_counted
        return _one_of(n, self.reset_rate)

    @property
    def loaded(self) -> bool:
        return time.monotonic() >= self.loaded_at

    @property
    def ready(self) -> bool:
        return self.healthy and self.loaded

    def health(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"healthy": self.ready, "loaded": self.loaded}
        if self.revision is not None:
            answer["revision"] = self.revision
        return answer

    def metrics(self) -> str:
        return (
            "# TYPE model_requests_in_flight gauge\n"
            f"model_requests_in_flight {self.in_flight}\n"
            "# TYPE model_requests_total counter\n"
            f"model_requests_total {self.served}\n"
        ) + self.engine.metrics()


class _Server(ThreadingHTTPServer):
    # Requests in flight are joined at close (a graceful stop waits for them).
    daemon_threads = False
    block_on_close = True
    request_queue_size = 128  # connections waiting to be accepted (socketserver's is 5)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a probe that timed out) is routine, not a traceback."""
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError):
            super().handle_error(request, client_address)


def _usage(done: Prefilled, completion_tokens: int) -> dict[str, Any]:
    """OpenAI's usage, as vLLM sends it (cached prompt tokens included)."""
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": done.prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": done.cached_tokens}}  # fmt: skip


def _usage_asked(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def _engine_from_environment() -> EngineConfig:
    """The simulated engine's cost model, from MODEL_* variables (unset: no cost)."""
    number = os.environ.get
    return EngineConfig(
        max_running=int(number("MODEL_MAX_RUNNING", "0")),
        kv_blocks=int(number("MODEL_KV_BLOCKS", "0")),
        block_chars=int(number("MODEL_BLOCK_CHARS", "64")),
        prefill_s_per_token=float(number("MODEL_PREFILL_S_PER_TOKEN", "0")),
        decode_s_per_token=float(number("MODEL_DECODE_S_PER_TOKEN", "0")),
        output_tokens=int(number("MODEL_OUTPUT_TOKENS", "16")),
    )


def _one_of(n: int, rate: float) -> bool:
    """Whether the n-th of many is in the `rate` share, spread evenly and exactly."""
    return math.floor(n * rate) > math.floor((n - 1) * rate)


def make_server(host: str, port: int, state: ModelState) -> ThreadingHTTPServer:
    return _Server((host, port), _handler_for(state))


class _Handler(BaseHTTPRequestHandler):
    state: ModelState  # the server's model, set by `_handler_for`

    # Keep-alive, as model servers speak it: a proxy reuses its connections.
    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_S  # an idle kept-alive connection closes (a stop joins it)
    # Headers and body go out as two writes: on a kept-alive connection Nagle's
    # algorithm would hold the body for the client's delayed ACK (40 ms).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a model server's access log is noise in the demo."""

    def do_GET(self) -> None:  # http.server's naming
        if self.path == "/health":
            self._send(200 if self.state.ready else 503, self.state.health())
        elif self.path == "/metrics":
            self._send(200, self.state.metrics(), content_type="text/plain; version=0.0.4")
        else:
            self._send(404, {"error": f"no GET {self.path}"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        if self.path in {COMPLETIONS, CHAT_COMPLETIONS}:
            self._complete(raw)
        elif self.path in {"/admin/fail-health", "/admin/recover"}:
            self.state.healthy = self.path == "/admin/recover"
            self._send(200, {"healthy": self.state.healthy})
        else:
            self._send(404, {"error": f"no POST {self.path}"})

    def _complete(self, raw: bytes) -> None:
        arrived = time.monotonic()
        if not self.state.loaded:
            self._send(503, {"error": "the model is still loading"})
            return
        try:
            body = json.loads(raw or b"{}")
            prompt = prompt_of(self.path, body) or ""
            max_tokens = int(body.get("max_tokens") or self.state.engine.config.output_tokens)
        except (ValueError, AttributeError, TypeError):
            self._send(400, {"error": "body must be a JSON object with 'prompt' or 'messages'"})
            return
        if self.state.next_resets():  # no answer: the connection is reset (RST) as it closes
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
            self.close_connection = True
            return
        if self.state.next_fails():
            self._send(500, {"error": "an injected failure (MODEL_ERROR_RATE)"})
            return
        if body.get("stream"):
            self._stream(prompt, max_tokens, arrived, _usage_asked(body))
            return
        answer = self.state.complete(prompt, max_tokens, arrived)
        self.state.note_served(self.headers.get(REQUEST_ID_HEADER))
        self._send(200, answer)

    def _stream(self, prompt: str, max_tokens: int, arrived: float, with_usage: bool) -> None:
        """Server-sent events: the first chunk after the prefill, the rest after decoding,
        the usage in the last one when asked, then `[DONE]`; the connection then closes."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        last = self.state.complete(prompt, max_tokens, arrived, stream=self._event)
        usage = last.pop("usage", None)
        self._event(last)
        if with_usage and usage is not None:
            self._event({"model": self.state.name, "choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")
        self.state.note_served(self.headers.get(REQUEST_ID_HEADER))

    def _event(self, chunk: dict[str, Any]) -> None:
        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.flush()

    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        payload = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def _handler_for(state: ModelState) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"state": state})


def main() -> None:
    parser = argparse.ArgumentParser(description="A sample model server.")
    parser.add_argument("--host", default=os.environ.get(BIND_HOST_VARIABLE, "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get(PORT_VARIABLE, "8000")))
    parser.add_argument("--name", default=os.environ.get("MODEL_NAME", "echo"))
    parser.add_argument(
        "--latency-s", type=float, default=float(os.environ.get("MODEL_LATENCY_S", "0"))
    )
    parser.add_argument(
        "--startup-s", type=float, default=float(os.environ.get("MODEL_STARTUP_S", "0"))
    )
    parser.add_argument(
        "--error-rate", type=float, default=float(os.environ.get("MODEL_ERROR_RATE", "0"))
    )
    parser.add_argument(
        "--reset-rate", type=float, default=float(os.environ.get("MODEL_RESET_RATE", "0"))
    )
    args = parser.parse_args()
    revision = os.environ.get(REVISION_VARIABLE)
    state = ModelState(args.name, args.latency_s, int(revision) if revision else None,
                       startup_s=args.startup_s, error_rate=args.error_rate,
                       reset_rate=args.reset_rate)  # fmt: skip
    state.engine = Engine(_engine_from_environment())
    server = make_server(args.host, args.port, state)
    stop_on_sigterm(server)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()  # closes the listening socket, then joins requests in flight


def stop_on_sigterm(server: ThreadingHTTPServer) -> None:
    """SIGTERM ends `serve_forever` (from another thread: shutdown() waits for the loop)."""

    def stop(_signum: int, _frame: Any) -> None:
        threading.Thread(target=server.shutdown, name="graceful-stop", daemon=True).start()

    signal.signal(signal.SIGTERM, stop)


if __name__ == "__main__":
    main()
