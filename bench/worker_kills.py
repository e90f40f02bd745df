"""kill -9 of the worker mid-run, at default limits: lost items, duplicate sessions, time to settle.

    python bench/worker_kills.py [--kills 20] [--routes 200]

Each round: N provisioning routes, one header task per route, a worker with
one process; `routes.provision` runs; once 20 sessions exist the worker's whole
process group is SIGKILLed; a new worker and beat start. Measures the seconds
from the new worker's start until every route is provisioned (degraded), and
counts routes never provisioned and routes with more than one live session.
Phase limits are the defaults (deadline 120 s, visibility timeout 300 s).

Uses MODELFLEET_BENCH_DATABASE_URL / MODELFLEET_BENCH_REDIS_URL, or else
throwaway servers from the PyPI wheels.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.engine import create_database_engine
from workers.adapters.postgres.migrate import upgrade_to_head
from workers.adapters.postgres.schema import routes, sessions
from workers.devtools.processes import Process, celery, wait_for
from workers.devtools.throwaway_servers import create_database, start_postgres, start_redis
from workers.domain import DeploymentInfo, DeploymentLifecycle, ModelRevision, RouteData

SETTLE_TIMEOUT_S = 300
LIVE = ("PENDING", "SCHEDULED", "PREPARING", "CREATING", "RUNNING", "TERMINATING")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--routes", type=int, default=200)
    args = parser.parse_args()
    postgres = None if os.environ.get("MODELFLEET_BENCH_DATABASE_URL") else start_postgres()
    redis = None if os.environ.get("MODELFLEET_BENCH_REDIS_URL") else start_redis()
    server_url = os.environ.get("MODELFLEET_BENCH_DATABASE_URL") or postgres.url  # type: ignore[union-attr]
    redis_url = os.environ.get("MODELFLEET_BENCH_REDIS_URL") or redis.url  # type: ignore[union-attr]
    settle_s, lost, duplicated = [], 0, 0
    try:
        for round_ in range(args.kills):
            seconds, missing, doubled = _one_round(server_url, redis_url, args.routes)
            settle_s.append(seconds)
            lost, duplicated = lost + missing, duplicated + doubled
            print(f"round {round_ + 1}: settled {seconds:.1f}s after the restart", flush=True)
    finally:
        for server in (redis, postgres):
            if server is not None:
                server.stop()
    print(
        f"kills: {args.kills}; items lost: {lost}; routes with two live sessions: {duplicated}; "
        f"seconds to settle after the restart: median {statistics.median(settle_s):.1f}, "
        f"max {max(settle_s):.1f}"
    )


def _one_round(server_url: str, redis_url: str, count: int) -> tuple[float, int, int]:
    engine = create_database_engine(create_database(server_url, f"bench_{uuid.uuid4().hex[:8]}"))
    upgrade_to_head(engine)
    deployment = _deployment_with_routes(engine, count)
    env = {
        **os.environ,
        "MODELFLEET_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "MODELFLEET_REDIS_URL": redis_url,
        "MODELFLEET_BROKER_URL": redis_url,
        "MODELFLEET_RESULT_BACKEND": redis_url,
        "MODELFLEET_REDIS_KEY_PREFIX": f"bench-{uuid.uuid4().hex[:8]}:",
        "MODELFLEET_FANOUT_MAX_TASKS": str(count),
    }
    folder = Path(tempfile.mkdtemp(prefix="modelfleet-kills-"))
    doomed = Process("doomed", celery("worker", "--concurrency=1", "--loglevel=INFO"), env, folder)
    Process("call", celery("call", "routes.provision"), env, folder).popen.wait(timeout=60)
    started = sa.select(sa.func.count()).select_from(sessions)
    wait_for(lambda: _scalar(engine, started), lambda n: n >= 20, timeout_s=60, what="sessions")
    doomed.kill_hard()
    restarted_at = time.monotonic()
    reborn = [
        Process("reborn", celery("worker", "--concurrency=2", "--loglevel=INFO"), env, folder),
        Process("beat", celery("beat", f"--schedule={folder / 'beat'}"), env, folder),
    ]
    degraded = sa.select(sa.func.count()).where(
        routes.c.deployment_id == deployment, routes.c.status == "degraded"
    )
    try:
        wait_for(lambda: _scalar(engine, degraded), lambda n: n == count,
                 timeout_s=SETTLE_TIMEOUT_S, what="every route provisioned")  # fmt: skip
        seconds = time.monotonic() - restarted_at
    except AssertionError:
        seconds = float("inf")
    finally:
        for process in [doomed, *reborn]:
            process.stop()
        shutil.rmtree(folder, ignore_errors=True)
    missing = count - _scalar(engine, degraded)
    doubled = _scalar(engine, _routes_with_two_live_sessions())
    engine.dispose()
    return seconds, missing, doubled


def _deployment_with_routes(engine: sa.Engine, count: int) -> uuid.UUID:
    catalog = Catalog(engine=engine)
    catalog.create_scaling_group("rg")
    deployment = catalog.create_deployment(
        DeploymentInfo(
            uuid.uuid4(),
            "svc",
            "rg",
            count,
            ModelRevision(image="i"),
            lifecycle=DeploymentLifecycle.READY,
        )
    )
    catalog.add_routes([RouteData(uuid.uuid4(), deployment.id) for _ in range(count)])
    return deployment.id


def _routes_with_two_live_sessions() -> sa.Select[tuple[int]]:
    doubled = (
        sa.select(sessions.c.route_id)
        .where(sessions.c.status.in_(LIVE))
        .group_by(sessions.c.route_id)
        .having(sa.func.count() > 1)
        .subquery()
    )
    return sa.select(sa.func.count()).select_from(doubled)


def _scalar(engine: sa.Engine, query: sa.Select[tuple[int]]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


if __name__ == "__main__":
    main()
