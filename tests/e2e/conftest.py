"""A running modelfleet: real `celery worker` / `celery beat` processes on real PostgreSQL
and Redis, and a real HTTP app proxy on 127.0.0.1. The tests play the scheduler and the
health checker by writing session rows and readiness, as those services would."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from tests.e2e.brokers import broker_kind, rabbitmq_vhost
from tests.integration.fake_app_proxy_server import Reply, ScriptedServer, Seen
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.engine import create_database_engine
from workers.adapters.postgres.migrate import upgrade_to_head
from workers.adapters.postgres.phase_store import PostgresPhaseStore
from workers.adapters.redis.health import RedisHealthStore
from workers.adapters.redis.keys import RedisKeys
from workers.config import interval_variable
from workers.devtools import dev
from workers.devtools.processes import Process, celery, wait_for

FAST_INTERVAL_S = "0.5"
APP_PROXY_TOKEN = "e2e-token"


def registered_endpoint(seen: Seen) -> Reply:
    """The app proxy's answer: POST registers, DELETE unregisters."""
    if seen.method == "POST":
        endpoint_id = seen.path.rsplit("/", 1)[-1]
        return Reply.json({"endpoint": f"http://{endpoint_id}.models.test"})
    return Reply(status=204)


@dataclass
class Stack:
    env: dict[str, str]
    engine: sa.Engine
    redis: redis.Redis
    keys: RedisKeys
    proxy: ScriptedServer
    log_dir: Path
    processes: list[Process] = field(default_factory=list)

    @property
    def catalog(self) -> Catalog:
        return Catalog(engine=self.engine)

    @property
    def phase_store(self) -> PostgresPhaseStore:
        return PostgresPhaseStore(engine=self.engine)

    @property
    def health(self) -> RedisHealthStore:
        return RedisHealthStore(client=self.redis, keys=self.keys)

    def start(self, name: str, argv: list[str], **env: str) -> Process:
        process = Process(name, argv, {**self.env, **env}, self.log_dir)
        self.processes.append(process)
        return process

    def worker(self, name: str = "worker", concurrency: int = 2, **env: str) -> Process:
        """A worker, started; see `ready_worker` to wait until it consumes."""
        return self.start(
            name,
            celery(
                "worker",
                "--pool=prefork",
                f"--concurrency={concurrency}",
                "--loglevel=INFO",
                "--without-mingle",
                "--without-gossip",
                f"--hostname={name}-{uuid.uuid4().hex[:6]}@%h",
            ),
            **env,
        )

    def ready_worker(self, name: str = "worker", **env: str) -> Process:
        """A worker that has connected and consumes (its log says `ready.`)."""
        process = self.worker(name, concurrency=2, **env)
        wait_for(
            lambda: process.log_path.read_text(errors="replace"),
            lambda log: " ready." in log,
            timeout_s=60,
            what=f"{name} to be ready",
        )
        return process

    def beat(self, name: str = "beat") -> Process:
        schedule = self.log_dir / f"{name}-schedule"
        return self.start(name, celery("beat", "--loglevel=INFO", f"--schedule={schedule}"))

    def query(self, statement: Any, **params: Any) -> list[sa.RowMapping]:
        with self.engine.connect() as conn:
            return list(conn.execute(statement, params).mappings())

    def outputs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail()}" for p in self.processes)


@pytest.fixture
def broker_url(redis_url: str) -> Iterator[str]:
    """Celery's broker for this test: the test Redis, or a RabbitMQ vhost of its own."""
    if broker_kind() == "redis":
        yield redis_url  # isolated by the test's key prefix (global_keyprefix)
        return
    with rabbitmq_vhost() as url:
        yield url


@pytest.fixture
def stack(
    create_database: Callable[[], str],
    *,
    broker_url: str,
    redis_url: str,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Stack]:
    database_url = create_database()
    engine = create_database_engine(database_url)
    upgrade_to_head(engine)
    env = {
        **os.environ,
        "MODELFLEET_DATABASE_URL": database_url,
        "MODELFLEET_REDIS_URL": redis_url,
        "MODELFLEET_BROKER_URL": broker_url,
        "MODELFLEET_RESULT_BACKEND": redis_url,
        "MODELFLEET_REDIS_KEY_PREFIX": redis_keys.prefix,
        "MODELFLEET_PHASE_DEADLINE_S": "20",
        "MODELFLEET_TASK_TIME_LIMIT_S": "15",
        "MODELFLEET_TASK_SOFT_TIME_LIMIT_S": "12",
        "MODELFLEET_BROKER_VISIBILITY_TIMEOUT_S": "16",
        "MODELFLEET_APP_PROXY_RETRIES": "0",
        **{interval_variable(phase): FAST_INTERVAL_S for phase in _scheduled()},
    }
    with ScriptedServer(default=registered_endpoint) as proxy:
        built = Stack(env, engine, redis_client, redis_keys, proxy, tmp_path)
        try:
            yield built
        finally:
            for process in built.processes:
                process.stop()
            if _failed(request):
                print(built.outputs())  # noqa: T201  # shown by pytest for the failed test
            engine.dispose()


def _scheduled() -> list[str]:
    from beat_schedule import SCHEDULED_INTERVALS_S  # noqa: PLC0415

    return list(SCHEDULED_INTERVALS_S)


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is None or report.failed


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def world_environ(
    create_database: Callable[[], str], broker_url: str, redis_url: str, redis_keys: RedisKeys
) -> dict[str, str]:
    """The environment of a world on the test's own database, Redis and broker (never
    whatever broker the caller's shell names)."""
    return {
        **os.environ,
        "MODELFLEET_DATABASE_URL": create_database(),
        "MODELFLEET_REDIS_URL": redis_url,
        "MODELFLEET_REDIS_KEY_PREFIX": redis_keys.prefix,
        "MODELFLEET_BROKER_URL": broker_url,
        "MODELFLEET_RESULT_BACKEND": redis_url,
    }


@pytest.fixture
def system(world_environ: dict[str, str]) -> Iterator[dev.DevSystem]:
    """The reference world `modelfleet dev` runs, in the test's own stores."""
    with dev.running_system(world_environ) as running:
        yield running
