"""Sample model servers on 127.0.0.1 for the reference pieces' tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from workers.reference.model_server import ModelState, make_server


class SampleServer:
    def __init__(self, name: str) -> None:
        self.state = ModelState(name)
        self._server = make_server("127.0.0.1", 0, self.state)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def sample_server() -> Iterator[Callable[[str], SampleServer]]:
    started: list[SampleServer] = []

    def start(name: str = "echo") -> SampleServer:
        started.append(server := SampleServer(name))
        return server

    yield start
    for server in started:
        server.stop()
