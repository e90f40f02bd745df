"""Routing for LLM serving, measured: round-robin, least-request and prefix-cache on the
same trace, against the best hit rate achievable.

    python bench/prefix_routing.py [--rates 5,20,60] [--duration-s 60] [--seed 7]
                                   [--soak-s 0] [--soak-rate 20]

8 replicas of the sample model's simulated engine (`workers/devtools/engine.py`: 2,000
blocks of 64 characters each, a quarter of the prefixes; 0.2 ms per uncached prompt
token, 5 ms per output token, 16 output tokens, 4 running at once) behind a real
`modelfleet proxy` (one process). The workload, the same seed for every policy: 64
prefixes of 8,000 characters (a document each), each request one of them (Zipf,
s = 0.8: some are hot) plus a short question of its own, streamed; arrivals are
Poisson at each `--rates` (requests/s) for `--duration-s`. Reported per policy and
rate: the hit rate the replicas reported (cached / prompt tokens), the best achievable
on that trace (every prefix cached after its first request: the caches together hold
them all), time to first token p50 and p90, completed requests per second, failures,
the proxy's routing decision p99 (its histogram's bucket) and its memory. Then the
decision alone with 10,000 routes published (in this process), and with `--soak-s`,
the proxy's memory over a long prefix-cache run at `--soak-rate` whose every request
brings a document never seen (its index reaches its bound within minutes, then holds).
Figures of the cost model, not of a GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID, uuid4

import aiohttp
import requests
from prometheus_client.parser import text_string_to_metric_families

from workers.adapters.redis.client import create_redis_client
from workers.adapters.redis.discovery import RedisServiceDiscovery
from workers.adapters.redis.keys import RedisKeys
from workers.contracts.labels import RouteLabels, to_labels
from workers.contracts.prompts import block_hashes
from workers.devtools.processes import Process, stop_all, wait_for
from workers.devtools.throwaway_servers import free_port, start_redis
from workers.devtools.traffic import percentile
from workers.domain import ModelServiceMetadata, RoutingPolicy
from workers.standalone.proxy.routing import RoutingTable

REPLICAS, PREFIXES, PREFIX_CHARS, BLOCK_CHARS = 8, 64, 8000, 64
KV_BLOCKS = PREFIXES * (PREFIX_CHARS // BLOCK_CHARS) // 4  # a quarter of the prefixes
ENGINE = {"MODEL_KV_BLOCKS": str(KV_BLOCKS), "MODEL_BLOCK_CHARS": str(BLOCK_CHARS),
          "MODEL_PREFILL_S_PER_TOKEN": "0.0002", "MODEL_DECODE_S_PER_TOKEN": "0.005",
          "MODEL_OUTPUT_TOKENS": "16", "MODEL_MAX_RUNNING": "4"}  # fmt: skip
TOKEN = "bench-token"


@dataclass(frozen=True)
class Sent:
    prefix: int
    ttft_s: float | None  # None: it failed
    prompt_tokens: int = 0
    cached_tokens: int = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="5,20,60")
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--soak-s", type=float, default=0.0)
    parser.add_argument("--soak-rate", type=float, default=20.0)
    args = parser.parse_args()
    prefixes = _prefixes(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="modelfleet-bench-"))
    redis_server = start_redis()
    try:
        _compare(args, prefixes, folder, redis_server.url)
        print(f"\ndecision alone, 10,000 routes published: p99 {_decision_p99_ms():.3f} ms")
        if args.soak_s:
            _soak(args, prefixes, folder, redis_server.url)
    finally:
        redis_server.stop()


def _compare(args: argparse.Namespace, prefixes: list[str], folder: Path, redis_url: str) -> None:
    print(
        "| policy | rate/s | hit rate | achievable | TTFT p50 s | TTFT p90 s | completed/s | "
        "failed | decision p99 ms | proxy MB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rate in (float(r) for r in args.rates.split(",")):
        trace = _trace(args.seed, rate, args.duration_s)
        for policy in RoutingPolicy:
            with _stack(folder, redis_url, policy) as (endpoint, proxy, url):
                sent = _send(endpoint, prefixes, trace)
                proxy_said = (_decision_p99_from(url), _rss_mb(proxy.popen.pid))
            print(
                f"| {policy.value} | {rate:g} | "
                f"{_row(trace, prefixes, sent, args.duration_s, proxy_said)}"
            )


def _row(trace: list[tuple[float, int]], prefixes: list[str], sent: list[Sent],
         duration_s: float, proxy_said: tuple[float | None, float]) -> str:  # fmt: skip
    """The rest of a table row: what the replicas, the clients and the proxy saw."""
    done = [s for s in sent if s.ttft_s is not None]
    hit = sum(s.cached_tokens for s in done) / max(1, sum(s.prompt_tokens for s in done))
    ttfts = [s.ttft_s for s in done if s.ttft_s is not None]
    decision_ms, memory_mb = proxy_said
    decided = "-" if decision_ms is None else f"{decision_ms:.3f}"
    return (f"{hit:.1%} | {_achievable(trace, prefixes):.1%} | {percentile(ttfts, 0.5):.3f} | "
            f"{percentile(ttfts, 0.9):.3f} | {len(done) / duration_s:.1f} | "
            f"{len(sent) - len(done)} | {decided} | {memory_mb:.0f} |")  # fmt: skip


def _prefixes(seed: int) -> list[str]:
    rng = random.Random(seed)
    words = ["revenue", "margin", "quarter", "growth", "cost", "region", "forecast", "risk",
             "customer", "supply", "price", "volume", "segment", "cash", "debt", "tax"]  # fmt: skip
    documents = []
    for i in range(PREFIXES):
        text = f"Document {i}. "
        while len(text) < PREFIX_CHARS:
            text += " ".join(rng.choice(words) for _ in range(12)) + ". "
        documents.append(text[:PREFIX_CHARS])
    return documents


def _trace(seed: int, rate: float, duration_s: float) -> list[tuple[float, int]]:
    """(seconds from the start, prefix) per request: Poisson arrivals, Zipf prefixes."""
    rng = random.Random(seed)
    weights = [1 / (i + 1) ** 0.8 for i in range(PREFIXES)]
    at, trace = 0.0, []
    while True:
        at += rng.expovariate(rate)
        if at >= duration_s:
            return trace
        trace.append((at, rng.choices(range(PREFIXES), weights)[0]))


def _achievable(trace: list[tuple[float, int]], prefixes: list[str]) -> float:
    """Every prefix cached after its first request (the caches together hold them all):
    its whole blocks, in the engine's tokens, against each prompt's tokens."""
    seen, cached, asked = set(), 0, 0
    for index, (_, prefix) in enumerate(trace):
        prompt = _prompt(prefixes[prefix], index)
        asked += math.ceil(len(prompt) / 4)
        if prefix in seen:
            cached += len(prefixes[prefix]) // BLOCK_CHARS * BLOCK_CHARS // 4
        seen.add(prefix)
    return cached / max(1, asked)


def _prompt(prefix_text: str, index: int) -> str:
    return f"{prefix_text} Question {index}: what changed?"


@contextlib.contextmanager
def _stack(
    folder: Path, redis_url: str, policy: RoutingPolicy
) -> Iterator[tuple[str, Process, str]]:
    """8 engines and a proxy on a key prefix of their own, the endpoint registered: its
    URL through the proxy, the proxy, the proxy's own URL."""
    keys = RedisKeys(prefix=f"bench-{uuid4().hex[:8]}:")
    engines = [_engine(folder, i) for i in range(REPLICAS)]
    proxy_port = free_port()
    proxy = Process(f"proxy-{proxy_port}", [sys.executable, "-m", "workers", "proxy",
                                           f"--port={proxy_port}"],
                    {**os.environ, "MODELFLEET_REDIS_URL": redis_url,
                     "MODELFLEET_REDIS_KEY_PREFIX": keys.prefix,
                     "MODELFLEET_PROXY_TOKEN": TOKEN}, folder)  # fmt: skip
    try:
        endpoint_id = uuid4()
        for port, _ in engines:
            wait_for(lambda p=port: _answers(f"http://127.0.0.1:{p}/health"), timeout_s=30,
                     what="an engine")  # fmt: skip
        url = f"http://127.0.0.1:{proxy_port}"
        wait_for(lambda: _answers(f"{url}/metrics"), timeout_s=30, what="the proxy")
        _publish(redis_url, keys, endpoint_id, [port for port, _ in engines], policy)
        answer = requests.post(f"{url}/v2/endpoints/{endpoint_id}", json={},
                               headers={"X-BackendAI-Token": TOKEN}, timeout=5).json()  # fmt: skip
        wait_for(lambda: _replicas_known(url, endpoint_id), lambda n: n == REPLICAS,
                 timeout_s=30, what="the table")  # fmt: skip
        yield str(answer["endpoint"]), proxy, url
    finally:
        stop_all([proxy, *(p for _, p in engines)], 3.0, lambda _: None)


