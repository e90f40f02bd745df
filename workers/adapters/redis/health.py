"""Route readiness in Redis, wire-compatible with the app proxy's health checker.

Each route has a hash `route:health:{route_id}` (see `redis_keys`) holding
`readiness` ("1" or "0"), `last_readiness` and `created_at` (unix seconds by
the Redis server clock), and, when the writer says, `last_probe`: what its last
probe saw ("/health answered 404"), which the controller quotes when a replica
never becomes healthy. Readers classify; the prober writes through the same
class.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import redis

from workers.adapters.redis.client import redis_errors, server_time_s
from workers.adapters.redis.feeds import RedisFeed
from workers.adapters.redis.keys import (
    HEALTH_STALE_AFTER_S,
    HEALTH_TTL_S,
    RedisKeys,
)
from workers.contracts.feeds import READINESS_CHANGES
from workers.domain import HealthCheckStatus, HealthStatus

log = logging.getLogger(__name__)

_READINESS = {"1": True, "0": False}
_FIELDS = ("readiness", "last_readiness", "created_at", "last_probe")
_DETAIL_CHARS = 200  # of a writer's last_probe, kept in history rows
# A readiness stamped further ahead of the Redis clock than this is not believed.
CLOCK_SKEW_ALLOWANCE_S = 30.0
_EXCERPT_CHARS = 120
_REMEMBERED_KEYS = 10_000


class RedisHealthStore:
    def __init__(
        self, *, client: redis.Redis, keys: RedisKeys, ttl_s: float = HEALTH_TTL_S
    ) -> None:
        self._client = client
        self._keys = keys
        self._ttl_s = ttl_s  # of the records this store writes
        self._malformed = MalformedRecords()
        self._changes = RedisFeed(client, keys.route_health_changes,
                                  keys.route_health_changes_cursor, READINESS_CHANGES)  # fmt: skip

    def check_route_health_status(self, route_ids: Sequence[str]) -> dict[str, HealthStatus]:
        """Readiness of each route, read with the server's clock in one round trip.

        A route with no record is absent, and so is one whose record is malformed
        in any way (wrong key type, fields missing, not numbers, NaN, a time in
        the future): it affects only its own route, and is logged once per change.
        """
        if not route_ids:
            return {}
        with redis_errors():
            pipe = self._client.pipeline(transaction=False)
            pipe.time()
            for route_id in route_ids:
                pipe.hmget(self._keys.route_health(route_id), _FIELDS)
            time_reply, *replies = pipe.execute(raise_on_error=False)
        now_s = server_time_s(time_reply)
        records = {
            route_id: _record(reply) for route_id, reply in zip(route_ids, replies, strict=True)
        }
        statuses: dict[str, HealthStatus] = {}
        for route_id, record in records.items():
            status = None if record is None else classify(record, now_s)
            self._malformed.note(route_id, record, status)
            if status is not None:
                statuses[route_id] = status
        return statuses

    def initialize_routes(self, route_ids: Sequence[str]) -> None:
        """Start each route's record as never probed (reads as STALE, not UNHEALTHY)."""
        self._write({route_id: None for route_id in route_ids})

    def update_readiness(
        self,
        readiness: Mapping[str, bool],
        *,
        changed: Collection[str] = (),
        seen: Mapping[str, str] | None = None,
    ) -> None:
        """Record a probe result per route, stamped with the Redis server's clock, and
        announce the routes whose readiness `changed` on the change feed, in the same
        transaction (the controller acts on those within a second). `seen`: what the
        probe of a route saw, kept beside its readiness, also for a route whose
        readiness is not decided yet (it reads as never probed until it is)."""
        self._write(readiness, changed, seen or {})

    def take_changes(self) -> list[str]:
        """Route ids announced since the last call (`RedisFeed.take`)."""
        return self._changes.take()

    def last_taken(self) -> str:
        return self._changes.last_taken()

    def wait_for_changes(self, after: str, block_s: float) -> str | None:
        return self._changes.wait_for_changes(after, block_s)

    def _write(
        self,
        readiness: Mapping[str, bool | None],
        changed: Collection[str] = (),
        seen: Mapping[str, str] | None = None,
    ) -> None:
        """Readiness per route (None: never probed), and what probes saw, also of routes
        whose readiness is not decided yet: their record keeps its readiness, or reads
        as never probed (stale) until there is one."""
        seen = seen or {}
        if not readiness and not seen:
            return
        with redis_errors():
            now_s = server_time_s(self._client.time())
            pipe = self._client.pipeline(transaction=True)
            for route_id in {**readiness, **seen}:
                key = self._keys.route_health(route_id)
                if route_id in readiness:
                    ready = readiness[route_id]
                    pipe.hset(key, mapping={
                        "readiness": "1" if ready else "0",
                        "last_readiness": "0" if ready is None else f"{now_s:.6f}",
                    })  # fmt: skip
                else:
                    pipe.hsetnx(key, "readiness", "0")
                    pipe.hsetnx(key, "last_readiness", "0")
                if route_id in seen:
                    pipe.hset(key, "last_probe", seen[route_id][:_DETAIL_CHARS])
                pipe.hsetnx(key, "created_at", f"{now_s:.6f}")
                pipe.expire(key, max(int(self._ttl_s), 1))
            if changed:
                self._changes.announce(list(changed), pipe)
            pipe.execute()


