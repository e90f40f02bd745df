"""Waking a deployment at zero: how long the first request waits, step by step, against the
floor (the model server's own start time).

    python bench/cold_start.py [--wakes 10] [--startup-s 2] [--replicas 1]

The reference world at default phase intervals serves a deployment of the sample model
that loads for `--startup-s` (port open, health 503 meanwhile) and scales to zero after
2 s idle. Each round waits until no session of it runs, sends one request through the
proxy, and reads when each step happened (wall clock; PostgreSQL runs on this machine):
request sent -> wake seen (the wake's history row) -> replica provisioned (route row) ->
session running (process started) -> healthy (first passed probe) -> answered. The floor
is the sample model started by hand until its health answers 200. Reports the median of
each step and the overhead (answer - floor) p50 / p95 / max; target p95 <= 1.5 s.

Uses MODELFLEET_BENCH_DATABASE_URL / MODELFLEET_BENCH_REDIS_URL, or throwaway servers.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from uuid import UUID

import requests
import sqlalchemy as sa

from workers.adapters.postgres.schema import deployment_history, deployments, routes, sessions
from workers.devtools import dev, smoke
from workers.devtools.processes import wait_for
from workers.devtools.throwaway_servers import free_port
from workers.devtools.traffic import percentile
from workers.phase_names import PhaseName

TIMEOUT_S = 120
STEPS = ("wake seen", "provisioned", "session running", "healthy", "answered")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wakes", type=int, default=10)
    parser.add_argument("--startup-s", type=float, default=2.0)
    parser.add_argument("--replicas", type=int, default=1)
    args = parser.parse_args()
    floor_s = _floor_s(args.startup_s)
    rounds = []
    with dev.running_system(dev.isolated_environ(), fast=False) as system:
        deployment = system.sample_deployment(
            "cold", args.replicas, drain_s=0.0, scale_to_zero_after_s=2,
            model=dev.SampleModel(latency_s=0.0, startup_s=args.startup_s),
        )  # fmt: skip
        url = wait_for(lambda: smoke.deployment_url(system.engine, deployment.id) or "", bool,
                       timeout_s=TIMEOUT_S, what="the endpoint")  # fmt: skip
        for _ in range(args.wakes):
            _at_zero(system, deployment.id)
            rounds.append(_wake(system, deployment.id, url))
            print(" ".join(f"{name} {seconds:.2f}" for name, seconds in rounds[-1].items()),
                  flush=True)  # fmt: skip
    _report(rounds, floor_s, args)


def _wake(system: dev.DevSystem, deployment_id: UUID, url: str) -> dict[str, float]:
    before = time.time()
    answer = requests.post(f"{url}/v1/completions", json={"prompt": "wake"}, timeout=TIMEOUT_S)
    answered = time.time()
    if answer.status_code != 200:
        raise SystemExit(f"the waking request got {answer.status_code}: {answer.text}")
    seen = _scalar(system, sa.select(sa.func.min(deployment_history.c.updated_at)).where(
        deployment_history.c.deployment_id == deployment_id,
        deployment_history.c.phase == PhaseName.WAKE.value,
        deployment_history.c.updated_at >= sa.func.to_timestamp(before)))  # fmt: skip
    new = sa.and_(routes.c.deployment_id == deployment_id,
                  routes.c.created_at >= sa.func.to_timestamp(before))  # fmt: skip
    provisioned = _scalar(system, sa.select(sa.func.min(routes.c.created_at)).where(new))
    running = _scalar(system, sa.select(sa.func.min(sessions.c.started_at))
                      .join(routes, routes.c.id == sessions.c.route_id).where(new))  # fmt: skip
    healthy = _scalar(system, sa.select(sa.func.min(routes.c.first_healthy_at)).where(new))
    return {name: at - before
            for name, at in zip(STEPS, (seen, provisioned, running, healthy, answered),
                                strict=True)}  # fmt: skip


def _at_zero(system: dev.DevSystem, deployment_id: UUID) -> None:
    live = sa.select(sa.func.count()).select_from(
        sessions.join(routes, routes.c.id == sessions.c.route_id)
    ).where(routes.c.deployment_id == deployment_id,
            sessions.c.status.not_in(["TERMINATED", "ERROR", "CANCELLED", "LOST"]))  # fmt: skip
    zeroed = sa.select(deployments.c.zeroed_from).where(deployments.c.id == deployment_id)

    def at_zero() -> bool:
        with system.engine.connect() as conn:
            return bool(conn.execute(live).scalar_one() == 0
                        and conn.execute(zeroed).scalar_one() is not None)  # fmt: skip

    wait_for(at_zero, timeout_s=TIMEOUT_S, what="the deployment at zero")


def _scalar(system: dev.DevSystem, query: sa.Select[tuple[object]]) -> float:
    with system.engine.connect() as conn:
        value = conn.execute(query).scalar_one()
    return float(value.timestamp()) if value is not None else float("nan")


def _floor_s(startup_s: float) -> float:
    """The sample model started by hand: seconds until its health answers 200 (median of 3)."""
    times = []
    for _ in range(3):
        port = free_port()
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "workers.devtools.model_server", f"--port={port}",
             f"--startup-s={startup_s}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_for(lambda p=port: _healthy(p), timeout_s=60, what="the model healthy")  # type: ignore[misc]
            times.append(time.monotonic() - started)
        finally:
            process.kill()
            process.wait()
    return statistics.median(times)


def _healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _report(rounds: list[dict[str, float]], floor_s: float, args: argparse.Namespace) -> None:
    overheads = [r["answered"] - floor_s for r in rounds]
    print(f"\n{args.wakes} wakes, {args.replicas} replica(s), model startup {args.startup_s:g} s, "
          f"floor {floor_s:.2f} s (the model started by hand until healthy)\n")  # fmt: skip
    print("| step | median s from the request |")
    print("|---|---:|")
    for name in STEPS:
        print(f"| {name} | {statistics.median(r[name] for r in rounds):.2f} |")
    print(
        f"\noverhead over the floor: p50 {statistics.median(overheads):.2f} s, "
        f"p95 {percentile(overheads, 0.95):.2f} s, max {max(overheads):.2f} s"
    )


if __name__ == "__main__":
    main()
