"""Every request the proxy forwards, counted twice: on its own `GET /metrics`
(prometheus_client; several worker processes share one directory, multiprocess mode)
and in 10 s windows in Redis, per endpoint and revision, which the controller reads to
judge a rollout by its requests and to see when an endpoint was last used. Several
proxies add up there (HINCRBY). No route id is ever a label: cardinality stays bounded
by endpoints x revisions. Each second, the load too: requests in flight (held ones
included) integrated over the second, and requests arrived (`workers.contracts.load`),
which the traffic autoscaler reads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import redis
import redis.asyncio as aioredis
from prometheus_client import (
    CollectorRegistry,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import (
    Counter as PromCounter,
)

from workers.adapters.redis.keys import LOAD_KEPT_S, RedisKeys
from workers.adapters.redis.keys import REQUEST_WINDOW_S as WINDOW_S
from workers.adapters.redis.keys import REQUEST_WINDOWS_KEPT_S as WINDOW_KEPT_S
from workers.contracts.load import busy_field, started_field
from workers.contracts.windows import class_field, code_class, sum_field, within_field

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 1.0
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                     120.0, 300.0)  # fmt: skip
_BUCKET_LABELS = tuple((bound, f"{bound:g}") for bound in LATENCY_BUCKETS_S)
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own

REQUESTS = PromCounter(
    "modelfleet_proxy_requests", "Requests forwarded, by endpoint, revision and status class "
    "(2xx, 3xx, 4xx, 5xx, error: no answer).", ["endpoint", "revision", "code_class"],
)  # fmt: skip
DURATION = Histogram(
    "modelfleet_proxy_request_duration_seconds",
    "From the request to the last byte of its answer.",
    ["endpoint", "revision"],
    buckets=LATENCY_BUCKETS_S,
)
IN_FLIGHT = Gauge(
    "modelfleet_proxy_in_flight", "Requests being answered now.", ["endpoint"],
    multiprocess_mode="livesum",
)  # fmt: skip
RETRIES = PromCounter(
    "modelfleet_proxy_retries", "Requests sent again to another host, by why.",
    ["endpoint", "reason"],
)  # fmt: skip
HELD = Gauge(
    "modelfleet_proxy_held_requests", "Requests waiting for a replica of a deployment at zero.",
    ["endpoint"], multiprocess_mode="livesum",
)  # fmt: skip
COLD_START = Histogram(
    "modelfleet_cold_start_seconds",
    "A wake: from the first request held for a deployment at zero to its answer.",
    buckets=(0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0),
)
DECISIONS = PromCounter(
    "modelfleet_proxy_routing_decisions",
    "Prefix-cache routing's picks: hit (to a replica that got the prefix), load (it was too "
    "busy: the least loaded instead), cold (no prefix known, or only a shared start).",
    ["endpoint", "decision"],
)  # fmt: skip
DECISION_TIME = Histogram(
    "modelfleet_proxy_routing_decision_seconds",
    "Prefix-cache routing: hashing the prompt and picking its replica.", ["endpoint"],
    buckets=(0.00002, 0.00005, 0.0001, 0.00015, 0.0002, 0.00025, 0.0003, 0.0004, 0.0005, 0.001,
             0.002, 0.005, 0.01),
)  # fmt: skip
PROMPT_TOKENS = PromCounter(
    "modelfleet_proxy_prompt_tokens", "Prompt tokens the replicas' answers reported "
    "(usage), for prefix-cache deployments.", ["endpoint"],
)  # fmt: skip
CACHED_TOKENS = PromCounter(
    "modelfleet_proxy_cached_tokens", "Of them, those the replicas reported cached "
    "(usage.prompt_tokens_details.cached_tokens): the hit rate they saw.", ["endpoint"],
)  # fmt: skip
CHARS_SAVED = PromCounter(
    "modelfleet_proxy_prompt_chars_saved", "Prompt characters a hit sent where they were "
    "cached, as far as the replica confirmed.", ["endpoint"],
)  # fmt: skip
INDEX_BLOCKS = Gauge(
    "modelfleet_proxy_prefix_index_blocks", "Blocks the prefix index holds (its bound: "
    "MODELFLEET_PROXY_PREFIX_INDEX_BLOCKS per process).", multiprocess_mode="livesum",
)  # fmt: skip
TABLE_AGE = Gauge(
    "modelfleet_proxy_routing_table_age_seconds",
    "Seconds since the routing table was last confirmed against a published set the "
    "controller stamped (it grows while Redis cannot be read; the table is kept meanwhile).",
    multiprocess_mode="max",
)
TABLE_GENERATION = Gauge(
    "modelfleet_proxy_routing_table_generation",
    "Generation of the published set the routing table last applied (0: none yet); the "
    "lowest of the proxy's processes.",
    multiprocess_mode="livemin",
)


def exposition() -> bytes:
    """This proxy's metrics text: its processes' together when there are several."""
    if os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()


@dataclass
class LoadMeter:
    """Requests in flight per endpoint, integrated over time, and requests arrived: what
    the traffic autoscaler tracks. Two additions per request (`begin`, `end`); taken
    once a second into that second's hash."""

    _in_flight: Counter[str] = field(default_factory=Counter)
    _since: dict[str, float] = field(default_factory=dict)  # last change of the count
    _busy_s: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    _started: Counter[str] = field(default_factory=Counter)

    def begin(self, endpoint: str, now_s: float) -> None:
        self._settle(endpoint, now_s)
        self._in_flight[endpoint] += 1
        self._started[endpoint] += 1

    def end(self, endpoint: str, now_s: float) -> None:
        self._settle(endpoint, now_s)
        self._in_flight[endpoint] -= 1
        if not self._in_flight[endpoint]:
            del self._in_flight[endpoint]
            self._since.pop(endpoint, None)

    def take(self, now_s: float) -> dict[str, tuple[float, int]]:
        """endpoint -> (busy seconds, requests started) since the last take."""
        for endpoint in list(self._in_flight):
            self._settle(endpoint, now_s)
        taken = {e: (self._busy_s.get(e, 0.0), self._started.get(e, 0))
                 for e in set(self._busy_s) | set(self._started)}  # fmt: skip
        self._busy_s, self._started = defaultdict(float), Counter()
        return taken

    def _settle(self, endpoint: str, now_s: float) -> None:
        count = self._in_flight.get(endpoint, 0)
        if count:
            self._busy_s[endpoint] += count * max(0.0, now_s - self._since[endpoint])
        self._since[endpoint] = now_s


