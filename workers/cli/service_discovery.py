"""`modelfleet service-discovery serve`: Prometheus HTTP SD of the healthy model servers."""

from __future__ import annotations

import click

from beat_schedule import PHASE_INTERVALS_S
from workers.adapters.redis.client import create_redis_client
from workers.adapters.redis.controller_metrics import RedisControllerMetrics
from workers.adapters.redis.discovery import RedisServiceDiscovery
from workers.adapters.redis.keys import RedisKeys
from workers.cli.root import CliContext, log_level_option, main, reported_failures
from workers.web.metrics import exposition
from workers.web.service_discovery import serve


@main.group("service-discovery")
def service_discovery() -> None:
    """Prometheus HTTP service discovery of the healthy model servers."""


@service_discovery.command("serve")
@click.option("--host", default=None, help="Interface to bind [MODELFLEET_SD_HTTP_HOST].")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None, help="[MODELFLEET_SD_HTTP_PORT]"
)
@log_level_option
@click.pass_obj
def service_discovery_serve(cli: CliContext, host: str | None, port: int | None) -> None:
    """Serve GET /metrics/service_discovery and the controller's GET /metrics until
    interrupted."""
    settings = cli.settings
    client = create_redis_client(settings.redis_url)
    keys = RedisKeys(settings.redis_key_prefix)
    counters = RedisControllerMetrics(client=client, keys=keys)
    try:
        with reported_failures("service-discovery serve"):  # e.g. the port is taken
            serve(
                RedisServiceDiscovery(client=client, keys=keys),
                host=host or settings.service_discovery_http.host,
                port=settings.service_discovery_http.port if port is None else port,
                metrics=lambda: exposition(counters, cli.reports, sorted(PHASE_INTERVALS_S)),
            )
    finally:
        client.close()
