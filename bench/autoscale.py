"""The traffic autoscaler under closed-loop clients, against the step rules it replaces.

    python bench/autoscale.py [--latency-s 1] [--target 4] [--steady-s 600]

A dev system of its own (default phase intervals), the sample model answering each
request in `--latency-s`, closed-loop clients through the proxy (each sends its next
request when its last is answered). With `--autoscale concurrency --target T`:
1. 4 clients, then a step to 32: seconds until the deployment asks for and has the
   replicas it needs (ceil(32 / T) healthy; goal: one replica start + 4 s, the start
   measured on the same routes: row made to first passed probe), and requests that
   waited more than 2 s beyond their own latency;
2. `--steady-s` of 32 clients +-10 % (the count redrawn every 10 s): changes of
   direction of the asked-for count (goal: 0);
3. the step back to 4: seconds until the replicas are released (after the stable
   window), down to the count that keeps 4 clients 10 % under the target (the
   autoscaler's down band: 2 at a target of 4);
4. the same step with a step rule instead (`model_requests_in_flight` above T per
   replica, +1, 300 s cooldown: the old autoscaler): replicas after 120 s;
5. from zero (`--min-replicas 0`): 32 clients at a deployment at zero: the count the
   one wake restores, and seconds until that many serve.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import random
import statistics
import subprocess
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from workers.adapters.postgres.schema import deployments, routes
from workers.devtools import dev
from workers.devtools.processes import modelfleet, wait_for
from workers.devtools.traffic import Answer, LoadLoop, failures
from workers.policies.traffic_autoscaler import DOWN_BAND

CLOSED_LOOP = 1e6
LOW, HIGH = 4, 32


class Clients:
    """A pool of closed-loop clients whose count can change while they run."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._running: list[tuple[LoadLoop, contextlib.ExitStack]] = []
        self.answers: list[Answer] = []

    def resize(self, count: int) -> None:
        while len(self._running) < count:
            loop, stack = LoadLoop(self._url, CLOSED_LOOP, 1, 60), contextlib.ExitStack()
            stack.enter_context(loop.running())
            self._running.append((loop, stack))
        while len(self._running) > count:
            loop, stack = self._running.pop()
            stack.close()
            self.answers += loop.snapshot()

    @contextlib.contextmanager
    def running(self, count: int) -> Iterator[Clients]:
        self.resize(count)
        try:
            yield self
        finally:
            self.resize(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-s", type=float, default=1.0)
    parser.add_argument("--target", type=float, default=4.0)
    parser.add_argument("--steady-s", type=float, default=600.0)
    args = parser.parse_args()
    needed = math.ceil(HIGH / args.target)
    with dev.running_system(dev.isolated_environ(), fast=False) as system:
        rows = [_traffic(system, args, needed), _rules(system, args, needed),
                _from_zero(system, args, needed)]  # fmt: skip
    print("| run | result |")
    print("|---|---|")
    for name, said in (pair for found in rows for pair in found):
        print(f"| {name} | {said} |")


def _traffic(system: dev.DevSystem, args: argparse.Namespace,
             needed: int) -> list[tuple[str, str]]:  # fmt: skip
    deployment = _deployment(system, "traffic", args, "--autoscale", "concurrency", "--target",
                             f"{args.target:g}", "--max-replicas", str(needed + 4))  # fmt: skip
    clients, said = Clients(_url(system, deployment)), []
    with clients.running(LOW):
        time.sleep(30)
        stepped, stepped_at = time.monotonic(), _db_now(system)
        clients.resize(HIGH)
        wait_for(lambda: _asked(system, deployment), lambda n: n >= needed, timeout_s=600,
                 what=f"{needed} asked for")  # fmt: skip
        asked = time.monotonic() - stepped
        _healthy(system, deployment, needed)
        said.append((f"step {LOW} -> {HIGH}: seconds until {needed} asked for / serve "
                     "(a replica's start then, median)",
                     f"{asked:.1f} / {time.monotonic() - stepped:.1f} "
                     f"({_start_s(system, deployment, stepped_at):.1f})"))  # fmt: skip
        rng, counts, end = random.Random(7), [], time.monotonic() + args.steady_s
        while time.monotonic() < end:
            clients.resize(round(HIGH * rng.uniform(0.9, 1.1)))
            for _ in range(10):
                counts.append(_asked(system, deployment))
                time.sleep(1)
        said.append((f"{args.steady_s:g} s at {HIGH} +-10 %: changes of direction",
                     str(_turns(counts))))  # fmt: skip
        down = time.monotonic()
        clients.resize(LOW)
        settled = math.ceil(LOW / (args.target * (1 - DOWN_BAND)))
        wait_for(lambda: _asked(system, deployment), lambda n: n <= settled, timeout_s=600,
                 what="released")  # fmt: skip
        said.append((f"step {HIGH} -> {LOW}: seconds until {settled} replicas",
                     f"{time.monotonic() - down:.1f}"))  # fmt: skip
    waited = [a for a in clients.answers if a.ok and a.latency_s > args.latency_s + 2]
    said.append(("requests that waited over 2 s", f"{len(waited)} of {len(clients.answers)} "
                 f"({len(failures(clients.answers))} failed)"))  # fmt: skip
    return said


def _rules(system: dev.DevSystem, args: argparse.Namespace,
           needed: int) -> list[tuple[str, str]]:  # fmt: skip
    deployment = _deployment(system, "rules", args)
    _cli(system, "autoscaling-rule", "add", "rules", "--metric-source", "session", "--metric",
         "model_requests_in_flight", "--threshold", f"{args.target:g}", "--comparator", "gt",
         "--step", "1", "--cooldown-s", "300", "--max-replicas", str(needed))  # fmt: skip
    clients = Clients(_url(system, deployment))
    with clients.running(HIGH):
        time.sleep(120)
        serving = _serving(system, deployment)
    return [(f"step rule (the old autoscaler): replicas serving 120 s after {HIGH} clients",
             f"{serving} of {needed}")]  # fmt: skip


def _from_zero(system: dev.DevSystem, args: argparse.Namespace,
               needed: int) -> list[tuple[str, str]]:  # fmt: skip
    deployment = _deployment(system, "zero", args, "--autoscale", "concurrency", "--target",
                             f"{args.target:g}", "--min-replicas", "0", "--max-replicas",
                             str(needed + 4), "--stable-window-s", "20")  # fmt: skip
    wait_for(lambda: _row(system, deployment)["zeroed_from"], lambda z: z is not None,
             timeout_s=300, what="at zero")  # fmt: skip
    clients = Clients(_url(system, deployment))
    with clients.running(HIGH):
        started = time.monotonic()
        woken = wait_for(lambda: _row(system, deployment)["replica_count"], lambda n: n > 0,
                         timeout_s=120, what="woken")  # fmt: skip
        _healthy(system, deployment, woken)
        took = time.monotonic() - started
    failed = len(failures(clients.answers))
    return [(f"from zero, {HIGH} clients: one wake to", f"{woken} replicas (needed {needed}), "
             f"all serving after {took:.1f} s; {failed} failed")]  # fmt: skip


def _deployment(system: dev.DevSystem, name: str, args: argparse.Namespace,
                *autoscale: str) -> UUID:  # fmt: skip
    created = system.sample_deployment(name, 1, drain_s=2.0,
                                       model=dev.SampleModel(latency_s=args.latency_s))  # fmt: skip
    _healthy(system, created.id, 1)
    if autoscale:
        _cli(system, "deployment", "set", name, *autoscale)
    return created.id


def _cli(system: dev.DevSystem, *argv: str) -> None:
    done = subprocess.run(modelfleet(*argv), env=system.env, capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr


def _url(system: dev.DevSystem, deployment_id: UUID) -> str:
    return f"{system.proxy_url}/e/{deployment_id}"


def _row(system: dev.DevSystem, deployment_id: UUID) -> sa.RowMapping:
    with system.engine.connect() as conn:
        return conn.execute(sa.select(deployments).where(deployments.c.id == deployment_id)
                            ).mappings().one()  # fmt: skip


def _asked(system: dev.DevSystem, deployment_id: UUID) -> int:
    row = _row(system, deployment_id)
    return int(row["desired_replica_count"] or row["replica_count"])


def _serving(system: dev.DevSystem, deployment_id: UUID) -> int:
    with system.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(
                    routes.c.deployment_id == deployment_id, routes.c.status == "healthy"
                )
            ).scalar_one()
        )


def _db_now(system: dev.DevSystem) -> Any:
    with system.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.now())).scalar_one()


def _start_s(system: dev.DevSystem, deployment_id: UUID, since: Any) -> float:
    """Median seconds from a route's row to its first passed probe, for routes made since."""
    took = sa.func.extract("epoch", routes.c.first_healthy_at - routes.c.created_at)
    query = sa.select(took).where(routes.c.deployment_id == deployment_id,
                                  routes.c.created_at >= since,
                                  routes.c.first_healthy_at.is_not(None))  # fmt: skip
    with system.engine.connect() as conn:
        return float(statistics.median(conn.execute(query).scalars()))


def _healthy(system: dev.DevSystem, deployment_id: UUID, count: int) -> None:
    wait_for(lambda: _serving(system, deployment_id), lambda n: n >= count, timeout_s=600,
             what=f"{count} serving")  # fmt: skip


def _turns(counts: list[int]) -> int:
    """How often the asked-for count changed direction."""
    deltas = [b - a for a, b in itertools.pairwise(counts) if b != a]
    return sum(1 for a, b in itertools.pairwise(deltas) if (a > 0) != (b > 0))


if __name__ == "__main__":
    main()
