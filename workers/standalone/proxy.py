"""A dev app proxy: `modelfleet proxy`.

It speaks the app-proxy API the controller uses: `POST /v2/endpoints/{id}` and
`DELETE /v2/endpoints/{id}`, checked against its token. It answers with
`{public_url}/e/{id}`, and forwards every request under that URL to the
deployment's healthy routes (the service-discovery set), round robin. When no
route is healthy it answers 503 with a body that says so.

A replica that refuses the connection, or drops it before any byte of an
answer, processed nothing: the request is retried once on another healthy
replica (defence in depth for a replica that dies unannounced). A replica
that began to answer is never retried.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from collections import defaultdict
from collections.abc import Iterator
from uuid import UUID

from aiohttp import (
    ClientConnectorError,
    ClientError,
    ClientOSError,
    ClientSession,
    ClientTimeout,
    ServerDisconnectedError,
    web,
)

from workers.adapters.app_proxy_http import TOKEN_HEADER
from workers.adapters.redis.discovery import RedisServiceDiscovery
from workers.domain import ModelServiceMetadata
from workers.errors import InfrastructureUnavailable

log = logging.getLogger(__name__)

FORWARD_TIMEOUT_S = 30.0
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


class DevProxy:
    def __init__(self, *, discovery: RedisServiceDiscovery, token: str, public_url: str) -> None:
        self._discovery = discovery
        self._token = token
        self._public_url = public_url.rstrip("/")
        self._turns: dict[str, Iterator[int]] = defaultdict(itertools.count)
        self._client: ClientSession | None = None

    def app(self) -> web.Application:
        application = web.Application()
        application.router.add_post("/v2/endpoints/{id}", self.register)
        application.router.add_delete("/v2/endpoints/{id}", self.unregister)
        application.router.add_route("*", "/e/{id}/{tail:.*}", self.forward)
        application.on_cleanup.append(self._close)
        return application

    async def register(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        endpoint_id = request.match_info["id"]
        log.info("endpoint %s registered", endpoint_id)
        return web.json_response({"endpoint": f"{self._public_url}/e/{endpoint_id}"})

    async def unregister(self, request: web.Request) -> web.Response:
        if (denied := self._check(request)) is not None:
            return denied
        log.info("endpoint %s unregistered", request.match_info["id"])
        return web.Response(status=204)

    async def forward(self, request: web.Request) -> web.StreamResponse:
        endpoint_id = request.match_info["id"]
        try:
            replicas = await self._healthy(endpoint_id)
        except InfrastructureUnavailable as error:
            return _error(503, f"service discovery unavailable: {error}")
        if not replicas:
            return _error(503, f"no healthy replica for endpoint {endpoint_id}")
        turn = next(self._turns[endpoint_id])
        first = replicas[turn % len(replicas)]
        body = await request.read()
        try:
            try:
                return await self._relay(request, first, body)
            except _NotStarted:
                second = _another(replicas, first, turn)
                if second is None:
                    raise
                # Nothing reached a model server, so one more try elsewhere is safe.
                log.info("replica %s refused; retrying on %s", first.route_id, second.route_id)
                return await self._relay(request, second, body)
        except (_NotStarted, ClientError, TimeoutError) as error:
            return _error(502, f"no replica answered: {error}")

    async def _relay(
        self, request: web.Request, target: ModelServiceMetadata, body: bytes
    ) -> web.Response:
        """One forward; `_NotStarted` when the replica refused or reset before any answer."""
        url = f"http://{target.host}:{target.port}/{request.match_info['tail']}"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            answer = await self._session().request(request.method, url, headers=headers, data=body)
        except (ClientConnectorError, ServerDisconnectedError, ClientOSError) as error:
            raise _NotStarted(f"replica {target.route_id}: {error}") from error
        async with answer:  # from here on the replica has begun to answer: no retry
            payload = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
            return web.Response(status=answer.status, body=payload, headers=kept)

    async def _healthy(self, endpoint_id: str) -> list[ModelServiceMetadata]:
        published = await asyncio.get_running_loop().run_in_executor(
            None, self._discovery.registered_targets
        )
        return [t for t in published if t.labels.get("endpoint_id") == endpoint_id]

    def _check(self, request: web.Request) -> web.Response | None:
        try:
            UUID(request.match_info["id"])
        except ValueError:
            return _error(400, "endpoint id must be a UUID")
        if request.headers.get(TOKEN_HEADER) != self._token:
            return _error(403, f"missing or wrong {TOKEN_HEADER}")
        return None

    def _session(self) -> ClientSession:
        if self._client is None:
            self._client = ClientSession(timeout=ClientTimeout(total=FORWARD_TIMEOUT_S))
        return self._client

    async def _close(self, _: web.Application) -> None:
        if self._client is not None:
            await self._client.close()


def _another(
    replicas: list[ModelServiceMetadata], tried: ModelServiceMetadata, turn: int
) -> ModelServiceMetadata | None:
    others = [r for r in replicas if r.route_id != tried.route_id]
    return others[turn % len(others)] if others else None


class _NotStarted(Exception):
    """The replica refused or dropped the connection before any byte of an answer."""


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def serve(proxy: DevProxy, *, host: str, port: int) -> None:
    """Serve until interrupted (the port is bound before anything is said)."""
    listening = socket.create_server((host, port), reuse_port=False)
    log.info("proxy: listening on http://%s:%d", host, port)
    web.run_app(proxy.app(), sock=listening, print=None)
