"""Prometheus HTTP service discovery: `GET /metrics/service_discovery`.

Answers Prometheus' standard document (`[{"targets": ["host:port"], "labels":
{...}}]`) built from the scrape targets in Redis. A small WSGI app served by
waitress; `modelfleet service-discovery serve` starts it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

import waitress

from workers.adapters.redis_discovery import RedisServiceDiscovery, prometheus_http_sd
from workers.errors import InfrastructureUnavailable

log = logging.getLogger(__name__)

PATH = "/metrics/service_discovery"

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def make_app(discovery: RedisServiceDiscovery) -> WsgiApp:
    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH:
            return _json(start_response, "404 Not Found", {"error": f"only {PATH} is served"})
        if environ.get("REQUEST_METHOD") not in {"GET", "HEAD"}:
            return _json(start_response, "405 Method Not Allowed", {"error": "use GET"})
        try:
            targets = discovery.registered_targets()
        except InfrastructureUnavailable as error:
            log.warning("service discovery: %s", error)
            return _json(start_response, "503 Service Unavailable", {"error": str(error)})
        return _json(start_response, "200 OK", prometheus_http_sd(targets))

    return app


def serve(discovery: RedisServiceDiscovery, *, host: str, port: int) -> None:
    """Serve until interrupted."""
    log.info("service discovery: serving http://%s:%d%s", host, port, PATH)
    waitress.serve(make_app(discovery), host=host, port=port, threads=2, ident="modelfleet")


def _json(start_response: StartResponse, status: str, document: object) -> list[bytes]:
    body = json.dumps(document).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
