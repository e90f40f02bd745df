"""Real PostgreSQL and Redis for the integration tests.

`MODELFLEET_TEST_DATABASE_URL` (a server where we may create databases) and
`MODELFLEET_TEST_REDIS_URL` point at running servers; when unset, throwaway
servers are started from the PyPI wheels for the test session. Either way the
session creates its own database (dropped at the end) and each test gets its
own Redis key prefix (deleted afterwards) and empty tables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
import sqlalchemy as sa
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.engine import make_url

from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.deployment_repository import PostgresDeploymentRepository
from workers.adapters.postgres.engine import create_database_engine
from workers.adapters.postgres.migrate import upgrade_to_head
from workers.adapters.postgres.phase_store import PostgresPhaseStore
from workers.adapters.postgres.scheduler import SessionTableScheduler
from workers.adapters.postgres.schema import metadata
from workers.adapters.redis_client import create_redis_client
from workers.adapters.redis_discovery import RedisServiceDiscovery
from workers.adapters.redis_health import RedisHealthStore
from workers.adapters.redis_keys import RedisKeys
from workers.adapters.redis_metrics import RedisMetricsStore
from workers.throwaway_servers import (
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


@pytest.fixture
def metrics_store(redis_client: redis.Redis, redis_keys: RedisKeys) -> RedisMetricsStore:
    return RedisMetricsStore(client=redis_client, keys=redis_keys)


@pytest.fixture
def health_store(redis_client: redis.Redis, redis_keys: RedisKeys) -> RedisHealthStore:
    return RedisHealthStore(client=redis_client, keys=redis_keys)


@pytest.fixture
def service_discovery(redis_client: redis.Redis, redis_keys: RedisKeys) -> RedisServiceDiscovery:
    return RedisServiceDiscovery(client=redis_client, keys=redis_keys)


@pytest.fixture
def repository(engine: sa.Engine, metrics_store: RedisMetricsStore) -> PostgresDeploymentRepository:
    return PostgresDeploymentRepository(engine=engine, metrics=metrics_store)


@pytest.fixture
def phase_store(engine: sa.Engine) -> PostgresPhaseStore:
    return PostgresPhaseStore(engine=engine)


@pytest.fixture
def scheduler(engine: sa.Engine) -> SessionTableScheduler:
    return SessionTableScheduler(engine=engine)


@pytest.fixture
def catalog(engine: sa.Engine) -> Catalog:
    return Catalog(engine=engine)


@pytest.fixture
def unreachable_redis() -> Iterator[redis.Redis]:
    """A client of a port nobody listens on, without redis-py's reconnect backoff."""
    client = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    yield client
    client.close()
