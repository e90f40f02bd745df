"""The proxy's table feed on a real Redis: its writers never undo each other's news."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import UUID, uuid4

import redis.asyncio as aioredis

from workers.adapters.redis.discovery import RedisServiceDiscovery
from workers.adapters.redis.keys import RedisKeys
from workers.domain import ModelServiceMetadata
from workers.standalone.proxy.feed import Endpoints, TableFeed
from workers.standalone.proxy.routing import RoutingTable


class _SlowIndex:
    """A client whose index read (the published set and its generation, one transaction)
    returns only after `meanwhile` has run: the moment a sync (and the feed entry
    announcing it) lands between a resync's two reads."""

    def __init__(self, client: aioredis.Redis, meanwhile: Any) -> None:
        self._client = client
        self._meanwhile = meanwhile
        self.armed = False

    def pipeline(self, transaction: bool = True) -> Any:
        real = self._client.pipeline(transaction=transaction)
        if not (self.armed and transaction):
            return real
        self.armed = False
        return _ThenMeanwhile(real, self._meanwhile)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class _ThenMeanwhile:
    def __init__(self, pipe: Any, meanwhile: Any) -> None:
        self._pipe = pipe
        self._meanwhile = meanwhile

    async def execute(self) -> Any:
        found = await self._pipe.execute()
        await self._meanwhile()
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipe, name)


def _target(endpoint_id: UUID, port: int) -> ModelServiceMetadata:
    return ModelServiceMetadata(uuid4(), "svc", "127.0.0.1", port,
                                labels={"endpoint_id": str(endpoint_id)})  # fmt: skip


def test_routes_announced_while_a_resync_reads_the_index_stay_in_the_table(
    redis_url: str, redis_keys: RedisKeys, service_discovery: RedisServiceDiscovery
) -> None:
    endpoint = uuid4()
    old, new = [_target(endpoint, 9001)], [_target(endpoint, 9002), _target(endpoint, 9003)]
    service_discovery.sync_model_service_routes(old)
    new_ids = {str(t.route_id) for t in new}

    async def scenario(read: str) -> set[str]:
        table = RoutingTable()
        client = aioredis.from_url(redis_url, decode_responses=True)

        async def a_rollout_finishes() -> None:
            # The old route is withdrawn and the new ones published; the feed follows it.
            service_discovery.sync_model_service_routes(new)
            until = time.monotonic() + 1.0
            while time.monotonic() < until and table.route_ids() != new_ids:
                await asyncio.sleep(0.01)

        slow = _SlowIndex(client, a_rollout_finishes)
        feed = TableFeed(slow, redis_keys, table, Endpoints(), resync_s=3600)  # type: ignore[arg-type]
        try:
            await feed.start()
            assert table.route_ids() == {str(old[0].route_id)}
            await asyncio.sleep(0.1)  # the change feed is being followed
            slow.armed = True
            await getattr(feed, read)()
            await asyncio.sleep(0.5)  # whatever the feed still had to apply
            return {r.route_id for r in table.replicas(str(endpoint))}
        finally:
            await feed.stop()
            await client.aclose()

    assert asyncio.run(scenario("resync")) == new_ids
    service_discovery.sync_model_service_routes(old)
    assert asyncio.run(scenario("read_all")) == new_ids
