"""Redis restarts under a running system: worker deaths, overlapping runs, time to recover.

    python bench/redis_restarts.py [--restarts 20] [--up-s 8] [--down-s 1]

Runs the reference world (`modelfleet dev`'s processes, every phase every
second, a 2-replica demo) on a throwaway Redis of its own (broker, results,
health, service discovery) and PostgreSQL (MODELFLEET_BENCH_DATABASE_URL's
server, or a throwaway one), then kills and restarts that Redis N times.
Reports how often a child process died (and was restarted by `modelfleet dev`'s
supervisor), how many pairs of runs of one phase overlapped in `phase_runs`,
and, after each restart, the seconds until every phase had started a run.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
import uuid

import sqlalchemy as sa

from beat_schedule import PHASE_INTERVALS_S
from workers.adapters.postgres.schema import phase_runs
from workers.devtools import dev
from workers.devtools.throwaway_servers import (
    ThrowawayRedis,
    create_database,
    start_postgres,
    start_redis,
)

RECOVERY_TIMEOUT_S = 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=20)
    parser.add_argument("--up-s", type=float, default=8.0)
    parser.add_argument("--down-s", type=float, default=1.0)
    args = parser.parse_args()
    postgres = None if os.environ.get("MODELFLEET_BENCH_DATABASE_URL") else start_postgres()
    redis = start_redis()
    try:
        server_url = os.environ.get("MODELFLEET_BENCH_DATABASE_URL") or postgres.url  # type: ignore[union-attr]
        environ = {
            **os.environ,
            "MODELFLEET_DATABASE_URL": create_database(server_url, f"bench_{uuid.uuid4().hex[:8]}"),
            "MODELFLEET_REDIS_URL": redis.url,
            "MODELFLEET_BROKER_URL": redis.url,
            "MODELFLEET_RESULT_BACKEND": redis.url,
        }
        with dev.running_system(environ) as system:
            system.demo()
            time.sleep(15)
            redis, recoveries = _restart_repeatedly(system, redis, args)
            deaths = {p.name: p.restarts for p in system.processes if p.restarts}
            overlaps = _overlapping_runs(system.engine)
    finally:
        redis.stop()
        if postgres is not None:
            postgres.stop()
    print(f"restarts: {args.restarts}; child deaths (restarted by the supervisor): {deaths or 0}")
    print(f"overlapping runs of one phase: {overlaps}")
    print(
        f"seconds from Redis back to every phase running again: median "
        f"{statistics.median(recoveries):.1f}, max {max(recoveries):.1f}"
    )


def _restart_repeatedly(
    system: dev.DevSystem, redis: ThrowawayRedis, args: argparse.Namespace
) -> tuple[ThrowawayRedis, list[float]]:
    recoveries = []
    for _ in range(args.restarts):
        port = redis.port
        redis.stop()
        time.sleep(args.down_s)
        redis = start_redis(port)
        recoveries.append(_seconds_until_every_phase_runs(system.engine))
        time.sleep(args.up_s)
    return redis, recoveries


def _seconds_until_every_phase_runs(engine: sa.Engine) -> float:
    back = time.monotonic()
    with engine.connect() as conn:
        since = conn.execute(sa.select(sa.func.now())).scalar_one()
    while time.monotonic() - back < RECOVERY_TIMEOUT_S:
        with engine.connect() as conn:
            started = set(
                conn.execute(
                    sa.select(phase_runs.c.phase).where(phase_runs.c.started_at > since).distinct()
                ).scalars()
            )
        if started >= set(PHASE_INTERVALS_S):
            return time.monotonic() - back
        time.sleep(0.1)
    return float("inf")


def _overlapping_runs(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                phase_runs.c.phase, phase_runs.c.started_at, phase_runs.c.finished_at
            ).order_by(phase_runs.c.phase, phase_runs.c.started_at)
        ).all()
    overlaps = 0
    for _, runs in itertools.groupby(rows, key=lambda row: row.phase):
        for earlier, later in itertools.pairwise(runs):
            if earlier.finished_at is None or earlier.finished_at > later.started_at:
                overlaps += 1
    return overlaps


if __name__ == "__main__":
    main()
