"""Real PostgreSQL and Redis for the integration and end-to-end tests.

`MODELFLEET_TEST_DATABASE_URL` (a server where we may create databases) and
`MODELFLEET_TEST_REDIS_URL` point at running servers; when unset, throwaway
servers are started from the PyPI wheels for the test session. Either way the
session creates its own databases (dropped at the end) and each test gets its
own Redis key prefix (deleted afterwards) and empty tables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from workers.adapters.postgres.engine import create_database_engine
from workers.adapters.postgres.migrate import upgrade_to_head
from workers.adapters.postgres.schema import metadata
from workers.adapters.redis.client import create_redis_client
from workers.adapters.redis.keys import RedisKeys
from workers.devtools.throwaway_servers import (
    ThrowawayPostgres,
    ThrowawayRedis,
    start_postgres,
    start_redis,
)


def _configured_or_throwaway(
    variable: str, start: Callable[[], ThrowawayPostgres | ThrowawayRedis]
) -> Iterator[str]:
    """The URL in `variable`, or else that of a throwaway server kept for the session."""
    configured = os.environ.get(variable)
    if configured:
        yield configured
        return
    server = start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    yield from _configured_or_throwaway("MODELFLEET_TEST_DATABASE_URL", start_postgres)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    yield from _configured_or_throwaway("MODELFLEET_TEST_REDIS_URL", start_redis)


@pytest.fixture(scope="session")
def create_database(postgres_server_url: str) -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty databases on the test server; all dropped at the end."""
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def create() -> str:
        name = f"modelfleet_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return make_url(postgres_server_url).set(database=name).render_as_string(False)

    yield create
    with admin.connect() as conn:
        for name in created:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def migrated_engine(create_database: Callable[[], str]) -> Iterator[sa.Engine]:
    engine = create_database_engine(create_database(), pool_size=10)
    upgrade_to_head(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(migrated_engine: sa.Engine) -> sa.Engine:
    """The session's migrated database, emptied before each test."""
    tables = ", ".join(table.name for table in metadata.sorted_tables)
    with migrated_engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return migrated_engine


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = create_redis_client(redis_url)
    yield client
    client.close()


@pytest.fixture
def redis_keys(redis_client: redis.Redis) -> Iterator[RedisKeys]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    keys = RedisKeys(prefix=f"modelfleet-test:{uuid.uuid4().hex}:")
    yield keys
    leftovers = list(redis_client.scan_iter(match=f"{keys.prefix}*", count=1000))
    if leftovers:
        redis_client.delete(*leftovers)
