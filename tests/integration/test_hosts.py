"""Hosts on the real PostgreSQL: the controller places sessions, declares a silent host lost
and moves a draining host's replicas; the agent registers, fences and claims its own; the
operator's commands."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa

from tests.factories import make_deployment, make_route
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.scheduler import SessionTableScheduler
from workers.adapters.postgres.schema import host_history, hosts, route_history, routes, sessions
from workers.composition import Adapters
from workers.domain import DeploymentInfo, DeploymentLifecycle, RouteStatus, SessionSpec
from workers.errors import NoHostAvailable
from workers.standalone.runner import SessionRunner


def _register(engine: sa.Engine, name: str, *, slots: int = 0, status: str = "ready",
              silent_s: float = 0) -> None:  # fmt: skip
    heartbeat = sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, silent_s)
    with engine.begin() as conn:
        conn.execute(hosts.insert().values(id=uuid4(), name=name, address=f"10.9.0.{name[-1]}",
                                           slots=slots, status=status,
                                           last_heartbeat_at=heartbeat))  # fmt: skip


def _spec(deployment: DeploymentInfo, route_id: UUID) -> SessionSpec:
    return SessionSpec(route_id, deployment.id, "s", "sg1", "img", "custom", "/m", None, {}, {})


def _serving(catalog: Catalog, replicas: int = 1, **fields: Any) -> DeploymentInfo:
    catalog.create_scaling_group("sg1")
    return catalog.create_deployment(make_deployment(
        replica_count=replicas, lifecycle=DeploymentLifecycle.READY, **fields))  # fmt: skip


def _place(catalog: Catalog, scheduler: SessionTableScheduler, deployment: DeploymentInfo,
           count: int) -> list[str | None]:  # fmt: skip
    placed = []
    for _ in range(count):
        route = make_route(deployment)
        catalog.add_routes([route])
        session_id = scheduler.enqueue_session(_spec(deployment, route.id))
        with scheduler._engine.connect() as conn:  # what the controller chose
            placed.append(conn.execute(
                sa.select(sessions.c.placed_on).where(sessions.c.id == session_id)
            ).scalar_one())  # fmt: skip
    return placed


def test_sessions_spread_over_ready_hosts_two_two_two(
    engine: sa.Engine, catalog: Catalog, scheduler: SessionTableScheduler
) -> None:
    for name in ("h1", "h2", "h3"):
        _register(engine, name)
    _register(engine, "h4", status="cordoned")
    deployment = _serving(catalog, replicas=6)
    assert Counter(_place(catalog, scheduler, deployment, 6)) == {"h1": 2, "h2": 2, "h3": 2}


def test_no_room_on_any_host_is_a_reason_and_without_hosts_sessions_are_unplaced(
    engine: sa.Engine, catalog: Catalog, scheduler: SessionTableScheduler
) -> None:
    deployment = _serving(catalog)
    assert _place(catalog, scheduler, deployment, 1) == [None]  # no host registered at all
    _register(engine, "h1", slots=1)
    _register(engine, "h2", slots=1)
    assert _place(catalog, scheduler, deployment, 2) == ["h1", "h2"]
    with pytest.raises(NoHostAvailable, match="no host with a free slot: 2 hosts, all full"):
        _place(catalog, scheduler, deployment, 1)


def test_a_silent_host_is_lost_its_sessions_given_up_and_routes_out_at_once(
    engine: sa.Engine, catalog: Catalog, run_phase: Callable[[str], object]
) -> None:
    _register(engine, "h1", silent_s=20)
    _register(engine, "h2")
    deployment = _serving(catalog, replicas=2)
    on_h1, on_h2 = _route_on(engine, catalog, deployment, "h1"), _route_on(
        engine, catalog, deployment, "h2")  # fmt: skip
    run_phase("hosts.check")
    with engine.connect() as conn:
        statuses = dict(conn.execute(sa.select(hosts.c.name, hosts.c.status)).all())
        lost_route = conn.execute(sa.select(routes.c.status).where(routes.c.id == on_h1)).scalar()
        session = conn.execute(sa.select(sessions.c.status).where(sessions.c.route_id == on_h1))
        why = conn.execute(sa.select(route_history.c.message).where(
            route_history.c.route_id == on_h1)).scalar()  # fmt: skip
        told = conn.execute(sa.select(host_history.c.message)).scalar()
    assert statuses == {"h1": "lost", "h2": "ready"}
    assert (lost_route, session.scalar()) == ("terminated", "LOST")
    assert str(why).startswith("host h1 lost (no heartbeat for 2")  # about 20 s, by the db clock
    assert str(told).startswith("HostLost: host h1 lost")
    assert _status(engine, on_h2) == "healthy"


def test_routes_on_a_draining_host_do_not_count_and_leave_once_replaced(
    engine: sa.Engine, catalog: Catalog, adapters: Adapters, run_phase: Callable[[str], object]
) -> None:
    _register(engine, "h1", status="draining")
    _register(engine, "h2")
    deployment = _serving(catalog, replicas=1)
    old = _route_on(engine, catalog, deployment, "h1")
    [active] = adapters.repository.fetch_active_routes_by_endpoint_ids({deployment.id})[
        deployment.id
    ]
    assert active.host_leaving
    result = adapters.deployment_executor().check_ready_deployments_that_need_scaling([deployment])
    assert [e.error_code for e in result.errors] == ["replica_count_mismatch"]  # start one
    run_phase("hosts.drain")
    assert _status(engine, old) == "healthy"  # no replacement serves yet: it stays
    _route_on(engine, catalog, deployment, "h2")  # the replacement, healthy on h2
    run_phase("hosts.drain")
    assert _status(engine, old) == "draining"  # out of traffic first; drained, then stopped


def test_an_agent_registers_claims_its_own_and_fences_a_host_that_was_lost(
    engine: sa.Engine, catalog: Catalog
) -> None:
    deployment = _serving(catalog)
    runner = SessionRunner(engine=engine, name="h1", host="10.9.0.1", slots=3)
    runner.register()
    other = _pending(engine, catalog, deployment, placed_on="h2")
    mine = _pending(engine, catalog, deployment, placed_on="h1")
    unplaced = _pending(engine, catalog, deployment, placed_on=None)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                               start_new_session=True)  # fmt: skip
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.select(hosts.c.slots)).scalar_one() == 3
            conn.execute(hosts.update().values(status="lost"))  # the controller lost it
            conn.execute(sessions.update().where(sessions.c.id == mine).values(
                status="LOST", runner="h1", pid=sleeper.pid))  # fmt: skip
        runner.tick()  # fenced: it stops what was given up, and takes nothing new
        assert _session_status(engine, unplaced) == "PENDING"
        sleeper.wait(timeout=10)
        runner.tick()  # none runs any more: ready, and claims what is its own
        with engine.connect() as conn:
            assert conn.execute(sa.select(hosts.c.status)).scalar_one() == "ready"
        assert _session_status(engine, unplaced) == "RUNNING"
        assert _session_status(engine, other) == "PENDING"  # placed on another host
        assert _session_status(engine, mine) == "LOST"
    finally:
        sleeper.kill()
        sleeper.wait()
        _stop_session_processes(engine)
        for child in runner._children.values():  # the processes it started
            child.wait(timeout=10)


@pytest.mark.parametrize(
    ("argv", "code", "said"),
    [
        (["host", "cordon", "nowhere"], 2, "NAME: no host named 'nowhere'"),
        (["host", "cordon", "h3"], 2, "NAME: host h3 is lost"),
        (["host", "uncordon", "h3"], 2, "NAME: host h3 is lost"),
        (["runner", "--slots", "-1"], 2, "--slots"),
        (["runner", "--name", "Bad Name"], 2, "--name"),
    ],
)
def test_bad_host_input_is_one_line_and_changes_nothing(
    engine: sa.Engine, run: Any, argv: list[str], code: int, said: str
) -> None:
    _register(engine, "h3", status="lost")
    result = run(*argv)
    assert result.exit_code == code
    assert said in result.output
    with engine.connect() as conn:
        assert conn.execute(sa.select(hosts.c.status)).scalar_one() == "lost"


def test_host_list_cordon_uncordon_and_drain(engine: sa.Engine, run: Any) -> None:
    _register(engine, "h1", slots=4)
    _register(engine, "h2")
    assert run("host", "cordon", "h1").output.strip() == "host h1 is cordoned"
    listed = {h["name"]: h for h in json.loads(run("host", "list", "--json").output)}
    assert set(listed["h1"]) == {"name", "address", "status", "sessions", "slots",
                                 "heartbeat_age_s", "registered_at", "changed_at"}  # fmt: skip
    assert (listed["h1"]["status"], listed["h1"]["slots"], listed["h1"]["sessions"]) == (
        "cordoned", 4, 0)  # fmt: skip
    assert json.loads(run("host", "drain", "h2", "--json").output) == {
        "host": "h2", "status": "draining"}  # fmt: skip
    drained = json.loads(run("host", "drain", "h2", "--wait", "--json").output)
    assert drained == {"host": "h2", "status": "draining", "sessions": 0}
    assert run("host", "uncordon", "h2").exit_code == 0
    table = run("host", "list").output
    assert (table.split("h1")[1].split()[2], table.split("h2")[1].split()[2]) == ("0/4", "0/-")


def _route_on(engine: sa.Engine, catalog: Catalog, deployment: DeploymentInfo, host: str) -> UUID:
    """A healthy route whose running session is on `host`."""
    route = make_route(deployment, status=RouteStatus.HEALTHY, ever_healthy=True)
    catalog.add_routes([route])
    session_id = uuid4()
    with engine.begin() as conn:
        conn.execute(sessions.insert().values(
            id=session_id, route_id=route.id, name="s", spec={}, status="RUNNING",
            host="10.9.0.9", port=1, runner=host, placed_on=host))  # fmt: skip
        conn.execute(routes.update().where(routes.c.id == route.id).values(session_id=session_id))
    return route.id


def _pending(engine: sa.Engine, catalog: Catalog, deployment: DeploymentInfo,
             placed_on: str | None) -> UUID:  # fmt: skip
    route = make_route(deployment)
    catalog.add_routes([route])
    session_id = uuid4()
    command = f"{sys.executable} -c 'import time; time.sleep(60)'"
    with engine.begin() as conn:
        conn.execute(sessions.insert().values(
            id=session_id, route_id=route.id, name="s", status="PENDING", placed_on=placed_on,
            spec={"startup_command": command, "environ": {}}))  # fmt: skip
    return session_id


def _status(engine: sa.Engine, route_id: UUID) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.select(routes.c.status).where(routes.c.id == route_id)).scalar())


def _session_status(engine: sa.Engine, session_id: UUID) -> str:
    with engine.connect() as conn:
        found = conn.execute(sa.select(sessions.c.status).where(sessions.c.id == session_id))
        return str(found.scalar())


def _stop_session_processes(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        pids = conn.execute(sa.select(sessions.c.pid).where(sessions.c.pid.is_not(None)))
        for pid in pids.scalars():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
