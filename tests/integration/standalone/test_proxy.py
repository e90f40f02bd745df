"""The modelfleet proxy as its own process: registration, token, routing by weight, retries on
another host, streaming, limits and counts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.sample_servers import SampleServer
from workers.adapters.redis.discovery import RedisServiceDiscovery
from workers.adapters.redis.keys import RedisKeys
from workers.contracts.service_discovery import target_fields
from workers.devtools import namespaces
from workers.devtools.engine import Engine, EngineConfig
from workers.devtools.processes import Process, wait_for
from workers.devtools.throwaway_servers import free_port
from workers.domain import EndpointMode, EndpointState, ModelServiceMetadata

TOKEN = "proxy-test-token"
WAKES, OPERATOR_ZERO = EndpointState(EndpointMode.WAKES), EndpointState(EndpointMode.OPERATOR_ZERO)


@pytest.fixture
def proxy_url(redis_url: str, redis_keys: RedisKeys, tmp_path: Path) -> Iterator[str]:
    with _proxy(redis_url, redis_keys, tmp_path) as url:
        yield url


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
    _routed(proxy_url, endpoint_id, 2)
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
    _routed(proxy_url, endpoint_id, 2)
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
        _routed(proxy_url, endpoint_id, 2)
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


def _routed(proxy_url: str, endpoint_id: UUID, replicas: int) -> None:
    """Until the proxy's routing table holds the endpoint's replicas (the change feed)."""
    wait_for(lambda: requests.get(f"{proxy_url}/v2/endpoints/{endpoint_id}",
                                  headers={"X-BackendAI-Token": TOKEN}, timeout=5).json(),
             lambda known: len(known["replicas"]) == replicas, timeout_s=10,
             what=f"{replicas} replicas in the proxy's table")  # fmt: skip


def _register(proxy_url: str, endpoint_id: UUID) -> str:
    answer = requests.post(
        f"{proxy_url}/v2/endpoints/{endpoint_id}", json={}, headers={"X-BackendAI-Token": TOKEN},
        timeout=5,
    )  # fmt: skip
    return str(answer.json()["endpoint"])


def _complete(url: str) -> requests.Response:
    return requests.post(f"{url}/v1/completions", json={"prompt": "a b"}, timeout=10)


@contextmanager
def _raw_server(on_request: Callable[[socket.socket], None]) -> Iterator[int]:
    """A TCP server below HTTP: reads each connection's request, then hands the
    connection to `on_request`; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.recv(65536)
            on_request(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()


@contextmanager
def _half_answering_server() -> Iterator[int]:
    """Answers every request with a status line and half a body, then hangs up."""

    def half_answer(conn: socket.socket) -> None:
        with conn:
            conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial')

    with _raw_server(half_answer) as port:
        yield port


@contextmanager
def _never_answering_server() -> Iterator[tuple[int, threading.Event]]:
    """Accepts connections and reads requests, and never answers (a frozen machine)."""
    received = threading.Event()
    held: list[socket.socket] = []

    def hold(conn: socket.socket) -> None:
        held.append(conn)
        received.set()

    try:
        with _raw_server(hold) as port:
            yield port, received
    finally:
        for conn in held:
            conn.close()


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


def _target(endpoint_id: UUID, port: int, address: str = "127.0.0.1",
            **labels: str) -> ModelServiceMetadata:  # fmt: skip
    return ModelServiceMetadata(uuid4(), "svc", address, port,
                                labels={"endpoint_id": str(endpoint_id), **labels})  # fmt: skip


def test_requests_spread_by_weight_and_weight_zero_gets_none(
    proxy_url: str, service_discovery: RedisServiceDiscovery,
    sample_server: Callable[[str], SampleServer],
) -> None:  # fmt: skip
    endpoint_id = uuid4()
    one, three, none = sample_server("one"), sample_server("three"), sample_server("none")
    service_discovery.sync_model_service_routes([
        _target(endpoint_id, one.port, traffic_ratio="1"),
        _target(endpoint_id, three.port, traffic_ratio="3"),
        _target(endpoint_id, none.port, traffic_ratio="0"),
    ])  # fmt: skip
    url = _register(proxy_url, endpoint_id)
    _routed(proxy_url, endpoint_id, 3)
    with requests.Session() as session:
        for _ in range(2000):
            assert session.post(f"{url}/v1/completions", json={"prompt": "x"}, timeout=10).ok
    assert none.state.served == 0
    assert abs(three.state.served / 2000 - 0.75) <= 0.05
    assert one.state.served + three.state.served == 2000


def test_a_streamed_answer_arrives_in_pieces_as_it_is_written(
    proxy_url: str, service_discovery: RedisServiceDiscovery
) -> None:
    endpoint_id = uuid4()
    with _streaming_server() as (port, release):
        service_discovery.sync_model_service_routes([_target(endpoint_id, port)])
        url = _register(proxy_url, endpoint_id)
        _routed(proxy_url, endpoint_id, 1)
        with requests.get(f"{url}/stream", stream=True, timeout=10) as answer:
            pieces = answer.iter_content(chunk_size=None)
            first = next(pieces)  # before the server wrote the last piece
            release.set()
            rest = b"".join(pieces)
    assert answer.headers["Content-Type"] == "text/event-stream"
    assert first == b"data: first\n\n"
    assert rest == b"data: last\n\n"


def test_a_body_over_the_limit_is_413_and_other_bodies_pass_untouched(
    redis_url: str, redis_keys: RedisKeys, tmp_path: Path,
    service_discovery: RedisServiceDiscovery,
) -> None:  # fmt: skip
    endpoint_id = uuid4()
    with _proxy(redis_url, redis_keys, tmp_path, MODELFLEET_PROXY_MAX_BODY_BYTES="1000") as url, \
            _echoing_server() as port:  # fmt: skip
        service_discovery.sync_model_service_routes([_target(endpoint_id, port)])
        endpoint = _register(url, endpoint_id)
        _routed(url, endpoint_id, 1)
        too_big = requests.post(f"{endpoint}/x", data=b"a" * 1001, timeout=10)
        raw = b"\x00not json \xff" * 10
        echoed = requests.post(f"{endpoint}/echo?q=1", data=raw, timeout=10)
    assert too_big.status_code == 413
    assert too_big.json() == {
        "error": "request body over 1000 bytes (MODELFLEET_PROXY_MAX_BODY_BYTES)"
    }
    assert (echoed.status_code, echoed.content) == (200, b"/echo?q=1 " + raw)


def test_an_unknown_endpoint_is_404_in_one_line(proxy_url: str) -> None:
    unknown = uuid4()
    answer = requests.get(f"{proxy_url}/e/{unknown}/v1/models", timeout=5)
    assert answer.status_code == 404
    assert answer.json() == {"error": f"no endpoint {unknown} is registered with this proxy"}


def test_the_table_follows_publish_and_unpublish(
    proxy_url: str, service_discovery: RedisServiceDiscovery,
    sample_server: Callable[[str], SampleServer],
) -> None:  # fmt: skip
    endpoint_id, server = uuid4(), sample_server("s")
    url = _register(proxy_url, endpoint_id)
    service_discovery.sync_model_service_routes([_target(endpoint_id, server.port)])
    _routed(proxy_url, endpoint_id, 1)
    assert _complete(url).status_code == 200
    service_discovery.sync_model_service_routes([])
    _routed(proxy_url, endpoint_id, 0)
    assert _complete(url).status_code == 503


def test_a_refused_connection_is_retried_on_another_host_and_a_silent_heartbeat_moves_nothing(
    proxy_url: str, service_discovery: RedisServiceDiscovery, redis_client: redis.Redis,
    redis_keys: RedisKeys, sample_server: Callable[[str], SampleServer],
) -> None:  # fmt: skip
    endpoint_id = uuid4()
    a_live, b_live = sample_server("a-live"), sample_server("b-live")
    dead = free_port()
    service_discovery.sync_model_service_routes([
        _target(endpoint_id, dead, host="host-a"),
        _target(endpoint_id, a_live.port, host="host-a"),
        _target(endpoint_id, b_live.port, host="host-b"),
    ])  # fmt: skip
    url = _register(proxy_url, endpoint_id)
    _routed(proxy_url, endpoint_id, 3)
    assert [_complete(url).status_code for _ in range(9)] == [200] * 9
    # The three turns of the dead replica were each retried on host b, never host a (a
    # refusal costs a millisecond: it ejects nothing):
    assert (a_live.state.served, b_live.state.served) == (3, 6)
    assert _retries(proxy_url) == 3
    # Host a's agent falls silent (a host cut off from the control plane): its replica
    # still answers, so it still gets its share.
    now_s = float(redis_client.time()[0])
    redis_client.hset(redis_keys.host_heartbeats, mapping={"host-a": now_s - 60, "host-b": now_s})
    time.sleep(1.5)
    served = a_live.state.served
    assert [_complete(url).status_code for _ in range(6)] == [200] * 6
    assert a_live.state.served >= served + 2


def _retries(proxy_url: str) -> float:
    text = requests.get(f"{proxy_url}/metrics", timeout=5).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               if family.name == "modelfleet_proxy_retries" for sample in family.samples
               if sample.name.endswith("_total"))  # fmt: skip