@dataclass
class RequestWindows:
    """What this process counted since its last flush, sent to Redis every second."""

    client: aioredis.Redis
    keys: RedisKeys
    # Endpoints with requests being answered or held now: busy, so seen at every flush
    # (a long generation, or a wake's wait, is no idle time).
    busy: Callable[[], Iterable[str]] = tuple
    _counts: dict[tuple[str, int], Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter)
    )
    _last_seen: dict[str, float] = field(default_factory=dict)
    load: LoadMeter = field(default_factory=LoadMeter)
    _task: asyncio.Task[None] | None = None

    def count(self, endpoint: str, revision: str, status: int | None, seconds: float) -> None:
        REQUESTS.labels(endpoint, revision, code_class(status)).inc()
        DURATION.labels(endpoint, revision).observe(seconds)
        now_s = time.time()
        window = self._counts[(endpoint, int(now_s // WINDOW_S) * WINDOW_S)]
        window[class_field(revision, code_class(status))] += 1
        window[sum_field(revision)] += round(seconds * 1000)
        for bound, label in _BUCKET_LABELS:
            if seconds <= bound:
                window[within_field(revision, label)] += 1
        self._last_seen[endpoint] = now_s

    def seen(self, endpoint: str) -> None:
        """A request arrived for `endpoint` (also one that waits for a replica)."""
        self._last_seen[endpoint] = time.time()

    def start(self) -> None:
        self._task = asyncio.create_task(self._flush_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()

    async def flush(self) -> None:
        for endpoint in self.busy():
            self.seen(endpoint)
        counts, self._counts = self._counts, defaultdict(Counter)
        seen, self._last_seen = self._last_seen, {}
        now_s = time.time()
        load = self.load.take(now_s)
        if not counts and not seen and not load:
            return
        pipe = self.client.pipeline(transaction=False)
        if load:
            key = self.keys.load_second(int(now_s))
            for endpoint, (busy_s, started) in load.items():
                pipe.hincrbyfloat(key, busy_field(endpoint), round(busy_s, 4))
                if started:
                    pipe.hincrby(key, started_field(endpoint), started)
            pipe.expire(key, LOAD_KEPT_S)
        for (endpoint, window_s), fields in counts.items():
            key = self.keys.request_window(endpoint, window_s)
            for name, amount in fields.items():
                pipe.hincrby(key, name, amount)
            pipe.expire(key, WINDOW_KEPT_S)
        if seen:  # the latest of every proxy's: a score only ever moves forward
            pipe.zadd(self.keys.last_requests, seen, gt=True)
        try:
            await pipe.execute()
        except (redis.RedisError, OSError) as error:  # counts never fail a request
            log.warning("proxy: request counts not recorded: %s", error)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            await self.flush()
