"""The proxy's HTTP handlers: the app-proxy v2 registration API, `/e/{endpoint}/...`
forwarded to a replica, and `/metrics`.

A request goes to one replica of its endpoint (`RoutingTable.pick`). A replica that
refuses the connection, resets it before any byte of an answer, or does not accept it
within the connect timeout processed nothing: the request goes once more, to a replica
on another host, and the replica is ejected for a while. So does a request still
waiting for the first byte of its answer whose connection shows no TCP progress for
MODELFLEET_PROXY_DEAD_CONNECTION_S (a cut link: `path_watch`). Nothing else moves a
request: not its host's heartbeat (a host silent to the control plane may serve
perfectly well, and a request sent again elsewhere runs twice). An answer that has
begun is never retried; it is streamed through as it comes (an LLM server's tokens),
never buffered whole.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from uuid import UUID

import redis
import redis.asyncio as aioredis
from aiohttp import (
    ClientConnectionError,
    ClientConnectorError,
    ClientOSError,
    ClientPayloadError,
    ClientResponse,
    ClientSession,
    ClientTimeout,
    ServerDisconnectedError,
    ServerTimeoutError,
    web,
)

from workers.adapters.app_proxy_http import TOKEN_HEADER
from workers.adapters.redis.keys import CHANGES_KEPT, HELD_KEPT_S, RedisKeys
from workers.config import ProxySettings
from workers.contracts.feeds import WAKES
from workers.domain import EndpointMode
from workers.standalone.proxy import counting
from workers.standalone.proxy.counting import RequestWindows
from workers.standalone.proxy.feed import Endpoints, TableFeed
from workers.standalone.proxy.holding import HoldFull, Holds, NotWaking
from workers.standalone.proxy.path_watch import PathWatch, WatchedConnector, probe_every_s
from workers.standalone.proxy.prefix_routing import Routed, learn, route_by_prompt
from workers.standalone.proxy.routing import Replica, RoutingTable

log = logging.getLogger(__name__)

# Not forwarded: they describe one hop, not the request (RFC 9110, 7.6.1).
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length",
               "proxy-connection", "te", "trailer", "upgrade"}  # fmt: skip
RETRY_AFTER_S = 5  # told to a client refused because too many requests wait already


class _NotStarted(Exception):
    """The replica refused, reset or did not accept the connection: nothing was processed.
    `slow`: finding out took time (no connection within the connect timeout, a dead path):
    the replica is ejected for a while, so the next requests do not wait on it too; a
    refusal or a reset costs a retry of a millisecond and ejects nothing (a canary so
    failing keeps its share of the requests, each counted against it)."""

    def __init__(self, why: str, *, slow: bool = False) -> None:
        super().__init__(why)
        self.slow = slow


@dataclass
class Proxy:
    redis_client: aioredis.Redis
    keys: RedisKeys
    token: str
    public_url: str
    settings: ProxySettings

    def __post_init__(self) -> None:
        self.public_url = self.public_url.rstrip("/")
        self.table = RoutingTable(self.settings.prefix_index_blocks,
                                  self.settings.prefix_load_margin)  # fmt: skip
        self.endpoints = Endpoints()
        self.holds = Holds(self.table, self.settings, self._announce_wake, self._waking)
        self.feed = TableFeed(self.redis_client, self.keys, self.table, self.endpoints,
                              resync_s=self.settings.resync_s,
                              on_changed=self.holds.table_changed)  # fmt: skip
        self.windows = RequestWindows(self.redis_client, self.keys, busy=self._busy_endpoints)
        self.paths = PathWatch(self.settings.dead_connection_s)
        self._answering: Counter[str] = Counter()  # endpoint -> requests being answered now
        self._process_token = f"{socket.gethostname()}:{os.getpid()}"  # its held counts' field
        self._client: ClientSession | None = None

    def app(self) -> web.Application:
        application = web.Application(client_max_size=self.settings.max_body_bytes)
        application.router.add_post("/v2/endpoints/{id}", self.register)
        application.router.add_get("/v2/endpoints/{id}", self.describe)
        application.router.add_delete("/v2/endpoints/{id}", self.unregister)
        application.router.add_get("/metrics", self.metrics)
        application.router.add_route("*", "/e/{id}/{tail:.*}", self.forward)
        application.on_startup.append(self._start)
        application.on_cleanup.append(self._stop)
        return application

    async def register(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        endpoint_id = request.match_info["id"]
        registration = json.dumps({"registered_at": time.time()})
        if (failed := await self._in_redis(
            self.redis_client.hset(self.keys.proxy_endpoints, endpoint_id, registration)
        )) is not None:  # fmt: skip
            return failed
        self.endpoints.known[endpoint_id] = {}
        log.info("endpoint %s registered", endpoint_id)
        return web.json_response({"endpoint": f"{self.public_url}/e/{endpoint_id}"})

    async def describe(self, request: web.Request) -> web.Response:
        """What this proxy process routes the endpoint to now (its routing table)."""
        if (denied := self._check(request)) is not None:
            return denied
        endpoint_id = request.match_info["id"]
        replicas = [
            {"route_id": r.route_id, "address": r.address, "revision": r.revision,
             "host": r.host, "weight": r.weight}
            for r in sorted(self.table.replicas(endpoint_id), key=lambda r: r.route_id)
        ]  # fmt: skip
        return web.json_response({
            "endpoint": f"{self.public_url}/e/{endpoint_id}",
            "registered": endpoint_id in self.endpoints,
            "replicas": replicas,
            "table": {"generation": self.table.generation, "age_s": round(self.table.age_s(), 3)},
        })  # fmt: skip

    async def unregister(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        endpoint_id = request.match_info["id"]
        if (failed := await self._in_redis(
            self.redis_client.hdel(self.keys.proxy_endpoints, endpoint_id)
        )) is not None:  # fmt: skip
            return failed
        self.endpoints.known.pop(endpoint_id, None)
        log.info("endpoint %s unregistered", endpoint_id)
        return web.Response(status=204)

    async def metrics(self, _: web.Request) -> web.Response:
        counting.TABLE_AGE.set(self.table.age_s())
        counting.TABLE_GENERATION.set(self.table.generation or 0)
        return web.Response(body=counting.exposition(), content_type="text/plain")

    async def forward(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.match_info["id"]
        replica = self.table.pick(endpoint)
        if replica is not None or endpoint in self.endpoints:
            self.windows.seen(endpoint)  # asked for, even if refused: not idle
        if replica is None and (refused := self._without_replica(endpoint)) is not None:
            return refused
        if replica is None and not self.holds.room_for(request.content_length or 0):
            return _retry_later(HoldFull(self.holds.bytes_full()))  # not read: not held
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            limit = self.settings.max_body_bytes
            return _error(413, f"request body over {limit} bytes (MODELFLEET_PROXY_MAX_BODY_BYTES)")
        counting.IN_FLIGHT.labels(endpoint).inc()
        self._answering[endpoint] += 1
        self.windows.load.begin(endpoint, time.time())
        try:
            if replica is None:
                return await self._held(request, endpoint, body)
            routed = route_by_prompt(self.table, endpoint, request.path, body,
                                     self.settings.prefix_block_chars)  # fmt: skip
            first = replica if routed is None else routed.pick.replica
            return await self._send(request, endpoint, first, body, routed)
        finally:
            self.windows.load.end(endpoint, time.time())
            counting.IN_FLIGHT.labels(endpoint).dec()
            self._answering[endpoint] -= 1
            if not self._answering[endpoint]:
                del self._answering[endpoint]

    def _without_replica(self, endpoint: str) -> web.Response | None:
        """The answer to a request no replica can take now; None: hold it (a wake)."""
        state = self.endpoints.modes.get(endpoint)
        mode = None if state is None else state.mode
        if mode is EndpointMode.WAKES:
            return None
        if endpoint not in self.endpoints and mode is None:
            return _error(404, f"no endpoint {endpoint} is registered with this proxy")
        if mode is EndpointMode.OPERATOR_ZERO:
            return _error(503, f"endpoint {endpoint} is scaled to 0 by an operator")
        if state is not None and mode is EndpointMode.UNAVAILABLE:
            return _error(503, f"endpoint {endpoint} cannot serve now: {state.reason}")
        return _error(503, f"no healthy replica for endpoint {endpoint}")

    async def _held(self, request: web.Request, endpoint: str, body: bytes) -> web.StreamResponse:
        """Wait for a replica of a deployment at zero (or still starting), then send."""
        try:
            async with self.holds.turn(endpoint, len(body)) as (replica, _):
                return await self._send(request, endpoint, replica, body)
        except NotWaking:  # its mode changed while it waited
            return self._without_replica(endpoint) or _error(
                503, f"no healthy replica for endpoint {endpoint}"
            )
        except HoldFull as full:
            return _retry_later(full)
        except TimeoutError:
            return _error(504, f"no replica of endpoint {endpoint} became ready within "
                               f"{self.settings.hold_s:g} s (MODELFLEET_PROXY_HOLD_S)")  # fmt: skip

    async def _send(
        self, request: web.Request, endpoint: str, first: Replica, body: bytes,
        routed: Routed | None = None,
    ) -> web.StreamResponse:  # fmt: skip
        """To `first`; once more to a replica of another host when nothing was processed.
        A failed attempt counts against its replica's revision before any retry (a canary
        whose replicas refuse connections is judged by it, not hidden by the retry)."""
        started = time.monotonic()
        answer = await self._attempt(request, first, body, started, routed)
        second = self._another(endpoint, first) if isinstance(answer, _NotStarted) else None
        if second is not None:
            counting.RETRIES.labels(endpoint, "not_started").inc()
            log.info("replica %s: %s; retrying on %s", first.route_id, answer, second.route_id)
            answer = await self._attempt(request, second, body, started)
        if isinstance(answer, Exception):
            return _error(502, f"no replica answered: {answer}")
        return answer

    async def _attempt(
        self, request: web.Request, target: Replica, body: bytes, started: float,
        routed: Routed | None = None,
    ) -> web.StreamResponse | Exception:  # fmt: skip
        """One try at `target`: its answer, or what went wrong (counted as an `error` of
        its revision; a replica that processed nothing is ejected for a while)."""
        self.table.sent(target.route_id)
        try:
            return await self._relay(request, target, body, started, routed)
        except (_NotStarted, ClientConnectionError, TimeoutError) as error:
            self.windows.count(target.endpoint, target.revision, None,
                               time.monotonic() - started)  # fmt: skip
            if isinstance(error, _NotStarted) and error.slow:
                self._eject(target, error)
            return error
        finally:
            self.table.done(target.route_id)

    async def _relay(
        self, request: web.Request, target: Replica, body: bytes, started: float,
        routed: Routed | None,
    ) -> web.StreamResponse:  # fmt: skip
        answer = await self._ask(request, target, body)
        self.table.answered(target.route_id)
        async with answer:  # from here on the replica has begun to answer: no retry
            streamed = web.StreamResponse(status=answer.status, reason=answer.reason)
            for name, value in answer.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    streamed.headers.add(name, value)
            await streamed.prepare(request)
            status: int | None = answer.status
            try:
                async for chunk in answer.content.iter_any():
                    await streamed.write(chunk)
                    if routed is not None:
                        routed.seen(chunk)
                await streamed.write_eof()
            except (ClientPayloadError, ClientConnectionError, TimeoutError) as error:
                # The answer began and broke off: the client must see it cut, not complete.
                log.info("replica %s: answer cut short: %s", target.route_id, error)
                status = None
                if request.transport is not None:
                    request.transport.close()
        self.windows.count(target.endpoint, target.revision, status, time.monotonic() - started)
        if routed is not None and status is not None:
            learn(self.table, routed)
        return streamed

    async def _ask(self, request: web.Request, target: Replica, body: bytes) -> ClientResponse:
        """The replica's answer, up to its headers; `_NotStarted` when the data path shows
        that nothing of the request can have been processed."""
        url = f"http://{target.address}/{request.match_info['tail']}"
        if request.query_string:
            url = f"{url}?{request.query_string}"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        dead: asyncio.Timeout | None = None
        try:
            async with self.paths.watching() as dead:
                return await self._session().request(request.method, url, headers=headers,
                                                     data=body)  # fmt: skip
        except (ClientConnectorError, ServerDisconnectedError, ClientOSError,
                ServerTimeoutError) as error:  # fmt: skip
            slow = isinstance(error, ServerTimeoutError)
            raise _NotStarted(str(error) or type(error).__name__, slow=slow) from error
        except TimeoutError:
            if dead is None or not dead.expired():
                raise
            raise _NotStarted(
                f"no byte and no TCP progress for {self.settings.dead_connection_s:g} s",
                slow=True,
            ) from None

    def _eject(self, replica: Replica, why: Exception) -> None:
        for_s = self.table.eject(replica.route_id)
        log.warning("replica %s: %s; no new request for %g s", replica.route_id, why, for_s)

    def _busy_endpoints(self) -> list[str]:
        return list(self._answering)

    def _waking(self, endpoint: str) -> bool:
        state = self.endpoints.modes.get(endpoint)
        return state is not None and state.mode is EndpointMode.WAKES

    async def _announce_wake(self, endpoint: str, held: int) -> None:
        """A wake on the feed, after how many requests this process holds for it."""
        pipe = self.redis_client.pipeline(transaction=False)
        pipe.hset(self.keys.held(endpoint), self._process_token, held)
        pipe.expire(self.keys.held(endpoint), HELD_KEPT_S)
        pipe.xadd(self.keys.wakes, WAKES.entry([endpoint]), maxlen=CHANGES_KEPT,
                  approximate=True)  # fmt: skip
        await pipe.execute()

    def _another(self, endpoint: str, first: Replica) -> Replica | None:
        """A replica on another host; else another replica on the same one."""
        if first.host:
            elsewhere = self.table.pick(endpoint, avoid_hosts={first.host})
            if elsewhere is not None:
                return elsewhere
        return self.table.pick(endpoint, avoid_routes={first.route_id})

    def _check(self, request: web.Request) -> web.Response | None:
        try:
            UUID(request.match_info["id"])
        except ValueError:
            return _error(400, "endpoint id must be a UUID")
        if request.headers.get(TOKEN_HEADER) != self.token:
            return _error(403, f"missing or wrong {TOKEN_HEADER}")
        return None

    async def _in_redis(self, call: Awaitable[object]) -> web.Response | None:
        try:
            await call
        except (redis.RedisError, OSError) as error:
            return _error(503, f"the proxy's Redis is unavailable: {type(error).__name__}")
        return None

    def _session(self) -> ClientSession:
        if self._client is None:
            timeout = ClientTimeout(
                total=self.settings.forward_timeout_s,
                sock_connect=self.settings.connect_timeout_s,
            )
            # Connections to replicas are kept and reused (keep-alive), per replica; an idle
            # one is closed before a model server's own idle timeout (uvicorn: 5 s) can
            # close it under a request being sent on it.
            connector = WatchedConnector(
                limit=0, limit_per_host=256, keepalive_timeout=4,
                probe_every_s=probe_every_s(self.settings.dead_connection_s),
            )  # fmt: skip
            self._client = ClientSession(timeout=timeout, connector=connector,
                                         auto_decompress=False)  # fmt: skip
        return self._client

    async def _start(self, _: web.Application) -> None:
        await self.feed.start()
        self.windows.start()
        self.paths.start()

    async def _stop(self, _: web.Application) -> None:
        await self.feed.stop()
        await self.windows.stop()
        await self.paths.stop()
        if self._client is not None:
            await self._client.close()
        await self.redis_client.aclose()


def _retry_later(full: HoldFull) -> web.Response:
    answer = _error(503, f"{full}; try again later")
    answer.headers["Retry-After"] = str(RETRY_AFTER_S)
    return answer


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
