"""Losing a host at default settings: how soon it is noticed, how soon every replica serves
again, and what the requests saw.

    python bench/host_loss.py [--faults kill,cut] [--replicas 6] [--rate 20] [--loopback]

For each fault a fresh fleet of three hosts (`workers.devtools.fleet`: network namespaces
as root, else 127.0.0.x addresses, where a cut is a SIGSTOP) runs at default phase and
host settings (heartbeat 2 s, lost after 10 s); a deployment of the sample model spreads
its replicas over them, and a load loop sends completions through the proxy. Then
host-1 (which also runs a Celery worker) is killed, or host-2 is cut off. Reports:
seconds from the fault to the host's `lost` (target <= 12), to every replica healthy
and published again (target <= 12 + one replica's start, the median start-to-healthy
of the replacements), failed requests (target 0 on kill), those sent more than 3 s
after the fault, and the longest time without any answer (target <= 1 s).

Uses MODELFLEET_BENCH_DATABASE_URL / MODELFLEET_BENCH_REDIS_URL (or throwaway servers)
for 127.0.0.x hosts; namespaces always use throwaway servers on their bridge.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from uuid import UUID

import requests
import sqlalchemy as sa

from workers.adapters.postgres.schema import hosts, routes, sessions
from workers.devtools import dev, namespaces, smoke
from workers.devtools.fleet import Fleet, running_fleet
from workers.devtools.processes import wait_for
from workers.devtools.traffic import Answer, LoadLoop, failures

TIMEOUT_S = 180
DETECTION_TARGET_S = 12.0
VICTIMS = {"kill": "host-1", "cut": "host-2"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", default="kill,cut")
    parser.add_argument("--replicas", type=int, default=6)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--loopback", action="store_true", help="127.0.0.x hosts even as root")
    args = parser.parse_args()
    in_namespaces = namespaces.available() and not args.loopback
    print(f"hosts: {'network namespaces' if in_namespaces else '127.0.0.x (cut = SIGSTOP)'}")
    print("| fault | detection s | capacity back s | bound s | replica start s "
          "| failed requests | failed, sent > 3 s after | longest gap s |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for fault in args.faults.split(","):
        environ = os.environ if in_namespaces else dev.isolated_environ()
        with running_fleet(3, namespaces=in_namespaces, environ=environ, fast=False) as fleet:
            print(_row(fleet, fault, args.replicas, args.rate), flush=True)


def _row(fleet: Fleet, fault: str, replicas: int, rate: float) -> str:
    victim = fleet.host(VICTIMS[fault])
    wait_for(lambda: len(_statuses(fleet)), lambda n: n == 3, timeout_s=TIMEOUT_S,
             what="three hosts")  # fmt: skip
    deployment = fleet.system.sample_deployment("bench", replicas, drain_s=3.0)
    _serving_again(fleet, deployment.id, replicas, lost="")
    url = wait_for(lambda: _endpoint(fleet, deployment.id), bool, timeout_s=TIMEOUT_S,
                   what="the endpoint")  # fmt: skip
    before = _route_ids(fleet, deployment_id=deployment.id)
    load = LoadLoop(url, rate_per_s=rate)
    with load.running():
        time.sleep(3)
        faulted_at = time.monotonic()
        victim.kill() if fault == "kill" else victim.cut()
        wait_for(lambda: _statuses(fleet).get(victim.name), lambda s: s == "lost",
                 timeout_s=TIMEOUT_S, what="the host lost")  # fmt: skip
        lost_at = time.monotonic()
        _serving_again(fleet, deployment.id, replicas, lost=victim.name)
        back_at = time.monotonic()
        time.sleep(2)
    answers = [a for a in load.snapshot() if a.sent_at >= faulted_at - 1]
    failed = failures(answers)
    late = [a for a in failed if a.sent_at > faulted_at + 3]
    start_s = _replacement_start_s(fleet, deployment.id, before)
    return (
        f"| {fault} | {lost_at - faulted_at:.1f} | {back_at - faulted_at:.1f} "
        f"| {DETECTION_TARGET_S + start_s:.1f} | {start_s:.1f} | {len(failed)} of {len(answers)} "
        f"| {len(late)} | {_longest_gap_s(answers):.2f} |"
    )


def _statuses(fleet: Fleet) -> dict[str, str]:
    with fleet.system.engine.connect() as conn:
        rows = conn.execute(sa.select(hosts.c.name, hosts.c.status))
        return {row.name: row.status for row in rows}


def _serving_again(fleet: Fleet, deployment_id: UUID, replicas: int, *, lost: str) -> None:
    """Until `replicas` routes off the lost host are healthy and published."""

    def serving() -> int:
        query = (
            sa.select(sa.func.count())
            .select_from(routes.join(sessions, routes.c.session_id == sessions.c.id))
            .where(routes.c.deployment_id == deployment_id, routes.c.status == "healthy",
                   sessions.c.placed_on != lost)
        )  # fmt: skip
        with fleet.system.engine.connect() as conn:
            healthy = int(conn.execute(query).scalar_one())
        return min(healthy, _published(fleet, deployment_id, lost))

    wait_for(serving, lambda n: n >= replicas, timeout_s=TIMEOUT_S,
             what=f"{replicas} replicas serving")  # fmt: skip


def _published(fleet: Fleet, deployment_id: UUID, lost: str) -> int:
    try:
        groups = requests.get(fleet.system.sd_url, timeout=2).json()
    except (requests.RequestException, ValueError):
        return 0
    return sum(
        1
        for group in groups
        if group["labels"].get("endpoint_id") == str(deployment_id)
        and group["labels"].get("host") != lost
    )


def _endpoint(fleet: Fleet, deployment_id: UUID) -> str:
    return smoke.deployment_url(fleet.system.engine, deployment_id) or ""


def _route_ids(fleet: Fleet, *, deployment_id: UUID) -> set[UUID]:
    query = sa.select(routes.c.id).where(routes.c.deployment_id == deployment_id)
    with fleet.system.engine.connect() as conn:
        return set(conn.execute(query).scalars())


def _replacement_start_s(fleet: Fleet, deployment_id: UUID, before: set[UUID]) -> float:
    """Median seconds from a replacement route's creation to its first healthy probe."""
    query = sa.select(
        routes.c.id, sa.func.extract("epoch", routes.c.first_healthy_at - routes.c.created_at)
    ).where(routes.c.deployment_id == deployment_id, routes.c.first_healthy_at.is_not(None))
    with fleet.system.engine.connect() as conn:
        starts = [float(s) for route_id, s in conn.execute(query) if route_id not in before]
    return statistics.median(starts) if starts else 0.0


def _longest_gap_s(answers: list[Answer]) -> float:
    """The longest time in which no request got a 200 back."""
    done = sorted(a.sent_at + a.latency_s for a in answers if a.ok)
    return max((b - a for a, b in itertools.pairwise(done)), default=0.0)


if __name__ == "__main__":
    main()
