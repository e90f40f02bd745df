"""Service discovery in Redis, and the Prometheus HTTP SD endpoint serving it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from uuid import UUID, uuid4

import pytest
import redis
import requests
from waitress.server import create_server

from workers.adapters.redis.discovery import RedisServiceDiscovery
from workers.adapters.redis.keys import RedisKeys
from workers.domain import ModelServiceMetadata
from workers.web.service_discovery import PATH, make_app


def _target(port: int = 8000, route_id: UUID | None = None) -> ModelServiceMetadata:
    route_id = route_id or uuid4()
    return ModelServiceMetadata(
        route_id=route_id,
        model_service_name="echo",
        host="10.0.0.5",
        port=port,
        labels={"route_id": str(route_id), "model_service_name": "echo"},
    )


def test_sync_publishes_each_route_without_expiry_stamped_with_a_newer_generation(
    service_discovery: RedisServiceDiscovery, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    target = _target()
    service_discovery.sync_model_service_routes([target])
    key = redis_keys.scrape_target(target.route_id)
    assert redis_client.hgetall(key) == {
        "name": "echo",
        "host": "10.0.0.5",
        "port": "8000",
        "metrics_path": "/metrics",
        "labels": json.dumps(dict(target.labels), sort_keys=True),
    }
    assert redis_client.ttl(key) == -1  # only a sync withdraws it: none of it expires
    assert redis_client.ttl(redis_keys.scrape_target_index) == -1
    assert service_discovery.registered_targets() == [target]
    first = int(str(redis_client.get(redis_keys.scrape_target_generation)))
    service_discovery.sync_model_service_routes([target])  # the same set: the same generation
    assert int(str(redis_client.get(redis_keys.scrape_target_generation))) == first
    moved = replace(target, labels={**target.labels, "traffic_ratio": "5"})
    service_discovery.sync_model_service_routes([moved])
    second = int(str(redis_client.get(redis_keys.scrape_target_generation)))
    assert second > first
    redis_client.delete(redis_keys.scrape_target_generation)  # a Redis restarted empty
    service_discovery.sync_model_service_routes([moved])
    assert int(str(redis_client.get(redis_keys.scrape_target_generation))) > second


def test_sync_replaces_the_whole_set(
    service_discovery: RedisServiceDiscovery, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    old, kept, new = _target(1), _target(2), _target(3)
    service_discovery.sync_model_service_routes([old, kept])
    service_discovery.sync_model_service_routes([kept, new])
    assert {t.route_id for t in service_discovery.registered_targets()} == {
        kept.route_id,
        new.route_id,
    }
    assert not redis_client.exists(redis_keys.scrape_target(old.route_id))


def test_an_empty_sync_purges_everything(
    service_discovery: RedisServiceDiscovery, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    first, second = _target(1), _target(2)
    service_discovery.sync_model_service_routes([first, second])
    service_discovery.sync_model_service_routes([])
    assert service_discovery.registered_targets() == []
    # Only the change feed is left, its last entry naming both routes gone (for the proxies),
    # and the generation that makes the empty set the controller's word.
    left = set(redis_client.scan_iter(match=f"{redis_keys.prefix}*"))
    assert left == {redis_keys.scrape_target_changes, redis_keys.scrape_target_generation}
    newest: Any = redis_client.xrevrange(redis_keys.scrape_target_changes, count=1)
    [(_, last)] = newest
    assert last == {"routes": ",".join(sorted([str(first.route_id), str(second.route_id)]))}


def test_malformed_targets_are_left_out(
    service_discovery: RedisServiceDiscovery, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    good, bad = _target(1), _target(2)
    service_discovery.sync_model_service_routes([good, bad])
    redis_client.hset(redis_keys.scrape_target(bad.route_id), "port", "eighty")
    assert service_discovery.registered_targets() == [good]


@pytest.fixture
def sd_server(service_discovery: RedisServiceDiscovery) -> Iterator[str]:
    server = create_server(make_app(service_discovery), host="127.0.0.1", port=0)
    stopping = threading.Event()

    def run() -> None:
        try:
            server.run()
        except OSError:  # close() from this thread can pull the socket from under its select()
            if not stopping.is_set():
                raise

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    port = server.effective_port  # type: ignore[union-attr]  # one socket: a TcpWSGIServer
    yield f"http://127.0.0.1:{port}"
    stopping.set()
    server.close()
    thread.join(timeout=5)


def test_http_sd_serves_prometheus_target_groups(
    service_discovery: RedisServiceDiscovery, sd_server: str
) -> None:
    target = _target(9000)
    service_discovery.sync_model_service_routes([target])
    response = requests.get(sd_server + PATH, timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == [
        {
            "targets": ["10.0.0.5:9000"],
            "labels": {**target.labels, "__metrics_path__": "/metrics"},
        }
    ]
    assert requests.get(sd_server + "/other", timeout=5).status_code == 404
    assert requests.post(sd_server + PATH, timeout=5).status_code == 405


def test_http_sd_head_has_no_body_and_405_says_what_is_allowed(
    service_discovery: RedisServiceDiscovery, sd_server: str
) -> None:
    service_discovery.sync_model_service_routes([_target(9000)])
    head = _raw(sd_server, f"HEAD {PATH} HTTP/1.0\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200")
    assert head.endswith(b"\r\n\r\n")  # headers only: HEAD must not send the body
    refused = requests.post(sd_server + PATH, timeout=5)
    assert refused.status_code == 405
    assert refused.headers["Allow"] == "GET, HEAD"


def test_http_sd_brackets_ipv6_hosts_for_prometheus(
    service_discovery: RedisServiceDiscovery, sd_server: str
) -> None:
    """Prometheus refuses "::1:9100" ("too many colons") and keeps such a target down."""
    v6 = ModelServiceMetadata(uuid4(), "echo", "::1", 9100, labels={"route_id": "r"})
    service_discovery.sync_model_service_routes([v6, _target(9000)])
    targets = sorted(g["targets"][0] for g in requests.get(sd_server + PATH, timeout=5).json())
    assert targets == ["10.0.0.5:9000", "[::1]:9100"]


def _raw(server: str, request: str) -> bytes:
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(request.encode())
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_http_sd_answers_503_when_redis_is_down(
    redis_keys: RedisKeys, unreachable_redis: redis.Redis
) -> None:
    down = RedisServiceDiscovery(client=unreachable_redis, keys=redis_keys)
    statuses: list[str] = []
    body = make_app(down)(
        {"PATH_INFO": PATH, "REQUEST_METHOD": "GET"}, lambda s, h: statuses.append(s)
    )
    assert statuses == ["503 Service Unavailable"]
    assert "redis unavailable" in json.loads(b"".join(body))["error"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_cli_serves_the_endpoint(
    service_discovery: RedisServiceDiscovery, redis_url: str, redis_keys: RedisKeys
) -> None:
    target = _target(7000)
    service_discovery.sync_model_service_routes([target])
    port = _free_port()
    env = os.environ | {
        "MODELFLEET_REDIS_URL": redis_url,
        "MODELFLEET_REDIS_KEY_PREFIX": redis_keys.prefix,
    }
    command = [
        sys.executable,
        "-m",
        "workers.cli",
        "service-discovery",
        "serve",
        "--port",
        str(port),
    ]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as process:
        try:
            document = _get_when_up(f"http://127.0.0.1:{port}{PATH}", process)
            assert document[0]["targets"] == ["10.0.0.5:7000"]
        finally:
            process.terminate()
            process.wait(timeout=10)


def _get_when_up(url: str, process: subprocess.Popen[bytes]) -> list[dict[str, object]]:
    deadline = time.monotonic() + 20
    while True:
        try:
            document: list[dict[str, object]] = requests.get(url, timeout=2).json()
            return document
        except requests.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                stderr = process.stderr.read().decode() if process.stderr else ""
                raise AssertionError(f"service discovery did not come up: {stderr}") from None
            time.sleep(0.1)
