"""Keeping the proxy's routing table current, off the request path.

Four loops on the proxy's event loop: one follows the service-discovery change
feed (a blocking read; each entry names the routes a sync added, changed or
removed, and only those are read again); one compares the published index with
the table every `resync_s` and reads only routes that came or went without an
entry (a trimmed feed, a Redis restart); one reads every route whole every
`FULL_READ_S`, the last safety net (10,000 routes cost about 0.2 s of CPU, in
slices); and one reads the hosts' heartbeats and which endpoints are registered
every second. A Redis that is down leaves the table as it is: the proxy keeps
serving what it last knew.
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

from workers.adapters.redis.discovery import target_from_fields
from workers.adapters.redis.keys import RedisKeys
from workers.domain import ModelServiceMetadata
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
    # What to do with a request for a deployment without replicas (`EndpointMode`).
    modes: dict[str, str] = field(default_factory=dict)

    def __contains__(self, endpoint: object) -> bool:
        return endpoint in self.known


async def _nothing() -> None:
    return None


@dataclass
class TableFeed:
    client: aioredis.Redis
    keys: RedisKeys
    table: RoutingTable
    endpoints: Endpoints
    resync_s: float = 5.0
    heartbeat_s: float = 2.0  # a host silent for two of these gets no new request
    # Told of the hosts that have just gone silent (the requests waiting on them go elsewhere).
    on_silent: Callable[[frozenset[str]], None] = lambda _: None
    on_changed: Callable[[], Awaitable[None]] = _nothing  # the table changed
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # One writer of the table at a time: a resync that compared an index read before a
    # feed entry was applied with a table read after it would take the entry's new
    # routes for withdrawn ones (an endpoint emptied until the next resync).
    _writing: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def start(self) -> None:
        """A first full read (so the first request finds the table), then the loops."""
        await self._guarded(self.read_all)
        await self._guarded(self.read_hosts_and_endpoints)
        self._tasks = [
            asyncio.create_task(self._every(self.resync_s, self.resync)),
            asyncio.create_task(self._every(FULL_READ_S, self.read_all)),
            asyncio.create_task(self._every(1.0, self.read_hosts_and_endpoints)),
            asyncio.create_task(self._follow()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def read_all(self) -> None:
        async with self._writing:
            published: set[str] = await self.client.smembers(self.keys.scrape_target_index)  # type: ignore[assignment]
            found = await self._targets(sorted(published))
            self.table.replace_all(target for target in found.values() if target is not None)
        await self.on_changed()

    async def resync(self) -> None:
        """Routes published or withdrawn that the table does not know of yet."""
        async with self._writing:
            published: set[str] = await self.client.smembers(self.keys.scrape_target_index)  # type: ignore[assignment]
            known = self.table.route_ids()
            gone: dict[str, ModelServiceMetadata | None] = dict.fromkeys(known - published)
            self.table.apply({**gone, **await self._targets(sorted(published - known))})
        await self.on_changed()

    async def read_hosts_and_endpoints(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.time()
        pipe.hgetall(self.keys.host_heartbeats)
        pipe.hgetall(self.keys.proxy_endpoints)
        pipe.hgetall(self.keys.endpoint_modes)
        (seconds, micros), beats, registered, modes = await pipe.execute()
        now_s = int(seconds) + int(micros) / 1_000_000
        stale = frozenset(
            host for host, at in beats.items() if now_s - float(at) > 2 * self.heartbeat_s
        )
        silenced, self.table.stale_hosts = stale - self.table.stale_hosts, stale
        if silenced:
            log.warning("proxy: hosts silent (no heartbeat for %gs): %s",
                        2 * self.heartbeat_s, ", ".join(sorted(silenced)))  # fmt: skip
            self.on_silent(silenced)
        self.endpoints.known = {key: _document(value) for key, value in registered.items()}
        if modes != self.endpoints.modes:  # requests held for a deployment may be let go
            self.endpoints.modes = modes
            await self.on_changed()

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
                async with self._writing:
                    self.table.apply(await self._targets(_announced(entries)))
                await self.on_changed()
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as error:
                log.warning("proxy: change feed unreadable (%s); retrying", error)
                await asyncio.sleep(RETRY_S)

    async def _targets(self, route_ids: list[str]) -> dict[str, ModelServiceMetadata | None]:
        """The routes' targets, read in slices: requests are served between two of them
        (10,000 routes read at once held the event loop for about 100 ms)."""
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
    named = (route for _, fields in entries for route in fields.get("routes", "").split(","))
    return sorted({route for route in named if route})


def _document(raw: str) -> dict[str, Any]:
    try:
        found = json.loads(raw)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