def test_a_request_whose_replica_acknowledged_it_waits_for_its_answer(
    redis_url: str, redis_keys: RedisKeys, tmp_path: Path,
    service_discovery: RedisServiceDiscovery, sample_server: Callable[[str], SampleServer],
) -> None:  # fmt: skip
    """A frozen machine's kernel still acknowledges the request: it may be answered yet,
    and a copy elsewhere could run twice. It waits, however long it is silent."""
    endpoint_id, b_live = uuid4(), sample_server("b-live")
    with (
        _proxy(redis_url, redis_keys, tmp_path, MODELFLEET_PROXY_DEAD_CONNECTION_S="0.5") as url,
        _never_answering_server() as (frozen_port, received),
    ):
        service_discovery.sync_model_service_routes([
            _target(endpoint_id, frozen_port, host="host-a"),
            _target(endpoint_id, b_live.port, host="host-b"),
        ])  # fmt: skip
        endpoint = _register(url, endpoint_id)
        _routed(url, endpoint_id, 2)
        answers: list[int] = []
        sent = [threading.Thread(target=lambda: answers.append(_complete(endpoint).status_code))
                for _ in range(2)]  # fmt: skip
        for thread in sent:
            thread.start()
        assert received.wait(timeout=5)  # one of them waits on host a
        time.sleep(3)  # six times the dead-connection time: the kernel acknowledged it
        assert (answers, b_live.state.served) == ([200], 1)
    for thread in sent:  # the frozen server went away (closed): gone, so sent elsewhere
        thread.join(timeout=15)
    assert answers == [200, 200]


