"""Route readiness in Redis, wire-compatible with the app proxy's health checker.

Each route has a hash `route:health:{route_id}` (see `redis_keys`) holding
`readiness` ("1" or "0"), `last_readiness` and `created_at` (unix seconds by
the Redis server clock). Readers classify; the prober writes through the same
class.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from workers.adapters.redis_client import redis_errors, server_time_s
from workers.adapters.redis_keys import HEALTH_STALE_AFTER_S, HEALTH_TTL_S, RedisKeys
from workers.domain import HealthCheckStatus, HealthStatus

log = logging.getLogger(__name__)

_READINESS = {"1": True, "0": False}


class RedisHealthStore:
    def __init__(self, *, client: redis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys

    def check_route_health_status(self, route_ids: Sequence[str]) -> dict[str, HealthStatus]:
        """Readiness of each route, read with the server's clock in one round trip.

        A route with no hash is absent; so is one whose hash is malformed (logged).
        """
        if not route_ids:
            return {}
        with redis_errors():
            pipe = self._client.pipeline(transaction=False)
            pipe.time()
            for route_id in route_ids:
                pipe.hgetall(self._keys.route_health(route_id))
            time_reply, *hashes = pipe.execute()
        now_s = server_time_s(time_reply)
        statuses: dict[str, HealthStatus] = {}
        for route_id, fields in zip(route_ids, hashes, strict=True):
            if not fields:
                continue
            status = classify(fields, now_s)
            if status is None:
                log.warning(
                    "route %s: malformed health record %r; treated as missing", route_id, fields
                )
                continue
            statuses[route_id] = status
        return statuses

    def initialize_routes(self, route_ids: Sequence[str]) -> None:
        """Start each route's record as never probed (reads as STALE, not UNHEALTHY)."""
        self._write({route_id: None for route_id in route_ids})

    def update_readiness(self, readiness: Mapping[str, bool]) -> None:
        """Record a probe result per route, stamped with the Redis server's clock."""
        self._write(readiness)

    def _write(self, readiness: Mapping[str, bool | None]) -> None:
        if not readiness:
            return
        with redis_errors():
            now_s = server_time_s(self._client.time())
            pipe = self._client.pipeline(transaction=True)
            for route_id, ready in readiness.items():
                key = self._keys.route_health(route_id)
                fields: dict[Any, str] = {"readiness": "1" if ready else "0"}
                fields["last_readiness"] = "0" if ready is None else f"{now_s:.6f}"
                pipe.hset(key, mapping=fields)
                pipe.hsetnx(key, "created_at", f"{now_s:.6f}")
                pipe.expire(key, HEALTH_TTL_S)
            pipe.execute()


def classify(fields: Mapping[str, str], now_s: float) -> HealthStatus | None:
    """HEALTHY / UNHEALTHY by readiness, STALE when the last result is old; None if malformed."""
    ready = _READINESS.get(fields.get("readiness", ""))
    try:
        last_s = float(fields["last_readiness"])
    except (KeyError, ValueError):
        return None
    if ready is None or not math.isfinite(last_s):
        return None
    if now_s - last_s > HEALTH_STALE_AFTER_S:
        return HealthStatus(HealthCheckStatus.STALE, last_readiness_at=last_s or None)
    status = HealthCheckStatus.HEALTHY if ready else HealthCheckStatus.UNHEALTHY
    return HealthStatus(status, last_readiness_at=last_s)
