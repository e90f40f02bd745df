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
from workers.adapters.postgres.schema import (
    controller_watch,
    deployments,
    host_history,
    hosts,
    route_history,
    routes,
    sessions,
)
from workers.composition import Adapters
from workers.domain import DeploymentInfo, DeploymentLifecycle, RouteStatus, SessionSpec
from workers.errors import NoHostAvailable
from workers.standalone.process_identity import identify
from workers.standalone.runner import SessionRunner


def _register(engine: sa.Engine, name: str, *, slots: int = 0, status: str = "ready",
              silent_s: float = 0, intent: str | None = None) -> None:  # fmt: skip
    heartbeat = sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, silent_s)
    intent = intent or (status if status in {"ready", "cordoned", "draining"} else "ready")
    with engine.begin() as conn:
        conn.execute(hosts.insert().values(id=uuid4(), name=name, address=f"10.9.0.{name[-1]}",
                                           slots=slots, status=status, intent=intent,
                                           last_heartbeat_at=heartbeat))  # fmt: skip


def _watching(engine: sa.Engine, for_s: float = 3600, given_up_s_ago: float | None = None) -> None:
    """The controller has been looking at the hosts without a gap for `for_s`."""
    ago = sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, for_s)
    given_up = None if given_up_s_ago is None else sa.func.now() - sa.func.make_interval(
        0, 0, 0, 0, 0, 0, given_up_s_ago)  # fmt: skip
    with engine.begin() as conn:
        conn.execute(controller_watch.delete())
        conn.execute(controller_watch.insert().values(
            name="hosts", last_seen_at=sa.func.now(), seeing_since=ago,
            last_given_up_at=given_up))  # fmt: skip


def _statuses(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(hosts.c.name, hosts.c.status)).all())


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
    _watching(engine)
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
            identity = identify(sleeper.pid)
            assert identity is not None
            given_up = {"status": "LOST", "runner": "h1", "pid": sleeper.pid,
                        "process_started_ticks": identity.started_ticks,
                        "boot_id": identity.boot_id}  # fmt: skip
            conn.execute(sessions.update().where(sessions.c.id == mine).values(**given_up))
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
        (["host", "cordon", "h3"], 2, "NAME: host h3 is draining; only a host that is"),
        (["runner", "--slots", "-1"], 2, "--slots"),
        (["runner", "--name", "Bad Name"], 2, "--name"),
    ],
)
def test_bad_host_input_is_one_line_and_changes_nothing(
    engine: sa.Engine, run: Any, argv: list[str], code: int, said: str
) -> None:
    _register(engine, "h3", status="lost", intent="draining")
    result = run(*argv)
    assert result.exit_code == code
    assert said in result.output
    with engine.connect() as conn:
        assert conn.execute(sa.select(hosts.c.status, hosts.c.intent)).one() == ("lost", "draining")


def test_host_list_cordon_uncordon_and_drain(engine: sa.Engine, run: Any) -> None:
    _register(engine, "h1", slots=4)
    _register(engine, "h2")
    assert run("host", "cordon", "h1").output.strip() == "host h1 is cordoned"
    listed = {h["name"]: h for h in json.loads(run("host", "list", "--json").output)}
    assert set(listed["h1"]) == {"name", "address", "status", "intent", "condition", "sessions",
                                 "slots", "gpus_used", "gpus_total", "cpus", "memory_gib",
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


def test_a_lost_host_keeps_what_its_operator_asks_for_when_it_is_back(
    engine: sa.Engine, run: Any
) -> None:
    _register(engine, "h3", status="lost")
    said = run("host", "cordon", "h3")
    assert (said.exit_code, said.output.strip()) == (
        0, "host h3 is lost; it will be cordoned when it is back")  # fmt: skip
    with engine.connect() as conn:
        assert conn.execute(sa.select(hosts.c.status, hosts.c.intent)).one() == ("lost", "cordoned")
    runner = SessionRunner(engine=engine, name="h3")
    runner.tick()  # nothing of it runs: fenced at once, and back as asked
    assert _statuses(engine) == {"h3": "cordoned"}


def test_a_cordoned_host_lost_and_back_is_cordoned_not_ready(
    engine: sa.Engine, catalog: Catalog, run: Any, run_phase: Callable[[str], object]
) -> None:
    _register(engine, "h1", status="cordoned", silent_s=30)
    _register(engine, "h2")
    _register(engine, "h3")
    _watching(engine)
    run_phase("hosts.check")
    assert _statuses(engine) == {"h1": "lost", "h2": "ready", "h3": "ready"}
    SessionRunner(engine=engine, name="h1").tick()
    assert _statuses(engine)["h1"] == "cordoned"
    with engine.connect() as conn:
        last = conn.execute(
            sa.select(host_history.c.phase, host_history.c.to_status)
            .order_by(host_history.c.id.desc()).limit(1)
        ).one()  # fmt: skip
    assert tuple(last) == ("agent", "cordoned")


def test_three_of_four_hosts_silent_are_unreachable_none_given_up_and_host_list_says_why(
    engine: sa.Engine, catalog: Catalog, run: Any, run_phase: Callable[[str], object]
) -> None:
    for name in ("h1", "h2", "h3"):
        _register(engine, name, silent_s=30)
    _register(engine, "h4")
    _watching(engine)
    deployment = _serving(catalog, replicas=1)
    on_h1 = _route_on(engine, catalog, deployment, "h1")
    run_phase("hosts.check")
    assert _statuses(engine) == {"h1": "unreachable", "h2": "unreachable", "h3": "unreachable",
                                 "h4": "ready"}  # fmt: skip
    assert (_status(engine, on_h1), _session_status(engine, _session_of(engine, on_h1))) == (
        "healthy", "RUNNING")  # fmt: skip
    [h1] = [h for h in json.loads(run("host", "list", "--json").output) if h["name"] == "h1"]
    assert h1["condition"].startswith("HostUnreachable: 3 of 4 hosts silent at once")
    with engine.begin() as conn:  # they beat again
        conn.execute(hosts.update().values(last_heartbeat_at=sa.func.now()))
    run_phase("hosts.check")
    assert set(_statuses(engine).values()) == {"ready"}
    listed = json.loads(run("host", "list", "--json").output)
    assert [h["condition"] for h in listed] == [None] * 4


def test_one_of_four_silent_is_given_up_and_a_second_waits_its_turn(
    engine: sa.Engine, catalog: Catalog, run_phase: Callable[[str], object]
) -> None:
    _register(engine, "h1", silent_s=30)
    for name in ("h2", "h3", "h4", "h5"):
        _register(engine, name)
    _watching(engine)
    run_phase("hosts.check")
    assert _statuses(engine)["h1"] == "lost"
    with engine.begin() as conn:  # h2 goes silent right after
        conn.execute(
            hosts.update()
            .where(hosts.c.name == "h2")
            .values(last_heartbeat_at=sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, 20))
        )
    run_phase("hosts.check")
    assert _statuses(engine)["h2"] == "unreachable"  # one per 10 s: it waits
    _watching(engine, given_up_s_ago=11)
    run_phase("hosts.check")
    assert _statuses(engine)["h2"] == "lost"