def test_requests_are_counted_per_revision_and_class_and_two_proxies_add_up(
    redis_url: str, redis_keys: RedisKeys, tmp_path: Path, redis_client: redis.Redis,
    service_discovery: RedisServiceDiscovery, sample_server: Callable[[str], SampleServer],
) -> None:  # fmt: skip
    endpoint_id = uuid4()
    server = sample_server("s")
    with _proxy(redis_url, redis_keys, tmp_path) as first, \
            _proxy(redis_url, redis_keys, tmp_path) as second:  # fmt: skip
        service_discovery.sync_model_service_routes(
            [_target(endpoint_id, server.port, revision="7")]
        )
        for url in (first, second):
            endpoint = _register(url, endpoint_id)
            _routed(url, endpoint_id, 1)
            for _ in range(3):
                assert _complete(endpoint).status_code == 200
            assert requests.get(f"{endpoint}/nope", timeout=5).status_code == 404
        text = requests.get(f"{first}/metrics", timeout=5).text
        windows = wait_for(
            lambda: _window_totals(redis_client, redis_keys, endpoint_id),
            lambda found: found.get("7|2xx") == 6, timeout_s=10,
            what="both proxies' counts in Redis",
        )  # fmt: skip
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }  # fmt: skip
    labels = (("code_class", "2xx"), ("endpoint", str(endpoint_id)), ("revision", "7"))
    assert samples[("modelfleet_proxy_requests_total", labels)] == 3
    not_found = (("code_class", "4xx"), ("endpoint", str(endpoint_id)), ("revision", "7"))
    assert samples[("modelfleet_proxy_requests_total", not_found)] == 1
    assert ("modelfleet_proxy_routing_table_age_seconds", ()) in samples
    assert windows["7|4xx"] == 2
    assert redis_client.zscore(redis_keys.last_requests, str(endpoint_id)) is not None


