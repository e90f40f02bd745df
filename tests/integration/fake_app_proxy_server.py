"""A real HTTP server on 127.0.0.1 that answers from a script, for the app-proxy client tests."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: str = ""
    delay_s: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, document: object, status: int = 200) -> Reply:
        return cls(status=status, body=json.dumps(document))


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class Script:
    replies: deque[Reply] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)
    # The answer when no scripted reply is left (599 when there is none).
    default: Callable[[Seen], Reply] | None = None

    def then(self, *replies: Reply) -> None:
        self.replies.extend(replies)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that gave up on a delayed reply is part of the script, not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class ScriptedServer:
    def __init__(self, default: Callable[[Seen], Reply] | None = None) -> None:
        self.script = Script(default=default)
        self._server = _QuietServer(("127.0.0.1", 0), _handler_for(self.script))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def addr(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler_for(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the tests read `script.seen` instead."""

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            seen = Seen(self.command, self.path, dict(self.headers), body)
            script.seen.append(seen)
            reply = _next_reply(script, seen)
            time.sleep(reply.delay_s)
            payload = reply.body.encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_POST = _answer  # noqa: N815
        do_DELETE = _answer  # noqa: N815

    return Handler


def _next_reply(script: Script, seen: Seen) -> Reply:
    if script.replies:
        return script.replies.popleft()
    if script.default is not None:
        return script.default(seen)
    return Reply(status=599)
