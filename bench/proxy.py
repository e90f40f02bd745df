"""The modelfleet proxy against going straight to a replica: added latency, throughput,
and how soon a published change reaches its routing table.

    python bench/proxy.py [--clients 16,64] [--others 0,1000,10000] [--workers 2]
                          [--seconds 10] [--changes 50]

Two sample model servers (`python -m workers.devtools.model_server`, answering GET
/health) are published for one endpoint, beside N routes of other endpoints. For each
N and client count, `wrk` (Debian's package) loads one replica directly and then the
endpoint through `modelfleet proxy --workers W`; the table gives requests/s and
p50/p99 of each, the p50 the proxy adds and the throughput ratio. Then `--changes`
times: a route is published (or removed) and the time until the proxy's routing table
holds it (polling `GET /v2/endpoints/{id}` every 5 ms) is kept; p50 and p95 printed.

Uses MODELFLEET_BENCH_REDIS_URL (else a throwaway Redis), a key prefix of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import requests

from workers.adapters.redis.client import create_redis_client
from workers.adapters.redis.discovery import RedisServiceDiscovery
from workers.adapters.redis.keys import RedisKeys
from workers.devtools.processes import Process, wait_for
from workers.devtools.throwaway_servers import free_port, start_redis
from workers.devtools.traffic import percentile
from workers.domain import ModelServiceMetadata

TOKEN = secrets.token_urlsafe(16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="16,64")
    parser.add_argument("--others", default="0,1000,10000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--changes", type=int, default=50)
    args = parser.parse_args()
    with _redis() as redis_url, tempfile.TemporaryDirectory() as folder:
        keys = RedisKeys(f"bench-proxy-{uuid.uuid4().hex[:8]}:")
        client = create_redis_client(redis_url)
        discovery = RedisServiceDiscovery(client=client, keys=keys)
        endpoint = uuid.uuid4()
        env = {
            **os.environ,
            "MODELFLEET_REDIS_URL": redis_url,
            "MODELFLEET_REDIS_KEY_PREFIX": keys.prefix,
            "MODELFLEET_PROXY_TOKEN": TOKEN,
        }
        try:
            with (
                _models(Path(folder), env) as ports,
                _proxy(Path(folder), env, args.workers) as proxy_url,
            ):
                _register(proxy_url, endpoint)
                _table(discovery, proxy_url, endpoint, ports, args)
                _updates(discovery, proxy_url, endpoint, ports, args.changes)
        finally:
            for key in client.scan_iter(match=f"{keys.prefix}*", count=1000):
                client.delete(key)
            client.close()


def _table(
    discovery: RedisServiceDiscovery,
    proxy_url: str,
    endpoint: uuid.UUID,
    ports: list[int],
    args: argparse.Namespace,
) -> None:
    others = [int(n) for n in args.others.split(",")]
    clients, seconds = [int(c) for c in args.clients.split(",")], args.seconds
    print(
        "| other routes | clients | direct req/s | proxy req/s | ratio | direct p50 ms "
        "| proxy p50 ms | added p50 ms | direct p99 ms | proxy p99 ms |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for count in others:
        discovery.sync_model_service_routes(_targets(endpoint, ports) + _others(count))
        _wait_routed(proxy_url, endpoint, len(ports))
        time.sleep(1)
        for concurrency in clients:
            direct = _wrk(f"http://127.0.0.1:{ports[0]}/health", concurrency, seconds)
            proxied = _wrk(f"{proxy_url}/e/{endpoint}/health", concurrency, seconds)
            print(
                f"| {count:,} | {concurrency} | {direct[0]:,.0f} | {proxied[0]:,.0f} "
                f"| {proxied[0] / direct[0]:.2f} | {direct[1]:.2f} | {proxied[1]:.2f} "
                f"| {proxied[1] - direct[1]:.2f} | {direct[2]:.2f} | {proxied[2]:.2f} |",
                flush=True,
            )


def _updates(
    discovery: RedisServiceDiscovery,
    proxy_url: str,
    endpoint: uuid.UUID,
    ports: list[int],
    changes: int,
) -> None:
    delays = []
    base = _targets(endpoint, ports)
    for turn in range(changes):
        extra = [] if turn % 2 else [_target(endpoint, ports[0])]
        started = time.monotonic()
        discovery.sync_model_service_routes(base + extra)
        _wait_routed(proxy_url, endpoint, len(base) + len(extra), poll_s=0.005)
        delays.append(time.monotonic() - started)
    print(
        f"\nrouting table update ({changes} changes, 10,000 other routes as last published): "
        f"p50 {statistics.median(delays) * 1000:.0f} ms, "
        f"p95 {percentile(delays, 0.95) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms"
    )


def _wrk(url: str, connections: int, seconds: int) -> tuple[float, float, float]:
    """Requests/s, p50 and p99 (ms)."""
    done = subprocess.run(
        ["wrk", f"-c{connections}", "-t2", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    )
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    return rate, _ms(done.stdout, "50%"), _ms(done.stdout, "99%")


def _ms(report: str, quantile: str) -> float:
    value, unit = re.search(rf"{quantile}\s+([\d.]+)(us|ms|s)", report).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _targets(endpoint: uuid.UUID, ports: list[int]) -> list[ModelServiceMetadata]:
    return [_target(endpoint, port) for port in ports]


def _target(endpoint: uuid.UUID, port: int) -> ModelServiceMetadata:
    return ModelServiceMetadata(
        uuid.uuid4(), "bench", "127.0.0.1", port, labels={"endpoint_id": str(endpoint)}
    )


def _others(count: int) -> list[ModelServiceMetadata]:
    return [
        ModelServiceMetadata(
            uuid.uuid4(), "other", "10.255.0.1", 9, labels={"endpoint_id": str(uuid.uuid4())}
        )
        for _ in range(count)
    ]


def _wait_routed(proxy_url: str, endpoint: uuid.UUID, replicas: int, poll_s: float = 0.05) -> None:
    def known() -> int:
        answer = requests.get(
            f"{proxy_url}/v2/endpoints/{endpoint}", headers={"X-BackendAI-Token": TOKEN}, timeout=5
        )
        return len(answer.json()["replicas"])

    deadline = time.monotonic() + 60
    while known() != replicas:
        if time.monotonic() > deadline:
            raise SystemExit(f"the proxy never held {replicas} replicas")
        time.sleep(poll_s)


def _register(proxy_url: str, endpoint: uuid.UUID) -> None:
    requests.post(
        f"{proxy_url}/v2/endpoints/{endpoint}",
        json={},
        headers={"X-BackendAI-Token": TOKEN},
        timeout=5,
    ).raise_for_status()


@contextlib.contextmanager
def _models(folder: Path, env: dict[str, str]) -> Iterator[list[int]]:
    ports = [free_port(), free_port()]
    models = [
        Process(
            f"model-{port}",
            [sys.executable, "-m", "workers.devtools.model_server", f"--port={port}"],
            env,
            folder,
        )
        for port in ports
    ]
    try:
        for url in (f"http://127.0.0.1:{port}/health" for port in ports):
            wait_for(partial(_answers, url), timeout_s=30, what="a sample model")
        yield ports
    finally:
        for model in models:
            model.stop()


@contextlib.contextmanager
def _proxy(folder: Path, env: dict[str, str], workers: int) -> Iterator[str]:
    port = free_port()
    proxy = Process(
        "proxy",
        [
            sys.executable,
            "-m",
            "workers",
            "proxy",
            f"--port={port}",
            f"--workers={workers}",
            "--log-level=WARNING",
        ],
        env,
        folder,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{url}/metrics"), timeout_s=30, what="the proxy")
        yield url
    finally:
        proxy.stop()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


@contextlib.contextmanager
def _redis() -> Iterator[str]:
    configured = os.environ.get("MODELFLEET_BENCH_REDIS_URL")
    if configured:
        yield configured
        return
    server = start_redis()
    try:
        yield server.url
    finally:
        server.stop()


if __name__ == "__main__":
    main()