def _window_totals(client: redis.Redis, keys: RedisKeys, endpoint_id: UUID) -> dict[str, int]:
    totals: dict[str, int] = {}
    for key in client.scan_iter(match=keys.request_window(endpoint_id, 0)[:-1] + "*"):
        found: dict[str, str] = client.hgetall(key)  # type: ignore[assignment]
        for name, value in found.items():
            totals[name] = totals.get(name, 0) + int(value)
    return totals


@contextmanager
def _proxy(redis_url: str, redis_keys: RedisKeys, tmp_path: Path, *options: str,
           **env: str) -> Iterator[str]:  # fmt: skip
    with _proxy_process(redis_url, redis_keys, tmp_path, *options, **env) as (url, _):
        yield url


@contextmanager
def _proxy_process(redis_url: str, redis_keys: RedisKeys, tmp_path: Path, *options: str,
                   **env: str) -> Iterator[tuple[str, Process]]:  # fmt: skip
    port = free_port()
    environ = {**os.environ, "MODELFLEET_REDIS_URL": redis_url,
               "MODELFLEET_REDIS_KEY_PREFIX": redis_keys.prefix, "MODELFLEET_PROXY_TOKEN": TOKEN,
               **env}  # fmt: skip
    process = Process(f"proxy-{port}", [sys.executable, "-m", "workers", "proxy",
                                        f"--port={port}", *options], environ, tmp_path)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _listening(url), timeout_s=30, what="the proxy to listen")
        yield url, process
    finally:
        process.stop()


def test_workers_share_one_port_and_their_metrics_add_up(
    redis_url: str, redis_keys: RedisKeys, tmp_path: Path,
    service_discovery: RedisServiceDiscovery, sample_server: Callable[[str], SampleServer],
) -> None:  # fmt: skip
    endpoint_id, server = uuid4(), sample_server("s")
    with _proxy_process(redis_url, redis_keys, tmp_path, "--workers=2") as (url, process):
        children = wait_for(lambda: _children(process.popen.pid), lambda c: len(c) == 2,
                            timeout_s=30, what="two worker processes")  # fmt: skip
        service_discovery.sync_model_service_routes([_target(endpoint_id, server.port)])
        endpoint = _register(url, endpoint_id)
        # Each request a new connection, to either worker: ten in a row answered, both route.
        wait_for(lambda: [_complete(endpoint).status_code for _ in range(10)],
                 lambda codes: codes == [200] * 10, timeout_s=20,
                 what="every worker routing the endpoint")  # fmt: skip
        served_before = server.state.served
        for _ in range(40):  # a new connection each: the kernel spreads them over both
            assert _complete(endpoint).status_code == 200
        text = requests.get(f"{url}/metrics", timeout=5).text
        assert server.state.served == served_before + 40
        process.stop()
        assert not any(_alive(child) for child in children)
    counted = sum(
        s.value
        for family in text_string_to_metric_families(text) for s in family.samples
        if s.name == "modelfleet_proxy_requests_total" and s.labels["code_class"] == "2xx"
    )  # fmt: skip
    assert counted >= 40  # every request either worker forwarded, in one exposition


def _children(pid: int) -> list[int]:
    """The worker processes `pid` spawned (not multiprocessing's resource tracker)."""
    tasks = Path(f"/proc/{pid}/task")
    found = (t / "children" for t in tasks.iterdir()) if tasks.exists() else ()
    children = [int(child) for path in found for child in path.read_text().split()]
    return [child for child in children if b"spawn_main" in _cmdline(Path(f"/proc/{child}"))]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _listening(url: str) -> bool:
    try:
        requests.get(f"{url}/metrics", timeout=1)
    except requests.RequestException:
        return False
    return True


@contextmanager
def _streaming_server() -> Iterator[tuple[int, threading.Event]]:
    """Answers with an event stream: one piece at once, the last once the test releases it."""
    release = threading.Event()

    class Streaming(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece, wait in ((b"data: first\n\n", False), (b"data: last\n\n", True)):
                if wait:
                    release.wait(timeout=10)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

        def log_message(self, *_: object) -> None:
            """Quiet."""

    with _serving(Streaming) as port:
        yield port, release


@contextmanager
def _echoing_server() -> Iterator[int]:
    """Answers every POST with its path, a space and its body, as received."""

    class Echoing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            payload = self.path.encode() + b" " + body
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_: object) -> None:
            """Quiet."""

    with _serving(Echoing) as port:
        yield port


