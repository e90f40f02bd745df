"""When deployments last saw a request: the sorted set every proxy process (and the metrics
collector, from the replicas' own request counters) moves forward, read with the Redis
server's clock; and the wake feed, which a proxy holding requests for a deployment at zero
announces on."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any
from uuid import UUID

import redis

from workers.adapters.redis.client import redis_errors, server_time_s
from workers.adapters.redis.feeds import RedisFeed
from workers.adapters.redis.keys import REQUEST_WINDOW_S as WINDOW_S
from workers.adapters.redis.keys import REQUEST_WINDOWS_KEPT_S, RedisKeys
from workers.contracts import feeds
from workers.contracts.load import busy_field, read_second, started_field
from workers.contracts.windows import FAILED_CLASSES, parse_field
from workers.domain import Observed, TrafficCounts, TrafficLoad


class RedisRequestActivity:
    def __init__(self, *, client: redis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys

    def last_requests(self, deployment_ids: AbstractSet[UUID]) -> dict[UUID, float]:
        ordered = sorted(deployment_ids)
        if not ordered:
            return {}
        with redis_errors():
            scores: Any = self._client.zmscore(self._keys.last_requests, [str(i) for i in ordered])
        return {i: float(score) for i, score in zip(ordered, scores, strict=True) if score}

    def revision_traffic(
        self, since_s: Mapping[UUID, float]
    ) -> dict[UUID, dict[int, TrafficCounts]]:
        """Per deployment and revision: what the proxies counted since `since_s` (unix s;
        the window that holds it counts whole), at most `REQUEST_WINDOWS_KEPT_S` back."""
        ordered = sorted(since_s)
        if not ordered:
            return {}
        with redis_errors():
            now_s = server_time_s(self._client.time())
            windows = {i: _windows(since_s[i], now_s) for i in ordered}
            pipe = self._client.pipeline(transaction=False)
            for deployment_id in ordered:
                for window_s in windows[deployment_id]:
                    pipe.hgetall(self._keys.request_window(deployment_id, window_s))
            found: Any = iter(pipe.execute())
            read = {i: [next(found) for _ in windows[i]] for i in ordered}
        return {
            deployment_id: traffic_by_revision(read[deployment_id]) for deployment_id in ordered
        }

    def load(self, windows_s: Mapping[UUID, tuple[float, float]]) -> dict[UUID, TrafficLoad]:
        """Per deployment: what the proxies saw over its (stable, panic) windows, in whole
        seconds up to the last complete one."""
        ordered = sorted(windows_s)
        if not ordered:
            return {}
        names = [f(str(i)) for i in ordered for f in (busy_field, started_field)]
        with redis_errors():
            now = int(server_time_s(self._client.time()))
            longest = int(max(stable for stable, _ in windows_s.values()))
            seconds = range(now - longest, now)
            pipe = self._client.pipeline(transaction=False)
            for second in seconds:
                pipe.hmget(self._keys.load_second(second), names)
            read: Any = pipe.execute()
        per_second = [dict(zip(names, values, strict=True)) for values in read]
        return {i: _load_of(str(i), per_second, *windows_s[i]) for i in ordered}

    def held(self, deployment_ids: AbstractSet[UUID]) -> dict[UUID, int]:
        """Requests the proxies hold now for each deployment at zero (0: none)."""
        ordered = sorted(deployment_ids)
        with redis_errors():
            pipe = self._client.pipeline(transaction=False)
            for deployment_id in ordered:
                pipe.hvals(self._keys.held(deployment_id))
            read: Any = pipe.execute()
        return {i: sum(int(v) for v in values) for i, values in zip(ordered, read, strict=True)}

    def now_s(self) -> float:
        with redis_errors():
            return server_time_s(self._client.time())

    def seen(self, deployment_ids: AbstractSet[UUID]) -> None:
        """A request reached these deployments now (the collector: their counters grew)."""
        if deployment_ids:
            with redis_errors():
                now_s = server_time_s(self._client.time())
                self._client.zadd(self._keys.last_requests,
                                  {str(i): now_s for i in deployment_ids}, gt=True)  # fmt: skip


def _load_of(
    endpoint: str, per_second: list[dict[str, Any]], stable_s: float, panic_s: float
) -> TrafficLoad:
    """Averages over the last `stable_s` and `panic_s` seconds and the last second of
    `per_second` (oldest first; the longest window any deployment asked for)."""
    seen = [read_second({k: v for k, v in second.items() if v is not None}, endpoint)
            for second in per_second]  # fmt: skip

    def average(window_s: float, which: int) -> float:
        last = seen[-max(1, int(window_s)) :] if seen else []
        return sum(values[which] for values in last) / max(window_s, 1.0)

    def observed(which: int) -> Observed:
        return Observed(average(stable_s, which), average(panic_s, which), average(1, which))

    return TrafficLoad(observed(0), observed(1))


def _windows(since_s: float, now_s: float) -> range:
    """The starts of the windows from the one holding `since_s` to the current one."""
    current = int(now_s // WINDOW_S) * WINDOW_S
    first = max(int(since_s // WINDOW_S) * WINDOW_S, current - REQUEST_WINDOWS_KEPT_S)
    return range(min(first, current), current + 1, WINDOW_S)


def wake_feed(client: redis.Redis, keys: RedisKeys) -> RedisFeed:
    """Deployment ids a proxy holds requests for; `deployments.wake` takes them."""
    return RedisFeed(client, keys.wakes, keys.wakes_cursor, feeds.WAKES)


def traffic_by_revision(windows: list[Mapping[str, str]]) -> dict[int, TrafficCounts]:
    """The windows' fields summed per revision (`workers.contracts.windows`): requests by
    class (5xx and `error` failed), and answered within each bound."""
    requests: Counter[int] = Counter()
    failed: Counter[int] = Counter()
    within: dict[int, Counter[float]] = defaultdict(Counter)
    for fields in windows:
        for name, value in fields.items():
            field = parse_field(name)
            if field is None or not value.lstrip("-").isdigit():
                continue  # a request without a revision, or not ours
            amount = int(value)
            if field.klass is not None:
                requests[field.revision] += amount
                failed[field.revision] += amount if field.klass in FAILED_CLASSES else 0
            elif field.within_s is not None:
                within[field.revision][field.within_s] += amount
    return {
        revision: TrafficCounts(count, failed[revision], dict(within[revision]))
        for revision, count in requests.items()
    }
