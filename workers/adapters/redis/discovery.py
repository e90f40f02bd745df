"""Scrape targets for Prometheus, and the traffic set the proxies route by, kept in Redis.

Each healthy route has a hash `service_discovery.model-services.{route_id}` with
name, host, port, metrics_path and labels (JSON); a set beside them lists the
route ids of the last sync, so a sync can remove what it no longer publishes. A
sync that changes the set also announces which routes it added, changed or removed
on a stream beside them (`service_discovery.changes`), in the same transaction: the
proxy keeps its routing table in memory and reloads only those, with a full read
every few seconds as the safety net.

Nothing here expires. A route leaves only when a sync withdraws it, and every sync
stamps a generation (`workers.contracts.service_discovery`): with the controller
down for longer than any TTL (its database, beat, its workers), what was published
stays published, and a proxy tells a withdrawal from a store that lost its keys.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any, cast
from uuid import UUID

import redis

from workers.adapters.redis.client import redis_errors
from workers.adapters.redis.keys import CHANGES_KEPT, RedisKeys
from workers.contracts.feeds import TRAFFIC_SET_CHANGES
from workers.contracts.service_discovery import (
    generation_of,
    modes_fields,
    next_generation,
    target_fields,
    target_from_fields,
)
from workers.domain import EndpointState, ModelServiceMetadata

log = logging.getLogger(__name__)


class RedisServiceDiscovery:
    def __init__(self, *, client: redis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys

    def sync_model_service_routes(self, routes: Sequence[ModelServiceMetadata]) -> None:
        """Replace the whole published set with `routes`; an empty list clears it.

        Optimistic (WATCH on the index): a concurrent sync makes this one retry,
        so the two never leave a mix of both sets behind.
        """
        targets = {str(route.route_id): route for route in routes}
        index = self._keys.scrape_target_index

        def replace(pipe: redis.client.Pipeline) -> None:
            previous = cast("set[str]", pipe.smembers(index))
            before = _fields_of(pipe, self._keys, targets.keys() & previous)
            fields = {route_id: target_fields(route) for route_id, route in targets.items()}
            gone = previous - targets.keys()
            changed = gone | {i for i, f in fields.items() if before.get(i) != f}
            generation = self._generation(pipe, changed)
            pipe.multi()
            if gone:
                pipe.delete(*(self._keys.scrape_target(route_id) for route_id in gone))
            pipe.delete(index)
            for route_id, route_fields in fields.items():
                key = self._keys.scrape_target(route_id)
                pipe.delete(key)
                pipe.hset(key, mapping=route_fields)  # type: ignore[arg-type]
            if targets:
                pipe.sadd(index, *targets)
            pipe.set(self._keys.scrape_target_generation, str(generation))
            if changed:
                pipe.xadd(self._keys.scrape_target_changes,
                          TRAFFIC_SET_CHANGES.entry(sorted(changed)),
                          maxlen=CHANGES_KEPT, approximate=True)  # fmt: skip

        with redis_errors():
            self._client.transaction(replace, index, self._keys.scrape_target_generation)

    def publish_endpoint_modes(self, modes: Mapping[UUID, EndpointState]) -> None:
        """Replace the whole modes hash (one transaction: proxies never see it half). It
        always exists afterwards (its generation field), so a proxy that finds none knows
        the store lost it, and keeps what it knew."""
        with redis_errors():
            generation = generation_of(self._client.get(self._keys.scrape_target_generation))
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(self._keys.endpoint_modes)
            pipe.hset(self._keys.endpoint_modes, mapping=modes_fields(modes, generation or 0))  # type: ignore[arg-type]
            pipe.execute()

    def _generation(self, pipe: redis.client.Pipeline, changed: set[str]) -> int:
        """The last sync's generation when the set is the same; else a newer one, newer
        also than any before the store was emptied. A proxy whose table has a generation
        other than the published one knows something changed (`TableFeed.resync`)."""
        previous = generation_of(pipe.get(self._keys.scrape_target_generation))
        if previous is not None and not changed:
            return previous
        seconds, micros = pipe.time()
        return next_generation(previous, int(seconds) * 1_000_000 + int(micros))

    def published_route_ids(self) -> set[UUID]:
        """The route ids of the last sync."""
        with redis_errors():
            members = cast("set[str]", self._client.smembers(self._keys.scrape_target_index))
        return {UUID(member) for member in members}

    def registered_targets(self) -> list[ModelServiceMetadata]:
        """What is published now; expired or malformed entries are left out (logged)."""
        with redis_errors():
            route_ids = sorted(
                cast("set[str]", self._client.smembers(self._keys.scrape_target_index))
            )
            pipe = self._client.pipeline(transaction=False)
            for route_id in route_ids:
                pipe.hgetall(self._keys.scrape_target(route_id))
            hashes = pipe.execute()
        targets = []
        for route_id, fields in zip(route_ids, hashes, strict=True):
            if not fields:
                continue  # expired since the index was written
            target = target_from_fields(route_id, fields)
            if target is None:
                log.warning("route %s: malformed scrape target %r; left out", route_id, fields)
            else:
                targets.append(target)
        return targets


def _fields_of(
    pipe: redis.client.Pipeline, keys: RedisKeys, route_ids: Collection[str]
) -> dict[str, dict[Any, str]]:
    """The published fields of `route_ids` (read in the WATCHed part of a sync)."""
    if not route_ids:
        return {}
    ordered = sorted(route_ids)
    # replies are str (decode_responses); redis-py's types say bytes | str
    found: list[Any] = [pipe.hgetall(keys.scrape_target(route_id)) for route_id in ordered]
    return {route_id: dict(fields) for route_id, fields in zip(ordered, found, strict=True)}


def prometheus_http_sd(targets: Sequence[ModelServiceMetadata]) -> list[dict[str, Any]]:
    """Prometheus' HTTP service-discovery document: one target group per route."""
    return [
        {
            "targets": [f"{_bracketed(target.host)}:{target.port}"],
            "labels": {**target.labels, "__metrics_path__": target.metrics_path},
        }
        for target in targets
    ]


def _bracketed(host: str) -> str:
    """An IPv6 address in brackets, as Prometheus needs it ("::1:9100" is refused)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