@contextmanager
def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)  # fmt: skip
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_requests_for_a_deployment_at_zero_wait_announce_a_wake_and_go_out_in_turns(
    redis_url: str, redis_keys: RedisKeys, tmp_path: Path, redis_client: redis.Redis,
    service_discovery: RedisServiceDiscovery, sample_server: Callable[[str], SampleServer],
) -> None:  # fmt: skip
    endpoint_id, server = uuid4(), sample_server("woken")
    server.state.latency_s = 0.3
    service_discovery.publish_endpoint_modes({endpoint_id: WAKES})
    with _proxy(redis_url, redis_keys, tmp_path, MODELFLEET_PROXY_WAKE_CONCURRENCY="2") as url:
        endpoint = _register(url, endpoint_id)
        _mode_read()
        with ThreadPoolExecutor(max_workers=8) as pool:
            held = [pool.submit(_complete, endpoint) for _ in range(8)]
            wait_for(lambda: _held(url), lambda n: n == 8, timeout_s=10, what="8 requests held")
            wakes: Any = wait_for(lambda: redis_client.xrange(redis_keys.wakes), bool, timeout_s=5,
                             what="a wake announced")  # fmt: skip
            told = wait_for(lambda: redis_client.hvals(redis_keys.held(endpoint_id)),
                            lambda counts: [int(c) for c in counts] == [8], timeout_s=5,
                            what="the wake saying 8 are held")  # fmt: skip
            with _peak_in_flight(server) as peak:
                service_discovery.sync_model_service_routes([_target(endpoint_id, server.port)])
                statuses = [future.result(timeout=30).status_code for future in held]
    assert statuses == [200] * 8
    assert [int(count) for count in told] == [8]  # one process, all 8 held
    assert {fields["deployments"] for _, fields in wakes} == {str(endpoint_id)}
    assert peak == [2]  # never more than MODELFLEET_PROXY_WAKE_CONCURRENCY at once


def test_a_hold_ends_in_504_after_its_time_and_503_with_retry_after_when_full(
    redis_url: str, redis_keys: RedisKeys, tmp_path: Path,
    service_discovery: RedisServiceDiscovery,
) -> None:  # fmt: skip
    endpoint_id = uuid4()
    service_discovery.publish_endpoint_modes({endpoint_id: WAKES})
    with _proxy(redis_url, redis_keys, tmp_path, MODELFLEET_PROXY_HOLD_S="2",
                MODELFLEET_PROXY_HOLD_MAX="1") as url:  # fmt: skip
        endpoint = _register(url, endpoint_id)
        _mode_read()
        with ThreadPoolExecutor(max_workers=1) as pool:
            first = pool.submit(_complete, endpoint)
            wait_for(lambda: _held(url), lambda n: n == 1, timeout_s=10, what="one held")
            full = _complete(endpoint)
            timed_out = first.result(timeout=15)
    assert (full.status_code, full.headers["Retry-After"]) == (503, "5")
    assert full.json() == {
        "error": f"1 requests already wait for endpoint {endpoint_id}; try again later"
    }
    assert timed_out.status_code == 504
    assert timed_out.json() == {"error": f"no replica of endpoint {endpoint_id} became ready "
                                         "within 2 s (MODELFLEET_PROXY_HOLD_S)"}  # fmt: skip


