"""The adapters, each on the real PostgreSQL and Redis of `tests/conftest.py`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis
import sqlalchemy as sa
from click.testing import CliRunner, Result
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.integration.sample_servers import sample_server
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.deployment_repository import PostgresDeploymentRepository
from workers.adapters.postgres.phase_store import PostgresPhaseStore
from workers.adapters.postgres.scheduler import SessionTableScheduler
from workers.adapters.redis.discovery import RedisServiceDiscovery
from workers.adapters.redis.health import RedisHealthStore
from workers.adapters.redis.keys import RedisKeys
from workers.adapters.redis.metrics import RedisMetricsStore
from workers.program import main

__all__ = ["sample_server"]  # a fixture for the standalone components' and the sample model's tests


@pytest.fixture
def metrics_store(redis_client: redis.Redis, redis_keys: RedisKeys) -> RedisMetricsStore:
    return RedisMetricsStore(client=redis_client, keys=redis_keys)


@pytest.fixture
def health_store(redis_client: redis.Redis, redis_keys: RedisKeys) -> RedisHealthStore:
    # The test server starts with the session: its youth says nothing about lost records.
    return RedisHealthStore(client=redis_client, keys=redis_keys, restart_grace_s=0)


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


@pytest.fixture
def run_env(engine: sa.Engine, redis_url: str, redis_keys: RedisKeys) -> dict[str, str]:
    """The environment that points `modelfleet` at the test's database and Redis."""
    return {
        "MODELFLEET_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "MODELFLEET_REDIS_URL": redis_url,
        "MODELFLEET_REDIS_KEY_PREFIX": redis_keys.prefix,
    }


@pytest.fixture
def run(run_env: dict[str, str]) -> Callable[..., Result]:
    """`modelfleet ARGS...` in this process, on the test's database."""

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), env=run_env)

    return invoke
