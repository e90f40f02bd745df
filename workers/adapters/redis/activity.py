"""When deployments last saw a request: the sorted set every proxy process (and the metrics
collector, from the replicas' own request counters) moves forward, read with the Redis
server's clock; and the wake feed, which a proxy holding requests for a deployment at zero
announces on."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Any
from uuid import UUID

import redis

from workers.adapters.redis.client import redis_errors, server_time_s
from workers.adapters.redis.feeds import RedisFeed
from workers.adapters.redis.keys import RedisKeys


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


def wake_feed(client: redis.Redis, keys: RedisKeys) -> RedisFeed:
    """Deployment ids a proxy holds requests for; `deployments.wake` takes them."""
    return RedisFeed(client, keys.wakes, keys.wakes_cursor, "deployments")