def test_a_deployment_an_operator_scaled_to_zero_is_503_at_once(
    proxy_url: str, service_discovery: RedisServiceDiscovery, redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:  # fmt: skip
    endpoint_id = uuid4()
    service_discovery.publish_endpoint_modes({endpoint_id: OPERATOR_ZERO})
    endpoint = _register(proxy_url, endpoint_id)
    answer = wait_for(lambda: _complete(endpoint), lambda a: a.status_code == 503 and
                      "operator" in a.text, timeout_s=5, what="the mode read")  # fmt: skip
    assert answer.json() == {"error": f"endpoint {endpoint_id} is scaled to 0 by an operator"}
    assert answer.elapsed.total_seconds() < 1  # not held
    assert redis_client.xlen(redis_keys.wakes) == 0


def test_held_bytes_past_the_limit_get_503_and_an_unavailable_deployment_503_saying_why(
    redis_url: str, redis_keys: RedisKeys, tmp_path: Path,
    service_discovery: RedisServiceDiscovery,
) -> None:  # fmt: skip
    waking, crashing = uuid4(), uuid4()
    why = "its replicas keep exiting: 3 sessions ended on their own in the last 10 minutes"
    service_discovery.publish_endpoint_modes(
        {waking: WAKES, crashing: EndpointState(EndpointMode.UNAVAILABLE, why)}
    )
    with _proxy(redis_url, redis_keys, tmp_path, MODELFLEET_PROXY_HOLD_S="3",
                MODELFLEET_PROXY_HOLD_MAX_BYTES="1000") as url:  # fmt: skip
        endpoint = _register(url, waking)
        _mode_read()
        big = {"prompt": "x" * 600}
        with ThreadPoolExecutor(max_workers=1) as pool:
            first = pool.submit(requests.post, f"{endpoint}/v1/completions", json=big, timeout=10)
            wait_for(lambda: _held(url), lambda n: n == 1, timeout_s=10, what="one held")
            over = requests.post(f"{endpoint}/v1/completions", json=big, timeout=10)
            first.result(timeout=15)
        refused = _complete(_register(url, crashing))
    assert (over.status_code, over.headers["Retry-After"]) == (503, "5")
    assert "bytes of requests already wait for wakes (MODELFLEET_PROXY_HOLD_MAX_BYTES 1000)" \
        in over.json()["error"]  # fmt: skip
    assert refused.status_code == 503
    assert refused.json() == {"error": f"endpoint {crashing} cannot serve now: {why}"}
    assert refused.elapsed.total_seconds() < 1  # not held for a wake that cannot come


def _mode_read() -> None:
    """The proxy reads the endpoint modes once a second."""
    time.sleep(1.5)


def _held(proxy_url: str) -> float:
    text = requests.get(f"{proxy_url}/metrics", timeout=5).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text) for s in family.samples
        if s.name == "modelfleet_proxy_held_requests"
    )  # fmt: skip


@contextmanager
def _peak_in_flight(server: SampleServer) -> Iterator[list[int]]:
    """The most requests the server was answering at once (sampled every 10 ms)."""
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.wait(0.01):
            peak[0] = max(peak[0], server.state.in_flight)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


def test_a_held_request_is_let_go_when_an_operator_scales_its_deployment_to_zero(
    proxy_url: str, service_discovery: RedisServiceDiscovery,
) -> None:  # fmt: skip
    endpoint_id = uuid4()
    service_discovery.publish_endpoint_modes({endpoint_id: WAKES})
    endpoint = _register(proxy_url, endpoint_id)
    _mode_read()
    with ThreadPoolExecutor(max_workers=1) as pool:
        held = pool.submit(_complete, endpoint)
        wait_for(lambda: _held(proxy_url), lambda n: n == 1, timeout_s=10, what="one held")
        service_discovery.publish_endpoint_modes({endpoint_id: OPERATOR_ZERO})
        answer = held.result(timeout=10)  # not the 300 s hold
    assert answer.status_code == 503
    assert answer.json() == {"error": f"endpoint {endpoint_id} is scaled to 0 by an operator"}


def test_a_request_being_answered_keeps_its_deployment_from_looking_idle(
    proxy_url: str, service_discovery: RedisServiceDiscovery, redis_client: redis.Redis,
    redis_keys: RedisKeys, sample_server: Callable[[str], SampleServer],
) -> None:  # fmt: skip
    endpoint_id, slow = uuid4(), sample_server("slow")
    slow.state.latency_s = 3.0  # a long generation
    service_discovery.sync_model_service_routes([_target(endpoint_id, slow.port)])
    endpoint = _register(proxy_url, endpoint_id)
    _routed(proxy_url, endpoint_id, 1)
    with ThreadPoolExecutor(max_workers=1) as pool:
        answering = pool.submit(_complete, endpoint)
        time.sleep(1.2)
        early = redis_client.zscore(redis_keys.last_requests, str(endpoint_id))
        time.sleep(1.5)
        late = redis_client.zscore(redis_keys.last_requests, str(endpoint_id))
        assert answering.result(timeout=10).status_code == 200
    assert early is not None
    assert late is not None
    assert late >= early + 1  # seen again at each flush while it was being answered


