"""The `modelfleet` command line (click).

Bad input exits 2 with one line naming what is wrong; a store that cannot be
reached exits 1 with one line saying which.
"""

from __future__ import annotations

import logging

import click

from workers.adapters.postgres.engine import create_database_engine
from workers.adapters.postgres.migrate import current_revision, upgrade_to_head
from workers.adapters.redis_client import create_redis_client
from workers.adapters.redis_discovery import RedisServiceDiscovery
from workers.adapters.redis_keys import RedisKeys
from workers.config import Settings, SettingsError, masked_url
from workers.service_discovery_http import serve


def one_line(message: str) -> str:
    """Errors reach the operator as a single line (drivers' messages span several)."""
    return " ".join(message.split())


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """modelfleet: keep model-serving deployments at the right number of healthy replicas."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        ctx.obj = Settings.from_environ()
    except SettingsError as error:
        raise click.UsageError(str(error)) from None


@main.group()
def db() -> None:
    """The PostgreSQL schema."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(settings: Settings) -> None:
    """Apply every migration not yet applied (a database already at head is left as is)."""
    engine = create_database_engine(settings.database_url, pool_size=1)
    try:
        upgrade_to_head(engine)
        click.echo(
            f"database {masked_url(settings.database_url)} at revision {current_revision(engine)}"
        )
    except Exception as error:  # one line for the operator; the traceback is in the log
        logging.getLogger(__name__).debug("db upgrade failed", exc_info=True)
        raise click.ClickException(one_line(f"db upgrade failed: {error}")) from None
    finally:
        engine.dispose()


@main.group("service-discovery")
def service_discovery() -> None:
    """Prometheus HTTP service discovery of the healthy model servers."""


@service_discovery.command("serve")
@click.option("--host", default=None, help="Interface to bind [MODELFLEET_SD_HTTP_HOST].")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None, help="[MODELFLEET_SD_HTTP_PORT]"
)
@click.pass_obj
def service_discovery_serve(settings: Settings, host: str | None, port: int | None) -> None:
    """Serve GET /metrics/service_discovery until interrupted."""
    client = create_redis_client(settings.redis_url)
    discovery = RedisServiceDiscovery(client=client, keys=RedisKeys(settings.redis_key_prefix))
    try:
        serve(
            discovery,
            host=host or settings.service_discovery_http.host,
            port=settings.service_discovery_http.port if port is None else port,
        )
    finally:
        client.close()


if __name__ == "__main__":
    main()
