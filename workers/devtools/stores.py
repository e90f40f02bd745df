"""The PostgreSQL and Redis `modelfleet dev` runs on: those the environment names (checked,
and said), or throwaway servers from the PyPI wheels (stopped on exit)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

import sqlalchemy as sa

from workers.adapters.postgres.engine import create_database_engine
from workers.adapters.redis.client import create_redis_client, redis_errors
from workers.config import masked_url
from workers.devtools.throwaway_servers import create_database, start_postgres, start_redis
from workers.errors import InfrastructureUnavailable


class StoreUnreachable(InfrastructureUnavailable):
    """A store the environment names cannot be reached (one line for the operator)."""


@contextlib.contextmanager
def stores(
    environ: Mapping[str, str], say: Callable[[str], None] = lambda _: None
) -> Iterator[tuple[str, str]]:
    """The database and Redis URLs `environ` names (checked, and said), or throwaway
    servers for those it does not (stopped on exit)."""
    database_url = environ.get("MODELFLEET_DATABASE_URL")
    redis_url = environ.get("MODELFLEET_REDIS_URL")
    named = [name for name, url in (("PostgreSQL", database_url), ("Redis", redis_url)) if url]
    if named:
        say(f"using the {' and '.join(named)} your MODELFLEET_*_URL variables name")
    postgres = None if database_url else start_postgres()
    redis = None if redis_url else start_redis()
    try:
        if postgres is not None:
            database_url = create_database(postgres.url, "modelfleet")
        yield str(database_url), str(redis_url or redis.url)  # type: ignore[union-attr]
    finally:
        for name, server in (("Redis", redis), ("PostgreSQL", postgres)):
            if server is not None:
                server.stop()
                say(f"throwaway {name}: stopped")


def check_reachable(database_url: str | None, redis_url: str | None) -> None:
    """Configured stores answer, or one line says which does not: the `export` line of an
    earlier `modelfleet dev`, pasted and kept, names servers that stopped with it."""
    hint = "unset it to start throwaway servers (those of an earlier modelfleet dev stop with it)"
    if database_url:
        engine = create_database_engine(database_url, pool_size=1)
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError as error:
            raise StoreUnreachable(
                f"MODELFLEET_DATABASE_URL: {masked_url(database_url)} cannot be reached"
                f" ({type(getattr(error, 'orig', None) or error).__name__}); {hint}"
            ) from None
        finally:
            engine.dispose()
    if redis_url:
        client = create_redis_client(redis_url)
        try:
            with redis_errors():
                client.ping()
        except InfrastructureUnavailable:
            raise StoreUnreachable(
                f"MODELFLEET_REDIS_URL: {masked_url(redis_url)} cannot be reached; {hint}"
            ) from None
        finally:
            client.close()
