"""Keeping the proxy's routing table current, off the request path, and never emptying it by
accident.

Three loops on the proxy's event loop: one follows the service-discovery change feed
(a blocking read; each entry names the routes a sync added, changed or removed, and
only those are read again); one compares the published index with the table every
`resync_s` and reads the routes that came or went without an entry (a trimmed feed, a
Redis restart), or all of them when the published generation (it moves only when the
set changed) is not the table's; one reads every route whole every `FULL_READ_S`, the last
safety net (10,000 routes cost about 0.2 s of CPU, in slices); and one reads which endpoints are
registered and their modes every second.

The table keeps its last known good routes (Envoy keeps its last configuration while
its control plane is gone): a route leaves it only when the controller withdrew it, by
a feed entry, or by a published set stamped with a generation at least as new as the
one the table last applied. A Redis that is down, emptied by a restart, or a key that
went missing changes nothing: the proxy keeps serving what it last knew.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aioredis

from workers.adapters.redis.keys import RedisKeys
from workers.contracts.feeds import TRAFFIC_SET_CHANGES
from workers.contracts.service_discovery import (
    generation_of,
    modes_from_fields,
    target_from_fields,
)
from workers.domain import EndpointState, ModelServiceMetadata
from workers.standalone.proxy.routing import RoutingTable

log = logging.getLogger(__name__)

BLOCK_MS = 2000  # one blocking read of the change feed; under the client's socket timeout
RETRY_S = 1.0
READ_SLICE = 500  # routes read in one round trip
FULL_READ_S = 60.0


@dataclass
class Endpoints:
    """The endpoints the registration API was told of (every proxy process shares them)."""

    known: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What to do with a request for a deployment without replicas (`EndpointState`).
    modes: dict[str, EndpointState] = field(default_factory=dict)

    def __contains__(self, endpoint: object) -> bool:
        return endpoint in self.known


@dataclass(frozen=True)
class Published:
    """The published index as one read saw it: its route ids and the sync's generation."""

    route_ids: frozenset[str]
    generation: int | None


async def _nothing() -> None:
    return None