def test_the_table_keeps_its_routes_when_the_published_set_vanishes_until_it_is_withdrawn(
    redis_url: str, redis_keys: RedisKeys, tmp_path: Path, redis_client: redis.Redis,
    service_discovery: RedisServiceDiscovery, sample_server: Callable[[str], SampleServer],
) -> None:  # fmt: skip
    """A Redis restarted empty (or keys that went) is not the controller withdrawing routes:
    the proxy keeps serving them; a sync that withdraws them (a newer generation) does."""
    endpoint_id, server = uuid4(), sample_server("s")
    with _proxy(redis_url, redis_keys, tmp_path, MODELFLEET_PROXY_RESYNC_S="0.3") as url:
        endpoint = _register(url, endpoint_id)
        service_discovery.sync_model_service_routes([_target(endpoint_id, server.port)])
        _routed(url, endpoint_id, 1)
        before = wait_for(lambda: _describe(url, endpoint_id)["table"],
                          lambda table: table["generation"] is not None, timeout_s=10,
                          what="a resync to stamp the table")  # fmt: skip
        lost = list(redis_client.scan_iter(match=f"{redis_keys.prefix}service_discovery*"))
        redis_client.delete(*lost)  # what a Redis restarted empty looks like
        time.sleep(1.5)  # several resyncs
        assert len(_describe(url, endpoint_id)["replicas"]) == 1
        assert _complete(endpoint).status_code == 200
        service_discovery.sync_model_service_routes([])  # the controller withdraws it
        _routed(url, endpoint_id, 0)
        assert _describe(url, endpoint_id)["table"]["generation"] > before["generation"]
        assert _complete(endpoint).status_code == 503


def _describe(proxy_url: str, endpoint_id: UUID) -> dict[str, Any]:
    found: dict[str, Any] = requests.get(
        f"{proxy_url}/v2/endpoints/{endpoint_id}", headers={"X-BackendAI-Token": TOKEN}, timeout=5
    ).json()
    return found  # fmt: skip


def test_a_request_on_a_cut_link_goes_to_another_host_after_the_dead_connection_time(
    redis_url: str, redis_keys: RedisKeys, tmp_path: Path,
    service_discovery: RedisServiceDiscovery, sample_server: Callable[[str], SampleServer],
) -> None:  # fmt: skip
    """A machine cut off mid-conversation: a request it acknowledged and was computing gets
    no answer to the kernel's keep-alive probes, and the next one written on its kept-alive
    connection is never acknowledged; after MODELFLEET_PROXY_DEAD_CONNECTION_S each goes
    elsewhere."""
    assert namespaces.available(), "network namespaces need root and iproute2"
    endpoint_id, b_live = uuid4(), sample_server("b-live")
    settings = {"MODELFLEET_PROXY_DEAD_CONNECTION_S": "1"}
    with namespaces.bridged_hosts(1) as network, _proxy(
        redis_url, redis_keys, tmp_path, **settings
    ) as url:  # fmt: skip
        host, port = network.hosts[0], free_port()
        argv = host.argv([sys.executable, "-m", "workers.devtools.model_server"])
        model = Process("cut-model", argv, {**os.environ, "PORT": str(port), "BIND_HOST": "0.0.0.0",
                                            "MODEL_NAME": "cut", "MODEL_LATENCY_S": "1.5"},
                        tmp_path)  # fmt: skip
        try:
            service_discovery.sync_model_service_routes([
                _target(endpoint_id, port, host="host-a", address=host.address),
                _target(endpoint_id, b_live.port, host="host-b"),
            ])  # fmt: skip
            endpoint = _register(url, endpoint_id)
            _routed(url, endpoint_id, 2)
            wait_for(lambda: {_complete(endpoint).json()["model"] for _ in range(4)},
                     lambda models: models == {"cut", "b-live"}, timeout_s=30,
                     what="both replicas answering (their connections kept alive)")  # fmt: skip
            with ThreadPoolExecutor(max_workers=2) as pool:
                in_flight = [pool.submit(_complete, endpoint) for _ in range(2)]  # one each
                time.sleep(0.5)  # host a acknowledged its request and is computing it
                host.cut()
                answers = [_complete(endpoint) for _ in range(4)]
                answers += [future.result() for future in in_flight]
        finally:
            model.stop()
    assert [a.status_code for a in answers] == [200] * 6
    assert {a.json()["model"] for a in answers} == {"b-live"}
    proxy_log = next(tmp_path.glob("proxy-*.log")).read_text()
    # the one in flight there went elsewhere; the replica was ejected: the rest went to b
    assert proxy_log.count("no byte and no TCP progress for 1 s; retrying") == 1


