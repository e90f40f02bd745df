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
from workers.composition import Adapters, build_adapters
from workers.config import Settings
from workers.phase_runs import PhaseRun, PhaseRunState
from workers.program import main

__all__ = ["sample_server"]  # a fixture for the standalone components' and the sample model's tests


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


@pytest.fixture
def adapters(engine: sa.Engine, redis_url: str, redis_keys: RedisKeys) -> Iterator[Adapters]:
    """The controller's adapters on the test's database and Redis key prefix."""
    settings = Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        redis_url=redis_url,
        redis_key_prefix=redis_keys.prefix,
    )
    built = build_adapters(settings)
    yield built
    built.close()


@pytest.fixture
def run_phase(
    adapters: Adapters, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], PhaseRun | None]:
    """Run a phase once in this process, as a worker would (follow-ups are not sent):
    what the controller writes, for tests of what the CLI then reads."""
    import tasks  # noqa: F401, PLC0415  # registers every phase
    from tasks.run_close import close_run  # noqa: PLC0415
    from tasks.runs import PHASES, execute_items  # noqa: PLC0415
    from workers.celery import app  # noqa: PLC0415

    monkeypatch.setattr(app, "send_task", lambda name, **_: None)

    def run(name: str) -> PhaseRun | None:
        phase = PHASES[name]
        ids = phase.target_ids(adapters)
        token = adapters.phase_lock.acquire(phase.name, ttl_s=60)
        assert token is not None
        run = adapters.phase_store.open_run(name, item_count=len(ids), task_count=1,
                                            lock_token=token, deadline_s=60)  # fmt: skip
        assert run is not None
        outcomes = execute_items(phase, adapters, ids)
        return close_run(phase, adapters, run.id, outcomes, PhaseRunState.SUCCEEDED)

    return run