@dataclass
class TableFeed:
    client: aioredis.Redis
    keys: RedisKeys
    table: RoutingTable
    endpoints: Endpoints
    resync_s: float = 5.0
    on_changed: Callable[[], Awaitable[None]] = _nothing  # the table changed
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # One writer of the table at a time: a resync that compared an index read before a
    # feed entry was applied with a table read after it would take the entry's new
    # routes for withdrawn ones (an endpoint emptied until the next resync).
    _writing: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def start(self) -> None:
        """A first full read (so the first request finds the table), then the loops."""
        await self._guarded(self.read_all)
        await self._guarded(self.read_endpoints)
        self._tasks = [
            asyncio.create_task(self._every(self.resync_s, self.resync)),
            asyncio.create_task(self._every(FULL_READ_S, self.read_all)),
            asyncio.create_task(self._every(1.0, self.read_endpoints)),
            asyncio.create_task(self._follow()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def read_all(self) -> None:
        """Every published route read whole (what changed is replaced)."""
        async with self._writing:
            published = await self._published()
            self._apply(published, await self._targets(sorted(published.route_ids)))
        await self.on_changed()

    async def resync(self) -> None:
        """Routes published or withdrawn that the table does not know of yet; every route
        read again when the published generation is not the table's (a route's weight or
        revision changed without a feed entry reaching this proxy)."""
        async with self._writing:
            published = await self._published()
            changed = published.generation not in {None, self.table.generation}
            fresh = published.route_ids if changed else published.route_ids - self.table.route_ids()
            self._apply(published, await self._targets(sorted(fresh)))
        await self.on_changed()

    def _apply(self, published: Published, found: dict[str, ModelServiceMetadata | None]) -> None:
        """Routes found are added (or replaced); routes the table has and the set lacks are
        withdrawn only when the set is the controller's word (see the module's docstring).
        A route in the index whose hash is missing is unknown: left as it is."""
        present = {route_id: target for route_id, target in found.items() if target is not None}
        withdrawn: dict[str, ModelServiceMetadata | None] = {}
        if self.table.may_withdraw(published.generation):
            withdrawn = dict.fromkeys(self.table.route_ids() - published.route_ids)
        elif self.table.route_ids() - published.route_ids:
            log.warning("proxy: the published set (generation %s) lacks %d routes the table "
                        "holds (generation %s); keeping them until the controller withdraws them",
                        published.generation, len(self.table.route_ids() - published.route_ids),
                        self.table.generation)  # fmt: skip
        self.table.apply({**withdrawn, **present})
        self.table.confirm(published.generation)

    async def read_endpoints(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.proxy_endpoints)
        pipe.hgetall(self.keys.endpoint_modes)
        registered, modes = await pipe.execute()
        self.endpoints.known = {key: _document(value) for key, value in registered.items()}
        if not modes:
            return  # every sync writes the hash: the store lost it; keep what was known
        decoded = modes_from_fields(modes)
        if decoded != self.endpoints.modes:  # requests held for a deployment may be let go
            self.endpoints.modes = decoded
            await self.on_changed()

    async def _published(self) -> Published:
        pipe = self.client.pipeline(transaction=True)
        pipe.smembers(self.keys.scrape_target_index)
        pipe.get(self.keys.scrape_target_generation)
        members, generation = await pipe.execute()
        return Published(frozenset(members), generation_of(generation))

    async def _follow(self) -> None:
        after = "$"  # what is published from now on (the first resync read the rest)
        while True:
            try:
                # decode_responses: ids and fields are str (redis-py's types say bytes | str)
                reply: Any = await self.client.xread(
                    {self.keys.scrape_target_changes: after}, block=BLOCK_MS, count=1000
                )
                if not reply:
                    continue
                entries = reply[0][1]
                after = entries[-1][0]
                async with self._writing:  # a route named and gone was withdrawn: removed
                    self.table.apply(await self._targets(_announced(entries)))
                await self.on_changed()
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as error:
                log.warning("proxy: change feed unreadable (%s); retrying", error)
                await asyncio.sleep(RETRY_S)

    async def _targets(self, route_ids: list[str]) -> dict[str, ModelServiceMetadata | None]:
        """The routes' targets (None: no hash), read in slices: requests are served between
        two of them (10,000 routes read at once held the event loop for about 100 ms)."""
        targets: dict[str, ModelServiceMetadata | None] = {}
        for start in range(0, len(route_ids), READ_SLICE):
            piece = route_ids[start : start + READ_SLICE]
            pipe = self.client.pipeline(transaction=False)
            for route_id in piece:
                pipe.hgetall(self.keys.scrape_target(route_id))
            found = await pipe.execute()
            targets.update(
                (route_id, target_from_fields(route_id, fields) if fields else None)
                for route_id, fields in zip(piece, found, strict=True)
            )
        return targets

    async def _every(self, period_s: float, read: Callable[[], Coroutine[Any, Any, None]]) -> None:
        while True:
            await asyncio.sleep(period_s)
            await self._guarded(read)

    async def _guarded(self, read: Callable[[], Coroutine[Any, Any, None]]) -> None:
        started = time.monotonic()
        try:
            await read()
        except (redis.RedisError, OSError) as error:
            log.warning("proxy: %s failed after %.1fs: %s", read.__name__,
                        time.monotonic() - started, error)  # fmt: skip


def _announced(entries: list[Any]) -> list[str]:
    """The route ids change-feed entries name, each once."""
    return sorted({route for _, fields in entries for route in TRAFFIC_SET_CHANGES.ids_in(fields)})


def _document(raw: str) -> dict[str, Any]:
    try:
        found = json.loads(raw)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
