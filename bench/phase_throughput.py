"""routes.health_check end to end on Celery, against the same work done in-process.

    python bench/phase_throughput.py [--sizes 100,1000,10000] [--repeat 3] [--concurrency 2]

For each N, N degraded routes whose readiness in Redis is "1" are moved to
healthy. Celery: from publishing the phase task to the run's transitions being
committed (`phase_runs.finished_at`), with a real `celery worker` (prefork).
Floor: the same executor call, transitions and history in this process, no
Celery. Prints both and their ratio.

Uses MODELFLEET_BENCH_DATABASE_URL / MODELFLEET_BENCH_REDIS_URL, or else
throwaway servers from the PyPI wheels. MODELFLEET_FANOUT_MAX_TASKS applies.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tasks.routes.health_check import PHASE
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.migrate import upgrade_to_head
from workers.adapters.postgres.schema import route_history, routes
from workers.celery import ModelfleetCelery
from workers.composition import Adapters, build_adapters
from workers.config import Settings
from workers.domain import DeploymentInfo, ModelRevision, RouteStatus
from workers.phase_runs import PhaseRunState
from workers.throwaway_servers import start_postgres, start_redis

POLL_S = 0.005


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    with _servers() as (database_url, redis_url):
        env = {
            **os.environ,
            "MODELFLEET_DATABASE_URL": database_url,
            "MODELFLEET_REDIS_URL": redis_url,
            "MODELFLEET_BROKER_URL": redis_url,
            "MODELFLEET_RESULT_BACKEND": redis_url,
            "MODELFLEET_REDIS_KEY_PREFIX": f"bench-{uuid.uuid4().hex[:8]}:",
        }
        adapters = build_adapters(Settings.from_environ(env))
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "workers", "--quiet", "worker"),
                *("--loglevel=WARNING", f"--concurrency={args.concurrency}"),
                *("--without-mingle", "--without-gossip"),
            ],
            env=env,
        )
        try:
            upgrade_to_head(adapters.engine)
            sender = ModelfleetCelery(settings=adapters.settings)
            print(f"fan-out limit {adapters.settings.phases.fanout_max_tasks} tasks, "
                  f"worker concurrency {args.concurrency}, median of {args.repeat}")  # fmt: skip
            print(f"{'N':>7} {'celery s':>9} {'in-process s':>13} {'ratio':>6}")
            _measure(adapters, sender, 100)  # warm the worker up
            for size in (int(n) for n in args.sizes.split(",")):
                celery_s, floor_s = _measure(adapters, sender, size, args.repeat)
                print(f"{size:>7} {celery_s:>9.3f} {floor_s:>13.3f} {celery_s / floor_s:>6.2f}")
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            adapters.close()


def _measure(
    adapters: Adapters, sender: ModelfleetCelery, size: int, repeat: int = 1
) -> tuple[float, float]:
    route_ids = _seed(adapters, size)
    celery_runs, floor_runs = [], []
    for _ in range(repeat):
        _reset(adapters, route_ids)
        celery_runs.append(_through_celery(adapters, sender))
        _reset(adapters, route_ids)
        floor_runs.append(_in_process(adapters))
    return statistics.median(celery_runs), statistics.median(floor_runs)


def _through_celery(adapters: Adapters, sender: ModelfleetCelery) -> float:
    started = time.perf_counter()
    sent = sender.send_task(PHASE.name)
    run_id = uuid.UUID(sent.get(timeout=600))
    sent.forget()
    while True:
        run = adapters.phase_store.get_run(run_id)
        if run is not None and run.state is not PhaseRunState.RUNNING:
            break
        time.sleep(POLL_S)
    elapsed = time.perf_counter() - started
    assert run.state is PhaseRunState.SUCCEEDED, run
    while adapters.phase_store.running_run_ids():  # let follow-ups finish before the floor
        time.sleep(POLL_S)
    return elapsed


def _in_process(adapters: Adapters) -> float:
    started = time.perf_counter()
    targets = adapters.phase_store.load_routes(PHASE.targets)
    result = adapters.route_executor().check_route_health(targets)
    with adapters.phase_store.transaction() as conn:
        adapters.phase_store.apply_route_transitions(PHASE.transitions(result), conn=conn)
    return time.perf_counter() - started


def _seed(adapters: Adapters, size: int) -> list[uuid.UUID]:
    catalog = Catalog(engine=adapters.engine)
    with adapters.engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE routes, deployments, scaling_groups CASCADE"))
    catalog.create_scaling_group("bench")
    deployment = catalog.create_deployment(
        DeploymentInfo(uuid.uuid4(), "bench", "bench", size, ModelRevision(image="i"))
    )
    route_ids = [uuid.uuid4() for _ in range(size)]
    with adapters.engine.begin() as conn:
        conn.execute(
            routes.insert(),
            [{"id": i, "deployment_id": deployment.id, "status": "degraded"} for i in route_ids],
        )
    adapters.health_store.update_readiness({str(i): True for i in route_ids})
    return route_ids


def _reset(adapters: Adapters, route_ids: list[uuid.UUID]) -> None:
    with adapters.engine.begin() as conn:
        conn.execute(route_history.delete())
        conn.execute(routes.update().values(status=RouteStatus.DEGRADED.value))
    adapters.health_store.update_readiness({str(i): True for i in route_ids})


@contextmanager
def _servers() -> Iterator[tuple[str, str]]:
    server_url = os.environ.get("MODELFLEET_BENCH_DATABASE_URL")
    redis_url = os.environ.get("MODELFLEET_BENCH_REDIS_URL")
    postgres = None if server_url else start_postgres()
    redis = None if redis_url else start_redis()
    server_url = server_url or postgres.url  # type: ignore[union-attr]
    redis_url = redis_url or redis.url  # type: ignore[union-attr]
    name = f"modelfleet_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(False), redis_url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
        for server in (postgres, redis):
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