def test_giving_up_is_one_transaction_sessions_routes_and_host_or_nothing(
    engine: sa.Engine, catalog: Catalog, adapters: Adapters
) -> None:
    _register(engine, "h1", silent_s=30)
    deployment = _serving(catalog, replicas=1)
    on_h1 = _route_on(engine, catalog, deployment, "h1")
    with engine.begin() as conn:  # the host's own row cannot be written: the last step fails
        conn.execute(
            sa.text(
                "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'refused'; END $$ LANGUAGE plpgsql"
            )
        )
        conn.execute(
            sa.text(
                "CREATE TRIGGER refuse BEFORE UPDATE ON hosts "
                "FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
        )
    try:
        with pytest.raises(sa.exc.ProgrammingError, match="refused"):
            adapters.host_registry.give_up_hosts({"h1": 30})
        assert _statuses(engine) == {"h1": "ready"}
        assert (_status(engine, on_h1), _session_status(engine, _session_of(engine, on_h1))) == (
            "healthy", "RUNNING")  # fmt: skip
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TRIGGER refuse ON hosts"))
            conn.execute(sa.text("DROP FUNCTION refuse()"))
    assert adapters.host_registry.give_up_hosts({"h1": 30}) == {"h1": 1}
    assert _statuses(engine) == {"h1": "lost"}
    assert _session_status(engine, _session_of(engine, on_h1)) == "LOST"


def test_a_look_after_a_gap_starts_the_controllers_watch_again(
    engine: sa.Engine, adapters: Adapters
) -> None:
    _watching(engine, for_s=100)
    assert adapters.host_registry.observe(blind_after_s=5).seeing_for_s >= 100
    with engine.begin() as conn:  # the controller was blind for 8 s
        conn.execute(
            controller_watch.update().values(
                last_seen_at=sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, 8)
            )
        )
    assert adapters.host_registry.observe(blind_after_s=5).seeing_for_s < 1


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


def _session_of(engine: sa.Engine, route_id: UUID) -> UUID:
    with engine.connect() as conn:
        found = conn.execute(sa.select(routes.c.session_id).where(routes.c.id == route_id))
        return UUID(str(found.scalar_one()))


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


def test_a_session_no_agent_starts_within_its_deadline_is_given_up_and_replaced(
    engine: sa.Engine, catalog: Catalog, run: Any, run_phase: Callable[[str], object]
) -> None:
    _register(engine, "h1")
    deployment = _serving(catalog, replicas=1)
    assert run("deployment", "set", deployment.name, "--start-deadline-s", "30").exit_code == 0
    stranded = _pending(engine, catalog, deployment, placed_on="h1")
    with engine.begin() as conn:  # asked for a minute ago; its host never started it
        conn.execute(sessions.update().where(sessions.c.id == stranded).values(
            created_at=sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 1)))  # fmt: skip
        route_id = conn.execute(
            sa.select(sessions.c.route_id).where(sessions.c.id == stranded)
        ).scalar_one()
        conn.execute(routes.update().where(routes.c.id == route_id).values(
            session_id=stranded, status="degraded"))  # fmt: skip
    run_phase("routes.check_running")
    assert _status(engine, route_id) == "draining"  # out of the count: a replacement starts
    with engine.connect() as conn:
        why = conn.execute(sa.select(route_history.c.message)
                           .where(route_history.c.route_id == route_id)).scalar_one()  # fmt: skip
    assert "session not running 60 s after it was asked for (start deadline 30 s)" in why


@pytest.mark.parametrize("value", ["0", "-5", "soon", "1e400"])
def test_a_bad_start_deadline_is_one_line_and_changes_nothing(
    engine: sa.Engine, catalog: Catalog, run: Any, value: str
) -> None:
    deployment = _serving(catalog, replicas=1)
    result = run("deployment", "set", deployment.name, "--start-deadline-s", value)
    assert result.exit_code == 2
    assert "--start-deadline-s" in result.output
    with engine.connect() as conn:
        assert conn.execute(sa.select(deployments.c.start_deadline_s)).scalar_one() is None