def _engine(folder: Path, index: int) -> tuple[int, Process]:
    port = free_port()
    environ = {**os.environ, **ENGINE, "PORT": str(port), "MODEL_NAME": f"r{index}"}
    argv = [sys.executable, "-m", "workers.devtools.model_server"]
    return port, Process(f"engine-{port}", argv, environ, folder)


def _publish(redis_url: str, keys: RedisKeys, endpoint_id: UUID, ports: list[int],
             policy: RoutingPolicy) -> None:  # fmt: skip
    client = create_redis_client(redis_url)
    targets = []
    for port in ports:
        route_id = uuid4()
        labels = to_labels(RouteLabels(route_id, endpoint_id, "bench", "custom", 1, "h", 1.0,
                                       policy))  # fmt: skip
        targets.append(ModelServiceMetadata(route_id, "bench", "127.0.0.1", port,
                                            labels=labels))  # fmt: skip
    RedisServiceDiscovery(client=client, keys=keys).sync_model_service_routes(targets)
    client.close()


def _send(endpoint: str, prefixes: list[str], trace: list[tuple[float, int]]) -> list[Sent]:
    """The trace, each request at its time (open loop), streamed; what each saw. One
    event loop (a thread per request would take the CPU the proxy and engines need)."""
    return asyncio.run(_send_all(endpoint, prefixes, trace))


