"""Rollouts under load: time against the ideal, failed requests, time to roll back.

    python bench/rollout.py [--sizes 1,3,10] [--rate 20] [--default-health] [--no-canary]

For each N, the reference world (every phase every second, as `modelfleet dev`
runs it) serves N replicas of the sample model; a load loop sends completions
through the proxy; `modelfleet deployment update --wait` rolls out a new
revision (surge 25 %, unavailable 0), then one whose process exits at start
("crash"), one whose health path never answers ("never healthy") and one whose
every answer is 500 with a passing health check ("5xx"); the last three roll
back by themselves. Then a canary of a good revision (steps 10,50, 10 s each)
and one of a revision answering half its requests 500.
Reports: seconds the good rollout took, the ideal for its strategy
(ceil(N / surge) steps, each one replica's start-to-healthy time as measured
on the first new route), failed requests during the good rollout, seconds from
each bad revision's first failure (a failed session or route, or a failed
request) to its rollback, and the never-healthy update's seconds to rollback
against the bound failure_threshold x health budget + 15 s. The sample
deployment's health budget is 7 s (5 s initial delay, 2 probes 1 s apart);
`--default-health` uses Backend.AI's defaults instead (160 s; bound 3 x 160 +
30 s). Canary rows: seconds the good canary took against its 20 s of steps,
its failed requests, and the bad canary's failed requests and seconds from its
first failed request to the rollback.

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
from workers.devtools.traffic import Answer, LoadLoop, between, failures
from workers.domain import DeploymentInfo, HealthCheckConfig

NAME = "bench"
FAILURE_THRESHOLD = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,3,10")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--default-health", action="store_true")
    parser.add_argument("--no-canary", action="store_true")
    args = parser.parse_args()
    health = HealthCheckConfig(path="/health") if args.default_health else dev.DEMO_HEALTH
    rows: list[str] = []
    canaries: list[str] = []
    for size in (int(n) for n in args.sizes.split(",")):
        with dev.running_system(dev.isolated_environ()) as system:
            deployment, load = _serving(system, size, health), None
            load = _load(system, deployment.id, args.rate)
            with load.running():
                rows.append(_row(system, deployment.id, size, load, health))
                print(rows[-1], flush=True)
                if not args.no_canary:
                    canaries.append(_canary_row(system, deployment.id, size, load))
                    print(canaries[-1], flush=True)
    print("\n| N | rollout s | ideal s | failed requests | crash: first failure to rollback s "
          "| never healthy: update to rollback s | bound s | 5xx: first failure to rollback s "
          "| 5xx: failed requests |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    if canaries:
        print(
            "\n| N | good canary (10,50 @ 10 s) s | its failed requests "
            "| bad canary (50 % 5xx): failed requests | first failure to rollback s |"
        )
        print("|---:|---:|---:|---:|---:|")
        print("\n".join(canaries))


def _load(system: dev.DevSystem, deployment_id: uuid.UUID, rate: float) -> LoadLoop:
    url = wait_for(lambda: smoke.deployment_url(system.engine, deployment_id) or "",
                   timeout_s=120, what="the endpoint URL")  # fmt: skip
    return LoadLoop(url, rate_per_s=rate, clients=max(4, int(rate // 10)))


def _row(
    system: dev.DevSystem, deployment_id: uuid.UUID, size: int, load: LoadLoop,
    health: HealthCheckConfig,
) -> str:  # fmt: skip
    time.sleep(2)
    started = time.monotonic()
    _update(system, "--image", "sample-model:2")
    rollout_s = time.monotonic() - started
    good_failed = len(failures(between(load.snapshot(), started - 1, time.monotonic())))
    time.sleep(2)
    _update(system, "--command", "python -c 'import sys; sys.exit(3)'", expect=1)
    time.sleep(2)
    sick_started = time.monotonic()
    _update(system, "--health-path", "/nowhere", expect=1)
    sick_s = time.monotonic() - sick_started
    time.sleep(2)
    erring_started = time.monotonic()
    _update(system, "--env", "MODEL_ERROR_RATE=1", expect=1)
    erring = failures(between(load.snapshot(), erring_started, time.monotonic()))
    time.sleep(2)
    ideal_s = math.ceil(size / math.ceil(size * 0.25)) * _start_to_healthy_s(system, deployment_id)
    bound_s = FAILURE_THRESHOLD * health.budget_s + (15 if health is dev.DEMO_HEALTH else 30)
    return (
        f"| {size} | {rollout_s:.1f} | {ideal_s:.1f} | {good_failed} | "
        f"{_failure_to_rollback_s(system, deployment_id, revision=3):.1f} | {sick_s:.1f} | "
        f"{bound_s:g} | {_request_to_rollback_s(system, deployment_id, 5, erring):.1f} | "
        f"{len(erring)} |"
    )


def _canary_row(system: dev.DevSystem, deployment_id: uuid.UUID, size: int, load: LoadLoop) -> str:
    canary = ("--strategy", "canary", "--canary-steps", "10,50", "--canary-interval-s", "10")
    started = time.monotonic()
    _update(system, "--env", "MODEL_VARIANT=canary", *canary)
    good_s = time.monotonic() - started
    good_failed = failures(between(load.snapshot(), started, time.monotonic()))
    time.sleep(2)
    bad_started = time.monotonic()
    _update(system, "--env", "MODEL_ERROR_RATE=0.5", *canary, expect=1)
    bad = failures(between(load.snapshot(), bad_started, time.monotonic()))
    time.sleep(2)
    return (
        f"| {size} | {good_s:.1f} | {len(good_failed)} | {len(bad)} | "
        f"{_request_to_rollback_s(system, deployment_id, 7, bad):.1f} |"
    )


def _request_to_rollback_s(
    system: dev.DevSystem, deployment_id: uuid.UUID, revision: int, failed: list[Answer]
) -> float:
    """From the revision's first failed request (wall clock) to its rollback's history row."""
    if not failed:
        return float("nan")
    first_s = time.time() - (time.monotonic() - min(a.sent_at for a in failed))
    rolled_back = sa.select(
        sa.func.extract("epoch", sa.func.max(deployment_history.c.created_at))
    ).where(
        deployment_history.c.deployment_id == deployment_id,
        deployment_history.c.phase == "deployments.rollout",
        deployment_history.c.result == "error",
        deployment_history.c.message.contains(f"revision {revision} rolled back"),
    )
    return _scalar(system, rolled_back) - first_s


def _serving(system: dev.DevSystem, size: int, health: HealthCheckConfig) -> DeploymentInfo:
    deployment = system.sample_deployment(
        NAME, size, drain_s=2, model=dev.SampleModel(latency_s=0.02), health=health
    )
    healthy = sa.select(sa.func.count()).where(
        routes.c.deployment_id == deployment.id, routes.c.status == "healthy"
    )
    wait_for(lambda: _scalar(system, healthy), lambda n: n == size, timeout_s=180,
             what=f"{size} healthy replicas")  # fmt: skip
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