def test_a_weight_change_whose_feed_entry_was_missed_reaches_the_table_at_the_next_resync(
    redis_url: str, redis_keys: RedisKeys, tmp_path: Path, redis_client: redis.Redis,
    service_discovery: RedisServiceDiscovery, sample_server: Callable[[str], SampleServer],
) -> None:  # fmt: skip
    endpoint_id, server = uuid4(), sample_server("s")
    target = _target(endpoint_id, server.port, traffic_ratio="9")
    with _proxy(redis_url, redis_keys, tmp_path) as url:  # resync every 5 s (the default)
        _register(url, endpoint_id)
        service_discovery.sync_model_service_routes([target])
        _routed(url, endpoint_id, 1)
        # A sync whose feed entry never reached this proxy: the hash and the generation
        # change, and no entry is added.
        moved = replace(target, labels={**target.labels, "traffic_ratio": "1"})
        redis_client.hset(redis_keys.scrape_target(target.route_id),
                          mapping=target_fields(moved))  # type: ignore[arg-type]  # fmt: skip
        redis_client.incr(redis_keys.scrape_target_generation)
        wait_for(lambda: _describe(url, endpoint_id)["replicas"][0]["weight"],
                 lambda weight: weight == 1.0, timeout_s=8,
                 what="the new weight within a resync (5 s)")  # fmt: skip


def test_prefix_cache_routing_sends_a_prefix_where_it_is_cached_from_either_worker(
    redis_url: str, redis_keys: RedisKeys, tmp_path: Path,
    service_discovery: RedisServiceDiscovery, sample_server: Callable[[str], SampleServer],
) -> None:  # fmt: skip
    """Two documents, each asked about six times through a proxy of two workers (a new
    connection each: the kernel spreads them): each document goes to one replica, which
    reports its prefix cached after the first."""
    endpoint_id, replicas = uuid4(), [sample_server(f"r{i}") for i in range(4)]
    for replica in replicas:
        replica.state.engine = Engine(EngineConfig(kv_blocks=1000, block_chars=64))
    service_discovery.sync_model_service_routes(
        [_target(endpoint_id, r.port, routing="prefix-cache") for r in replicas])  # fmt: skip
    documents = [f"document {d}: " + f"paragraph {d} of the report. " * 80 for d in range(2)]
    with _proxy(redis_url, redis_keys, tmp_path, "--workers=2") as url:
        endpoint = _register(url, endpoint_id)
        _routed(url, endpoint_id, 4)
        answered: dict[int, list[tuple[str, int]]] = {0: [], 1: []}
        for turn in range(6):
            for d, document in enumerate(documents):
                answer = requests.post(
                    f"{endpoint}/v1/completions",
                    timeout=10,
                    json={"prompt": f"{document} question {turn}?"},
                ).json()
                cached = answer["usage"]["prompt_tokens_details"]["cached_tokens"]
                answered[d].append((answer["model"], cached))
        metrics = requests.get(f"{url}/metrics", timeout=5).text
    for d in (0, 1):
        assert len({model for model, _ in answered[d]}) == 1, answered[d]  # one replica each
        assert all(cached > 500 for _, cached in answered[d][1:]), answered[d]
    assert "modelfleet_proxy_routing_decisions_total" in metrics
    assert "modelfleet_proxy_cached_tokens_total" in metrics


def test_a_bad_routing_policy_is_one_line_exit_2(run: Any) -> None:
    assert run("scaling-group", "create", "rg").exit_code == 0
    bad = run("deployment", "create", "x", "--group", "rg", "--image", "i", "--routing", "random")
    assert bad.exit_code == 2
    assert "--routing" in bad.output
    assert "Traceback" not in bad.output
