"""Prometheus HTTP service discovery, `GET /metrics/service_discovery`, and the
controller's own metrics, `GET /metrics`.

Discovery answers Prometheus' standard document (`[{"targets": ["host:port"],
"labels": {...}}]`) built from the scrape targets in Redis. A small WSGI app served
by waitress; `modelfleet service-discovery serve` starts it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from waitress.server import create_server

from workers.adapters.redis.discovery import RedisServiceDiscovery, prometheus_http_sd
from workers.errors import InfrastructureUnavailable

log = logging.getLogger(__name__)

PATH = "/metrics/service_discovery"
METRICS_PATH = "/metrics"
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def make_app(
    discovery: RedisServiceDiscovery, metrics: Callable[[], bytes] | None = None
) -> WsgiApp:
    """Discovery, and the controller's metrics when `metrics` makes their text."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if metrics is not None and environ.get("PATH_INFO") == METRICS_PATH:
            body = metrics()
            start_response("200 OK", [("Content-Type", METRICS_CONTENT_TYPE),
                                      ("Content-Length", str(len(body)))])  # fmt: skip
            return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]
        status, headers, document = answer(environ.get("PATH_INFO"), environ.get("REQUEST_METHOD"))
        body = json.dumps(document).encode()
        start_response(
            status,
            [*headers, ("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    def answer(path: object, method: object) -> tuple[str, list[tuple[str, str]], object]:
        if path != PATH:
            return "404 Not Found", [], {"error": f"only {PATH} is served"}
        if method not in {"GET", "HEAD"}:
            return "405 Method Not Allowed", [("Allow", "GET, HEAD")], {"error": "use GET"}
        try:
            targets = discovery.registered_targets()
        except InfrastructureUnavailable as error:
            log.warning("service discovery: %s", error)
            return "503 Service Unavailable", [], {"error": str(error)}
        return "200 OK", [], prometheus_http_sd(targets)

    return app


def serve(
    discovery: RedisServiceDiscovery,
    *,
    host: str,
    port: int,
    metrics: Callable[[], bytes] | None = None,
) -> None:
    """Serve until interrupted (the port is bound before anything is said)."""
    server = create_server(
        make_app(discovery, metrics), host=host, port=port, threads=2, ident="modelfleet"
    )
    log.info("service discovery: serving http://%s:%d%s", host, port, PATH)
    server.run()
