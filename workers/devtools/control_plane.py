"""Faults of the control plane, on a running fleet under load, and what each one cost.

The control plane is PostgreSQL, beat, the workers and the prober's judgments; the data
plane (model servers, the proxy's table) must keep serving through any of their faults
(static stability). Each fault here is real: the fleet's own throwaway PostgreSQL stopped
(`pg_ctl stop`) and started, its Redis restarted empty, processes frozen with SIGSTOP, a
host agent restarted. `measure` runs one under the fleet's load loop and reports failed
requests, hosts lost, model servers killed, requests the sample models ran twice, the
longest time without an answer, and how long after the store came back every host's
heartbeat was fresh again. `tests/e2e/test_control_plane.py` and
`bench/control_plane.py` both run these.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import sqlalchemy as sa

from workers.adapters.postgres.schema import host_history, routes, sessions
from workers.devtools.fleet import Fleet
from workers.devtools.processes import process_alive, wait_for
from workers.devtools.traffic import Answer, LoadLoop, failures, served_twice

FRESH_HEARTBEAT_S = 3.0  # a heartbeat this young is fresh (they come every 2 s)
HEARD_AGAIN_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class FaultReport:
    fault: str
    sent: int
    failed: int
    hosts_lost: int
    servers_killed: int
    duplicates: int
    longest_gap_s: float
    heartbeats_fresh_after_s: float | None  # after the store came back (None: not a store)
    # Each failed request: its status (0: no answer) and when it was sent, from the fault.
    failed_at: tuple[tuple[int, float], ...] = ()

    def row(self) -> list[str]:
        after_s = self.heartbeats_fresh_after_s
        fresh = "-" if after_s is None else f"{after_s:.1f}"
        return [self.fault, f"{self.failed} of {self.sent}", str(self.hosts_lost),
                str(self.servers_killed), str(self.duplicates), f"{self.longest_gap_s:.2f}",
                fresh]  # fmt: skip


COLUMNS = ["fault", "failed", "hosts lost", "servers killed", "duplicates", "longest gap s",
           "heartbeats fresh after s"]  # fmt: skip


@contextlib.contextmanager
def postgres_stopped(fleet: Fleet, for_s: float) -> Iterator[None]:
    """PostgreSQL stopped for `for_s` (a failover, a minor upgrade), then started."""
    assert fleet.postgres is not None, "the fleet must own its stores (own_stores=True)"
    fleet.postgres.stop_server()
    time.sleep(for_s)
    fleet.postgres.start_server()
    yield


@contextlib.contextmanager
def postgres_restarted(fleet: Fleet, for_s: float) -> Iterator[None]:
    """`pg_ctl restart -m fast`: under a second without a database."""
    del for_s
    assert fleet.postgres is not None, "the fleet must own its stores (own_stores=True)"
    fleet.postgres.stop_server()
    fleet.postgres.start_server()
    yield


@contextlib.contextmanager
def redis_restarted_empty(fleet: Fleet, for_s: float) -> Iterator[None]:
    """Redis restarted on its port with nothing in it (it keeps nothing on disk)."""
    del for_s
    assert fleet.redis is not None, "the fleet must own its stores (own_stores=True)"
    fleet.redis.restart_empty()
    yield


@contextlib.contextmanager
def prober_frozen(fleet: Fleet, for_s: float) -> Iterator[None]:
    with fleet.frozen("prober"):
        time.sleep(for_s)
    yield


@contextlib.contextmanager
def controller_frozen(fleet: Fleet, for_s: float) -> Iterator[None]:
    """Beat and every Celery worker (the controller's and host-1's) frozen."""
    workers = [f"{host.name}-worker" for host in fleet.hosts if host.with_worker]
    with fleet.frozen("beat", "worker", *workers):
        time.sleep(for_s)
    yield


@contextlib.contextmanager
def runner_restarted(fleet: Fleet, for_s: float) -> Iterator[None]:
    del for_s
    fleet.host("host-2").restart_runner()
    yield


Fault = Callable[[Fleet, float], contextlib.AbstractContextManager[None]]
FAULTS: dict[str, Fault] = {
    "postgres stopped": postgres_stopped,
    "postgres restarted": postgres_restarted,
    "redis restarted empty": redis_restarted_empty,
    "prober frozen": prober_frozen,
    "beat and workers frozen": controller_frozen,
    "runner restarted": runner_restarted,
}
STORE_FAULTS = frozenset({"postgres stopped", "postgres restarted"})


def measure(
    fleet: Fleet, deployment_id: UUID, fault: str, for_s: float, *, served_dir: Path,
    settle_s: float = 10.0,
) -> FaultReport:  # fmt: skip
    """Load through the proxy for the whole run: a baseline, the fault, `settle_s` after."""
    system = fleet.system
    servers = _serving_pids(system.engine, deployment_id)
    losses_before = _host_losses(system.engine)
    load = LoadLoop(f"{system.proxy_url}/e/{deployment_id}")
    with load.running():
        time.sleep(2)
        fault_at = time.monotonic()
        with FAULTS[fault](fleet, for_s):
            back_at = time.monotonic()
        fresh_after_s = _heartbeats_fresh_after(fleet, back_at) if fault in STORE_FAULTS else None
        time.sleep(settle_s)
    answers = load.snapshot()
    return FaultReport(
        fault=f"{fault} {for_s:g} s" if for_s else fault,
        sent=len(answers),
        failed=len(failures(answers)),
        hosts_lost=_host_losses(system.engine) - losses_before,
        servers_killed=sum(1 for pid in servers if not process_alive(pid)),
        duplicates=len(served_twice(served_dir)),
        longest_gap_s=longest_gap_s(answers),
        heartbeats_fresh_after_s=fresh_after_s,
        failed_at=tuple((a.status, round(a.sent_at - fault_at, 2)) for a in failures(answers)),
    )


def longest_gap_s(answers: list[Answer]) -> float:
    """The longest time between two answers that were 200 (by when they arrived)."""
    arrived = sorted(a.sent_at + a.latency_s for a in answers if a.ok)
    return max((b - a for a, b in itertools.pairwise(arrived)), default=0.0)


def _serving_pids(engine: sa.Engine, deployment_id: UUID) -> list[int]:
    query = (
        sa.select(sessions.c.pid)
        .join(routes, routes.c.session_id == sessions.c.id)
        .where(routes.c.deployment_id == deployment_id, routes.c.status == "healthy")
    )
    with engine.connect() as conn:
        return [pid for pid in conn.execute(query).scalars() if pid is not None]


def _host_losses(engine: sa.Engine) -> int:
    query = sa.select(sa.func.count()).where(host_history.c.to_status == "lost")
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def _heartbeats_fresh_after(fleet: Fleet, back_at: float) -> float:
    """Seconds from the store's return until every host's heartbeat is fresh again."""
    query = sa.text("SELECT max(extract(epoch FROM now() - last_heartbeat_at)) FROM hosts")

    def oldest() -> float:
        try:
            with fleet.system.engine.connect() as conn:
                return float(conn.execute(query).scalar_one())
        except sa.exc.OperationalError:
            return float("inf")

    wait_for(oldest, lambda age: age < FRESH_HEARTBEAT_S, timeout_s=HEARD_AGAIN_TIMEOUT_S,
             what="every host's heartbeat fresh again")  # fmt: skip
    return time.monotonic() - back_at