def classify(fields: Mapping[str, str], now_s: float) -> HealthStatus | None:
    """HEALTHY / UNHEALTHY by readiness, STALE when the last result is old; None if malformed."""
    ready = _READINESS.get(fields.get("readiness") or "")
    try:
        last_s = float(fields["last_readiness"])
    except (KeyError, TypeError, ValueError):
        return None
    if ready is None or not math.isfinite(last_s) or last_s > now_s + CLOCK_SKEW_ALLOWANCE_S:
        return None
    detail = fields.get("last_probe")
    if now_s - last_s > HEALTH_STALE_AFTER_S:
        return HealthStatus(
            HealthCheckStatus.STALE, last_readiness_at=last_s or None, detail=detail
        )
    status = HealthCheckStatus.HEALTHY if ready else HealthCheckStatus.UNHEALTHY
    return HealthStatus(status, last_readiness_at=last_s, detail=detail)


def _record(reply: Any) -> dict[str, str] | None:
    """The fields read, {} when the key does not exist, None when it cannot be read as a hash."""
    if isinstance(reply, Exception):
        return None  # e.g. WRONGTYPE: the key holds a string, a list ...
    if not isinstance(reply, list) or all(value is None for value in reply):
        return {}
    return {name: value for name, value in zip(_FIELDS, reply, strict=True) if value is not None}


class MalformedRecords:
    """Logs a malformed record once per change, as a bounded excerpt (one 8 MiB value
    logged on every run once made 126 MB of log in 30 s)."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def note(
        self, route_id: str, record: Mapping[str, str] | None, status: HealthStatus | None
    ) -> None:
        if status is not None or record == {}:
            self._seen.pop(route_id, None)
            return
        fingerprint = hash(repr(sorted(record.items())) if record is not None else "unreadable")
        if self._seen.get(route_id) == fingerprint:
            return
        if len(self._seen) >= _REMEMBERED_KEYS:
            self._seen.clear()
        self._seen[route_id] = fingerprint
        log.warning(
            "route %s: malformed health record %s; treated as missing (stale)",
            route_id,
            "(not a hash)" if record is None else _excerpt(record),
        )


def _excerpt(record: Mapping[str, str]) -> str:
    text = repr(dict(record))
    return (
        text if len(text) <= _EXCERPT_CHARS else f"{text[:_EXCERPT_CHARS]}... ({len(text)} chars)"
    )
