"""Requests held for a deployment that has no replica yet, the way Knative's activator holds
them: a deployment at zero (scale to zero) is woken by its first request, and every
request that arrives meanwhile waits here instead of failing.

While requests wait, a wake is announced every second on the wake feed (beat's watcher
starts `deployments.wake` at once; repeats are harmless: one wake wins). Each waits for a
replica in the routing table (published only once its health check passed: an open port
is not enough), at most `hold_s`; then they go out in turns: a fresh replica never gets
more than `wake_concurrency` held requests at once (a burst would otherwise land on the
first replica while it warms up). At most `hold_max` wait per deployment, holding at
most `hold_max_bytes` of request bodies in all (a cold start must not pin gigabytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

from workers.config import ProxySettings
from workers.standalone.proxy import counting
from workers.standalone.proxy.routing import Replica, RoutingTable

log = logging.getLogger(__name__)

ANNOUNCE_EVERY_S = 1.0
# The first announcement waits this long: the wake then knows how many a burst holds, and
# a deployment whose replicas autoscale wakes to what they need (not to one).
WAKE_GATHER_S = 0.2


class HoldFull(Exception):
    """As many requests as allowed already wait for this deployment."""


class NotWaking(Exception):
    """The deployment no longer wakes on request (an operator scaled it to 0, say)."""


_GIVEN_UP = object()  # what a waiting request finds when its deployment stops waking


@dataclass
class _Waiting:
    """The requests held for one deployment."""

    held: int = 0
    since: float | None = None  # when the first of this wake's requests arrived
    sending: Counter[str] = field(default_factory=Counter)  # route id -> held requests there
    turn: asyncio.Condition = field(default_factory=asyncio.Condition)
    announcer: asyncio.Task[None] | None = None


@dataclass
class Holds:
    table: RoutingTable
    settings: ProxySettings
    # a wake for this deployment on the feed, with how many requests this process holds
    announce: Callable[[str, int], Awaitable[None]]
    waking: Callable[[str], bool]  # whether the deployment still wakes on request
    _waiting: dict[str, _Waiting] = field(default_factory=dict)
    _held_bytes: int = 0  # request bodies waiting here, in all

    def room_for(self, size: int) -> bool:
        """Whether a body of `size` bytes may wait too (MODELFLEET_PROXY_HOLD_MAX_BYTES)."""
        return self._held_bytes + size <= self.settings.hold_max_bytes

    def bytes_full(self) -> str:
        return (f"{self._held_bytes} bytes of requests already wait for wakes "
                f"(MODELFLEET_PROXY_HOLD_MAX_BYTES {self.settings.hold_max_bytes})")  # fmt: skip

    @contextlib.asynccontextmanager
    async def turn(self, endpoint: str, size: int = 0) -> AsyncIterator[tuple[Replica, bool]]:
        """Wait (at most `hold_s`, else TimeoutError) for a replica with room for one more
        held request of `size` bytes; yield it, and whether this was the wake's first."""
        waiting = self._waiting.setdefault(endpoint, _Waiting())
        if waiting.held >= self.settings.hold_max:
            raise HoldFull(f"{waiting.held} requests already wait for endpoint {endpoint}")
        if not self.room_for(size):
            raise HoldFull(self.bytes_full())
        arrived = time.monotonic()
        first = waiting.since is None
        waiting.since = waiting.since or arrived
        self._held(endpoint, waiting, +1)
        self._held_bytes += size
        try:
            async with asyncio.timeout(self.settings.hold_s), waiting.turn:
                found = await waiting.turn.wait_for(lambda: self._free_or_gone(endpoint, waiting))
            if found is _GIVEN_UP:
                raise NotWaking(endpoint)
            replica = cast(Replica, found)
        finally:
            self._held(endpoint, waiting, -1)
            self._held_bytes -= size
        waiting.sending[replica.route_id] += 1
        try:
            yield replica, first
        finally:
            waiting.sending[replica.route_id] -= 1
            await self._notify(waiting)
            if first:  # from the wake's first request to its answer
                counting.COLD_START.observe(time.monotonic() - arrived)
            if not waiting.held and not any(waiting.sending.values()):
                self._waiting.pop(endpoint, None)

    async def table_changed(self) -> None:
        """The routing table changed: waiting requests look for their replica again."""
        for waiting in list(self._waiting.values()):
            await self._notify(waiting)

    def _free_or_gone(self, endpoint: str, waiting: _Waiting) -> object:
        """A replica to send to, _GIVEN_UP when the deployment stopped waking, else None."""
        if not self.waking(endpoint):
            return _GIVEN_UP
        return self._free(endpoint, waiting)

    def _free(self, endpoint: str, waiting: _Waiting) -> Replica | None:
        """A replica of the endpoint with room for one more held request (fewest first)."""
        ready = [r for r in self.table.replicas(endpoint) if r.weight > 0]
        room = [r for r in ready if waiting.sending[r.route_id] < self.settings.wake_concurrency]
        return min(room, key=lambda r: (waiting.sending[r.route_id], r.route_id), default=None)

    def _held(self, endpoint: str, waiting: _Waiting, change: int) -> None:
        waiting.held += change
        counting.HELD.labels(endpoint).inc(change)
        if waiting.held and waiting.announcer is None:
            waiting.announcer = asyncio.create_task(self._announce_while_held(endpoint, waiting))

    async def _announce_while_held(self, endpoint: str, waiting: _Waiting) -> None:
        try:
            await asyncio.sleep(WAKE_GATHER_S)  # a burst's requests, held together
            while waiting.held:
                try:
                    await self.announce(endpoint, waiting.held)
                except Exception as error:  # Redis down: the held requests keep waiting
                    log.warning("proxy: wake of %s not announced: %s", endpoint, error)
                await asyncio.sleep(ANNOUNCE_EVERY_S)
        finally:
            waiting.announcer = None
            if not waiting.held:
                waiting.since = None  # the next request starts a new wake

    @staticmethod
    async def _notify(waiting: _Waiting) -> None:
        async with waiting.turn:
            waiting.turn.notify_all()
