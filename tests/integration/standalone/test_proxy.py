"""The dev app proxy as its own process: registration, token, round robin, and 503."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import UUID, uuid4

import pytest
import requests

from tests.integration.sample_servers import SampleServer
from workers.adapters.redis.discovery import RedisServiceDiscovery
from workers.adapters.redis.keys import RedisKeys
from workers.devtools.processes import Process, wait_for
from workers.devtools.throwaway_servers import free_port
from workers.domain import ModelServiceMetadata

TOKEN = "proxy-test-token"


@pytest.fixture
def proxy_url(redis_url: str, redis_keys: RedisKeys, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "MODELFLEET_REDIS_URL": redis_url,
           "MODELFLEET_REDIS_KEY_PREFIX": redis_keys.prefix,
           "MODELFLEET_PROXY_TOKEN": TOKEN}  # fmt: skip
    argv = [sys.executable, "-m", "workers.cli", "proxy", f"--port={port}"]
    process = Process("proxy", argv, env, tmp_path)
    url = f"http://127.0.0.1:{port}"

    def status() -> int:
        try:
            return requests.delete(f"{url}/v2/endpoints/{uuid4()}", timeout=1).status_code
        except requests.RequestException:
            return 0

    try:
        wait_for(status, lambda s: s != 0, timeout_s=30, what="the proxy to listen")
        yield url
    finally:
        process.stop()


def test_it_registers_with_the_token_and_forwards_round_robin_to_healthy_routes(
    proxy_url: str, service_discovery: RedisServiceDiscovery,
    sample_server: Callable[[str], SampleServer],
) -> None:  # fmt: skip
    endpoint_id = uuid4()
    register = f"{proxy_url}/v2/endpoints/{endpoint_id}"
    assert requests.post(register, json={}, timeout=5).status_code == 403
    answer = requests.post(register, json={}, headers={"X-BackendAI-Token": TOKEN}, timeout=5)
    assert answer.status_code == 200
    url = answer.json()["endpoint"]
    assert url == f"{proxy_url}/e/{endpoint_id}"

    empty = requests.post(f"{url}/v1/completions", json={"prompt": "x"}, timeout=5)
    assert empty.status_code == 503
    assert empty.json() == {"error": f"no healthy replica for endpoint {endpoint_id}"}

    servers = [sample_server("one"), sample_server("two")]
    service_discovery.sync_model_service_routes(
        [
            ModelServiceMetadata(
                uuid4(), "svc", "127.0.0.1", s.port, labels={"endpoint_id": str(endpoint_id)}
            )
            for s in servers
        ]
        + [ModelServiceMetadata(uuid4(), "other", "127.0.0.1", 1, labels={"endpoint_id": "x"})]
    )
    models = {
        requests.post(f"{url}/v1/completions", json={"prompt": "a b"}, timeout=5).json()["model"]
        for _ in range(4)
    }
    assert models == {"one", "two"}
    gone = requests.delete(register, headers={"X-BackendAI-Token": TOKEN}, timeout=5)
    assert gone.status_code == 204


def test_a_refused_connection_is_retried_once_on_another_replica(
    proxy_url: str, service_discovery: RedisServiceDiscovery,
    sample_server: Callable[[str], SampleServer],
) -> None:  # fmt: skip
    endpoint_id, alive = uuid4(), sample_server("alive")
    dead_port = free_port()  # nothing listens there: a replica that died unannounced
    _publish(service_discovery, endpoint_id, [alive.port, dead_port])
    url = _register(proxy_url, endpoint_id)
    answers = [_complete(url) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 6
    assert {a.json()["model"] for a in answers} == {"alive"}
    assert alive.state.served == 6


def test_a_replica_that_began_to_answer_is_not_retried(
    proxy_url: str, service_discovery: RedisServiceDiscovery,
    sample_server: Callable[[str], SampleServer],
) -> None:  # fmt: skip
    endpoint_id, alive = uuid4(), sample_server("alive")
    with _half_answering_server() as broken_port:
        _publish(service_discovery, endpoint_id, [alive.port, broken_port])
        url = _register(proxy_url, endpoint_id)
        outcomes = sorted(_status_or_cut(url) for _ in range(6))
    # Round robin; a cut answer reaches the client cut (it was streamed), never completed.
    assert outcomes == [CUT, CUT, CUT, 200, 200, 200]
    assert alive.state.served == 3  # nothing was sent on to the other replica


CUT = 0


def _status_or_cut(url: str) -> int:
    try:
        return _complete(url).status_code
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):  # cut
        return CUT


def _publish(discovery: RedisServiceDiscovery, endpoint_id: UUID, ports: list[int]) -> None:
    labels = {"endpoint_id": str(endpoint_id)}
    discovery.sync_model_service_routes(
        [ModelServiceMetadata(uuid4(), "svc", "127.0.0.1", port, labels=labels) for port in ports]
    )


def _register(proxy_url: str, endpoint_id: UUID) -> str:
    answer = requests.post(
        f"{proxy_url}/v2/endpoints/{endpoint_id}", json={}, headers={"X-BackendAI-Token": TOKEN},
        timeout=5,
    )  # fmt: skip
    return str(answer.json()["endpoint"])


def _complete(url: str) -> requests.Response:
    return requests.post(f"{url}/v1/completions", json={"prompt": "a b"}, timeout=10)


@contextmanager
def _half_answering_server() -> Iterator[int]:
    """Answers every request with a status line and half a body, then hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial')

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_the_token_is_never_on_the_command_line_and_a_missing_one_is_one_line(
    proxy_url: str, tmp_path: Path
) -> None:
    port = int(proxy_url.rsplit(":", 1)[1])
    [pid] = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and f"--port={port}".encode() in _cmdline(entry)
    ]
    assert TOKEN.encode() not in _cmdline(Path(f"/proc/{pid}"))
    env = {k: v for k, v in os.environ.items() if k != "MODELFLEET_PROXY_TOKEN"}
    refused = subprocess.run(
        [sys.executable, "-m", "workers.cli", "proxy", f"--port={free_port()}"],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "Error: MODELFLEET_PROXY_TOKEN: set it, or give --token-file"
    ]
    token_file = tmp_path / "token"
    token_file.write_text("with space\n")
    bad = subprocess.run(
        [sys.executable, "-m", "workers.cli", "proxy", f"--token-file={token_file}"],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "with space" not in bad.stderr


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""
