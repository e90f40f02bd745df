"""How long until traffic: create -> first answer (split by step), readiness -> service
discovery at 1,000 routes, and scale 1 -> 3 -> every replica published.

    python bench/latency.py [--routes 1000] [--changes 100] [--no-announce]
                            [--skip-readiness] [--skip-create]

Readiness -> discovery: a worker and beat (default intervals) look after one
deployment of N routes, all healthy and published but `--changes` of them, which are
degraded. The bench plays the prober: for one of those at a time it writes readiness
"1" (announcing the change on the feed, as `modelfleet prober` does) and times until
the route is in service discovery. Prints p50, p95 and the slowest. `--no-announce`
writes the hash only, like a writer without the feed (and like every writer before
it): the change waits for `routes.health_check`'s tick.

Create -> first answer: the reference world (`modelfleet dev`'s processes, default
intervals) serves a new deployment of the sample model; the bench polls every 20 ms
and prints when each step was first seen, from the create: registered with the app
proxy, route rows made, session running, first readiness "1", route healthy, route
published, first answer 200 through the proxy. Then scale 1 -> 3: until 3 published.

Uses MODELFLEET_BENCH_DATABASE_URL / MODELFLEET_BENCH_REDIS_URL, or else
throwaway servers from the PyPI wheels.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.migrate import upgrade_to_head
from workers.adapters.postgres.schema import deployments, phase_runs, routes, sessions
from workers.adapters.redis.client import create_redis_client
from workers.adapters.redis.discovery import RedisServiceDiscovery
from workers.adapters.redis.health import RedisHealthStore
from workers.adapters.redis.keys import RedisKeys
from workers.composition import Adapters, build_adapters
from workers.config import Settings
from workers.devtools import dev, stores
from workers.devtools.processes import Process, celery, modelfleet, wait_for
from workers.devtools.traffic import percentile
from workers.domain import (
    DeploymentInfo,
    DeploymentLifecycle,
    HealthCheckStatus,
    ModelRevision,
    RouteStatus,
)

POLL_S = 0.02
TIMEOUT_S = 120


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--skip-create", action="store_true")
    parser.add_argument("--no-announce", action="store_true")
    parser.add_argument("--skip-readiness", action="store_true")
    args = parser.parse_args()
    if not args.skip_readiness:
        waits = _readiness_to_discovery(args.routes, args.changes, announce=not args.no_announce)
        print(f"readiness -> discovery, {args.routes} routes, {args.changes} changes: "
              f"p50 {percentile(waits, 0.5):.3f}s  p95 {percentile(waits, 0.95):.3f}s  "
              f"max {max(waits):.3f}s  mean {statistics.fmean(waits):.3f}s")  # fmt: skip
    if not args.skip_create:
        with dev.running_system(dev.isolated_environ(), fast=False) as system:
            _create_to_first_answer(system)


def _readiness_to_discovery(total: int, changes: int, *, announce: bool) -> list[float]:
    with _controller() as adapters:
        waiting = _seed(adapters, total, changes)
        keys = RedisKeys(adapters.settings.redis_key_prefix)
        discovery = RedisServiceDiscovery(client=adapters.redis, keys=keys)
        wait_for(lambda: len(discovery.published_route_ids()), lambda n: n == total - changes,
                 timeout_s=TIMEOUT_S, what="the healthy routes published")  # fmt: skip
        waits = []
        for route_id in waiting:
            started = time.perf_counter()
            adapters.health_store.update_readiness(
                {str(route_id): True}, changed=[str(route_id)] if announce else []
            )
            while route_id not in discovery.published_route_ids():
                time.sleep(0.005)
            waits.append(time.perf_counter() - started)
            time.sleep(0.3)  # one change at a time, as a rollout's routes turn ready
        return waits


def _seed(adapters: Adapters, total: int, changes: int) -> list[uuid.UUID]:
    catalog = Catalog(engine=adapters.engine)
    catalog.create_scaling_group("bench")
    deployment = catalog.create_deployment(DeploymentInfo(
        uuid.uuid4(), "bench", "bench", total, ModelRevision(image="i"),
        lifecycle=DeploymentLifecycle.READY,
    ))  # fmt: skip
    route_ids = [uuid.uuid4() for _ in range(total)]
    waiting = route_ids[:changes]
    with adapters.engine.begin() as conn:
        conn.execute(routes.insert(), [
            {"id": i, "deployment_id": deployment.id,
             "status": RouteStatus.DEGRADED.value if i in waiting else RouteStatus.HEALTHY.value}
            for i in route_ids
        ])  # fmt: skip
        session_ids = [uuid.uuid4() for _ in route_ids]
        conn.execute(sessions.insert(), [
            {"id": s, "route_id": r, "name": "s", "spec": {}, "status": "RUNNING",
             "host": "127.0.0.1", "port": 20000 + n % 40000, "started_at": datetime.now(UTC)}
            for n, (r, s) in enumerate(zip(route_ids, session_ids, strict=True))
        ])  # fmt: skip
        for route_id, session_id in zip(route_ids, session_ids, strict=True):
            conn.execute(routes.update().where(routes.c.id == route_id)
                         .values(session_id=session_id))  # fmt: skip
    adapters.health_store.update_readiness({str(i): True for i in route_ids[changes:]})
    return waiting


@contextmanager
def _controller() -> Iterator[Adapters]:
    """A worker and beat at the default intervals, on a database and key prefix of their own."""
    environ = dev.isolated_environ()
    with stores.stores(environ) as (database_url, redis_url):
        env = {**environ, "MODELFLEET_DATABASE_URL": database_url,
               "MODELFLEET_REDIS_URL": redis_url, "MODELFLEET_BROKER_URL": redis_url,
               "MODELFLEET_RESULT_BACKEND": redis_url}  # fmt: skip
        adapters = build_adapters(Settings.from_environ(env))
        upgrade_to_head(adapters.engine)
        folder = Path(tempfile.mkdtemp(prefix="modelfleet-bench-"))
        started = [
            Process("worker", celery("worker", "--loglevel=WARNING", "--concurrency=2"), env,
                    folder),
            Process("beat", celery("beat", "--loglevel=WARNING", f"--schedule={folder / 'beat'}"),
                    env, folder),
        ]  # fmt: skip
        try:
            yield adapters
        finally:
            for process in started:
                process.stop()
            adapters.close()
            shutil.rmtree(folder, ignore_errors=True)


def _create_to_first_answer(system: dev.DevSystem) -> None:
    wait_for(lambda: _closed_runs(system), lambda n: n > 0, timeout_s=TIMEOUT_S,
             what="the worker and beat to be up (a phase run closed)")  # fmt: skip
    created_at = time.perf_counter()
    deployment = system.sample_deployment("latency", 1, model=dev.SampleModel(latency_s=0))
    seen: dict[str, float] = {}
    steps: list[tuple[str, Callable[[], bool]]] = [
        ("registered with the app proxy", lambda: _lifecycle(system) != "pending"),
        ("route row made", lambda: _count(system, routes.c.deployment_id == deployment.id) > 0),
        ("session running", lambda: _sessions_running(system, deployment.id) > 0),
        ("first readiness 1", lambda: _readiness_one(system, deployment.id)),
        ("route healthy", lambda: _count(system, sa.and_(
            routes.c.deployment_id == deployment.id, routes.c.status == "healthy")) > 0),
        ("route published", lambda: _published(system) > 0),
        ("first answer through the proxy", lambda: _answers(system, deployment.id)),
    ]  # fmt: skip
    deadline = time.monotonic() + TIMEOUT_S
    while len(seen) < len(steps) and time.monotonic() < deadline:
        for name, reached in steps:
            if name not in seen and reached():
                seen[name] = time.perf_counter() - created_at
        time.sleep(POLL_S)
    print("create -> first answer (seconds from the create, first seen):")
    for name, _ in steps:
        print(f"  {name:<34} {seen.get(name, float('nan')):6.2f}")
    scaled_at = time.perf_counter()
    subprocess.run(modelfleet("deployment", "scale", "latency", "3"), env=system.env,
                   check=True, capture_output=True)  # fmt: skip
    wait_for(lambda: _published(system), lambda n: n >= 3, timeout_s=TIMEOUT_S,
             what="three replicas published")  # fmt: skip
    print(f"scale 1 -> 3 -> three replicas published: {time.perf_counter() - scaled_at:.2f}s")


def _closed_runs(system: dev.DevSystem) -> int:
    query = (
        sa.select(sa.func.count())
        .select_from(phase_runs)
        .where(phase_runs.c.phase == "deployments.check_pending", phase_runs.c.state == "succeeded")
    )
    with system.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def _lifecycle(system: dev.DevSystem) -> str:
    with system.engine.connect() as conn:
        query = sa.select(deployments.c.lifecycle).where(deployments.c.name == "latency")
        return str(conn.execute(query).scalar_one())


def _count(system: dev.DevSystem, where: Any) -> int:
    with system.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(routes).where(where))
                   .scalar_one())  # fmt: skip


def _sessions_running(system: dev.DevSystem, deployment_id: uuid.UUID) -> int:
    query = (
        sa.select(sa.func.count())
        .select_from(sessions)
        .join(routes, routes.c.id == sessions.c.route_id)
        .where(routes.c.deployment_id == deployment_id, sessions.c.status == "RUNNING")
    )
    with system.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def _readiness_one(system: dev.DevSystem, deployment_id: uuid.UUID) -> bool:
    with system.engine.connect() as conn:
        ids = conn.execute(sa.select(routes.c.id).where(routes.c.deployment_id == deployment_id))
        route_ids = [str(i) for i in ids.scalars()]
    found = _health_store(system.env["MODELFLEET_REDIS_URL"],
                          system.env.get("MODELFLEET_REDIS_KEY_PREFIX", "")
                          ).check_route_health_status(route_ids)  # fmt: skip
    return any(status.status is HealthCheckStatus.HEALTHY for status in found.values())


@cache
def _health_store(redis_url: str, prefix: str) -> RedisHealthStore:
    client = create_redis_client(redis_url)
    return RedisHealthStore(client=client, keys=RedisKeys(prefix))


def _published(system: dev.DevSystem) -> int:
    try:
        return len(requests.get(system.sd_url, timeout=2).json())
    except (requests.RequestException, ValueError):
        return 0


def _answers(system: dev.DevSystem, deployment_id: uuid.UUID) -> bool:
    url = f"{system.proxy_url}/e/{deployment_id}/v1/completions"
    try:
        return requests.post(url, json={"prompt": "hi"}, timeout=2).status_code == 200
    except requests.RequestException:
        return False


if __name__ == "__main__":
    main()
