"""Rolling updates under load: time against the ideal, failed requests, time to roll back.

    python bench/rollout.py [--sizes 1,3,10] [--rate 20] [--default-health]

For each N, the reference world (every phase every second, as `modelfleet dev`
runs it) serves N replicas of the sample model; a load loop sends completions
through the dev proxy; `modelfleet deployment update --wait` rolls out a new
revision (surge 25 %, unavailable 0), then one whose process exits at start
("crash"), then one whose health path never answers ("never healthy").
Reports: seconds the good rollout took, the ideal for its strategy
(ceil(N / surge) steps, each one replica's start-to-healthy time as measured
on the first new route), failed requests during all three, seconds from the
crashing revision's first failure to its rollback, and seconds from the
never-healthy update to its rollback against the bound failure_threshold x
health budget + 15 s. The sample deployment's health budget is 7 s (5 s
initial delay, 2 probes 1 s apart); `--default-health` uses Backend.AI's
defaults instead (160 s; bound 3 x 160 + 30 s).

Uses MODELFLEET_BENCH_DATABASE_URL / MODELFLEET_BENCH_REDIS_URL, or else
throwaway servers from the PyPI wheels.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import time
import uuid

import sqlalchemy as sa

from workers.adapters.postgres.schema import deployment_history, route_history, routes
from workers.devtools import dev, smoke
from workers.devtools.processes import modelfleet, wait_for
from workers.devtools.traffic import LoadLoop, failures
from workers.domain import DeploymentInfo, HealthCheckConfig

NAME = "bench"
FAILURE_THRESHOLD = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,3,10")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--default-health", action="store_true")
    args = parser.parse_args()
    health = HealthCheckConfig(path="/health") if args.default_health else dev.DEMO_HEALTH
    print(
        "| N | rollout s | ideal s | failed requests | crash: first failure to rollback s "
        "| never healthy: update to rollback s | bound s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for size in (int(n) for n in args.sizes.split(",")):
        with dev.running_system(dev.isolated_environ()) as system:
            print(_row(system, size, args.rate, health), flush=True)


def _row(system: dev.DevSystem, size: int, rate: float, health: HealthCheckConfig) -> str:
    deployment = _serving(system, size, health)
    url = wait_for(lambda: smoke.deployment_url(system.engine, deployment.id) or "",
                   timeout_s=120, what="the endpoint URL")  # fmt: skip
    load = LoadLoop(url, rate_per_s=rate, clients=max(4, int(rate // 10)))
    with load.running():
        time.sleep(2)
        started = time.monotonic()
        _update(system, "--image", "sample-model:2")
        rollout_s = time.monotonic() - started
        time.sleep(2)
        _update(system, "--command", "python -c 'import sys; sys.exit(3)'", expect=1)
        time.sleep(2)
        sick_started = time.monotonic()
        _update(system, "--health-path", "/nowhere", expect=1)
        sick_s = time.monotonic() - sick_started
        time.sleep(2)
    ideal_s = math.ceil(size / math.ceil(size * 0.25)) * _start_to_healthy_s(system, deployment.id)
    bound_s = FAILURE_THRESHOLD * health.budget_s + (15 if health is dev.DEMO_HEALTH else 30)
    return (
        f"| {size} | {rollout_s:.1f} | {ideal_s:.1f} | {len(failures(load.snapshot()))} | "
        f"{_failure_to_rollback_s(system, deployment.id, revision=3):.1f} | {sick_s:.1f} | "
        f"{bound_s:g} |"
    )


def _serving(system: dev.DevSystem, size: int, health: HealthCheckConfig) -> DeploymentInfo:
    deployment = system.sample_deployment(
        NAME, size, drain_s=2, model=dev.SampleModel(latency_s=0.02), health=health
    )
    healthy = sa.select(sa.func.count()).where(
        routes.c.deployment_id == deployment.id, routes.c.status == "healthy"
    )
    wait_for(lambda: _scalar(system, healthy), lambda n: n == size, timeout_s=180,
             what=f"{size} healthy replicas")  # fmt: skip
    time.sleep(2)
    return deployment


def _update(system: dev.DevSystem, *args: str, expect: int = 0) -> None:
    done = subprocess.run(
        modelfleet("deployment", "update", NAME, *args, "--wait", "--timeout-s", "600"),
        env=system.env, capture_output=True, text=True, timeout=700, check=False,
    )  # fmt: skip
    if done.returncode != expect:
        raise SystemExit(f"update {args}: exit {done.returncode}: {done.stderr}")


def _start_to_healthy_s(system: dev.DevSystem, deployment_id: uuid.UUID) -> float:
    """The first route of revision 2: from its creation to its first healthy row."""
    first = (
        sa.select(
            sa.func.extract(
                "epoch", sa.func.min(route_history.c.created_at) - sa.func.min(routes.c.created_at)
            )
        )
        .join(routes, routes.c.id == route_history.c.route_id)
        .where(
            routes.c.deployment_id == deployment_id,
            routes.c.revision == 2,
            route_history.c.to_status == "healthy",
        )
        .group_by(routes.c.id)
        .order_by(sa.func.min(routes.c.created_at))
        .limit(1)
    )
    return float(_scalar(system, first))


def _failure_to_rollback_s(system: dev.DevSystem, deployment_id: uuid.UUID, revision: int) -> float:
    first_failure = (
        sa.select(sa.func.min(route_history.c.created_at))
        .join(routes, routes.c.id == route_history.c.route_id)
        .where(
            routes.c.deployment_id == deployment_id,
            routes.c.revision == revision,
            route_history.c.result == "error",
        )
        .scalar_subquery()
    )
    rolled_back = (
        sa.select(sa.func.max(deployment_history.c.created_at))
        .where(
            deployment_history.c.deployment_id == deployment_id,
            deployment_history.c.phase == "deployments.rollout",
            deployment_history.c.result == "error",
            deployment_history.c.message.contains(f"revision {revision} rolled back"),
        )
        .scalar_subquery()
    )
    return float(_scalar(system, sa.select(sa.func.extract("epoch", rolled_back - first_failure))))


def _scalar(system: dev.DevSystem, query: sa.Select[tuple[object]]) -> float:
    with system.engine.connect() as conn:
        return float(conn.execute(query).scalar_one() or 0)


if __name__ == "__main__":
    main()