async def _send_all(endpoint: str, prefixes: list[str],
                    trace: list[tuple[float, int]]) -> list[Sent]:  # fmt: skip
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.monotonic()

        async def one(index: int, at: float, prefix: int) -> Sent:
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            return await _one(session, endpoint, prefixes[prefix], prefix, index)

        return list(await asyncio.gather(*(one(i, at, p) for i, (at, p) in enumerate(trace))))


async def _one(session: aiohttp.ClientSession, endpoint: str, prefix_text: str, prefix: int,
               index: int) -> Sent:  # fmt: skip
    body = {"prompt": _prompt(prefix_text, index), "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    asked = time.monotonic()
    ttft, usage = None, {}
    try:
        async with session.post(f"{endpoint}/v1/completions", json=body) as answer:
            if answer.status != 200:
                return Sent(prefix, None)
            async for line in answer.content:
                if not line.startswith(b"data: {"):
                    continue
                ttft = ttft if ttft is not None else time.monotonic() - asked
                usage = json.loads(line[6:]).get("usage") or usage
    except (aiohttp.ClientError, TimeoutError):
        return Sent(prefix, None)
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    return Sent(prefix, ttft, usage.get("prompt_tokens", 0), cached)


def _decision_p99_from(url: str) -> float | None:
    """The proxy's routing decision p99, as its histogram's bucket bound (ms)."""
    text = requests.get(f"{url}/metrics", timeout=5).text
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "modelfleet_proxy_routing_decision_seconds":
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    bound = float(sample.labels["le"])
                    buckets[bound] = buckets.get(bound, 0.0) + sample.value
    if not buckets or not buckets.get(math.inf):
        return None
    total = buckets[math.inf]
    return 1000 * min(b for b, count in buckets.items() if count >= 0.99 * total)


def _gauge_sum(url: str, name: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=5).text
    families = text_string_to_metric_families(text)
    return sum(s.value for f in families if f.name == name for s in f.samples)


def _decision_p99_ms() -> float:
    """Hashing an 8,000-character prompt and routing it, 10,000 routes published."""
    table, endpoint = RoutingTable(), str(uuid4())
    routes = []
    for i in range(10_000):
        owner = endpoint if i < REPLICAS else str(uuid4())
        labels = to_labels(RouteLabels(uuid4(), UUID(owner), "m", "custom", 1, "h", 1.0,
                                       RoutingPolicy.PREFIX_CACHE))  # fmt: skip
        routes.append(ModelServiceMetadata(uuid4(), "m", "127.0.0.1", 8000, labels=labels))
    table.replace_all(routes)
    prompts = _prefixes(1)
    times = []
    for i in range(10_000):
        prompt = prompts[i % len(prompts)] + f" question {i}"
        started = time.perf_counter()
        table.route(endpoint, block_hashes(prompt, 256))
        times.append(time.perf_counter() - started)
    return 1000 * percentile(times, 0.99)


def _soak(args: argparse.Namespace, prefixes: list[str], folder: Path, redis_url: str) -> None:
    """The proxy's memory over a long prefix-cache run whose every request brings a
    document never seen (the index fills to its bound, then holds there)."""
    rate = args.soak_rate
    print(f"\nsoak: prefix-cache at {rate:g}/s for {args.soak_s:g} s, every prompt new, "
          "proxy RSS and index blocks per minute")  # fmt: skip
    with _stack(folder, redis_url, RoutingPolicy.PREFIX_CACHE) as (endpoint, proxy, url):
        end, rng, minute = time.monotonic() + args.soak_s, random.Random(args.seed), 0
        while time.monotonic() < end:
            minute += 1
            trace = _trace(rng.randrange(10**6), rate, 60.0)
            fresh = [f"Minute {minute}, request {i}. {prefixes[p]}" for i, (_, p) in
                     enumerate(trace)]  # fmt: skip
            _send(endpoint, fresh, [(at, i) for i, (at, _) in enumerate(trace)])
            print(
                f"  {minute} min: {_rss_mb(proxy.popen.pid):.0f} MB, "
                f"{_gauge_sum(url, 'modelfleet_proxy_prefix_index_blocks'):,.0f} blocks"
            )


def _replicas_known(url: str, endpoint_id: UUID) -> int:
    found = requests.get(f"{url}/v2/endpoints/{endpoint_id}", timeout=5,
                         headers={"X-BackendAI-Token": TOKEN}).json()  # fmt: skip
    return len(found.get("replicas", []))


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code < 500
    except requests.RequestException:
        return False


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


if __name__ == "__main__":
    main()
