"""The session runner with real child processes: start, crash, terminate, restart, two runners."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from uuid import UUID

import pytest
import requests
import sqlalchemy as sa

from tests.factories import context_of, make_deployment, make_revision, make_route
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.scheduler import SessionTableScheduler
from workers.adapters.postgres.schema import sessions
from workers.devtools.processes import process_alive, wait_for
from workers.domain import SessionId
from workers.executors.payloads import session_spec
from workers.standalone.runner import SessionRunner

T = TypeVar("T")
SAMPLE = make_revision(startup_command="python -m workers.reference.model_server")


@pytest.fixture
def runner(engine: sa.Engine) -> SessionRunner:
    return SessionRunner(engine=engine, grace_s=2.0)


def _enqueue(catalog: Catalog, scheduler: SessionTableScheduler, count: int = 1) -> list[SessionId]:
    catalog.create_scaling_group("sg1")
    deployment = catalog.create_deployment(make_deployment(target_revision=SAMPLE))
    routes = [make_route(deployment) for _ in range(count)]
    catalog.add_routes(routes)
    return [scheduler.enqueue_session(session_spec(r, context_of(deployment))) for r in routes]


def _row(engine: sa.Engine, session_id: UUID) -> sa.RowMapping:
    with engine.connect() as conn:
        return conn.execute(sa.select(sessions).where(sessions.c.id == session_id)).mappings().one()


def _after_ticks(runners: list[SessionRunner], read: Callable[[], T]) -> T:
    for runner in runners:
        runner.tick()
    return read()


def _health(row: sa.RowMapping) -> int:
    try:
        return requests.get(f"http://{row['host']}:{row['port']}/health", timeout=1).status_code
    except requests.RequestException:
        return 0


def test_a_pending_session_runs_and_is_terminated_with_its_process(
    runner: SessionRunner, engine: sa.Engine, catalog: Catalog, scheduler: SessionTableScheduler
) -> None:
    [session_id] = _enqueue(catalog, scheduler)
    assert runner.start_pending() == 1
    row = _row(engine, session_id)
    assert (row["status"], row["host"]) == ("RUNNING", "127.0.0.1")
    assert row["started_at"] is not None
    wait_for(lambda: _health(row), lambda s: s == 200, timeout_s=20, what="the model to answer")
    scheduler.mark_sessions_for_termination([session_id])
    wait_for(
        lambda: _after_ticks([runner], lambda: _row(engine, session_id)["status"]),
        lambda status: status == "TERMINATED",
        timeout_s=20,
        what="TERMINATED",
    )
    assert not process_alive(row["pid"])


def test_a_process_that_exits_on_its_own_is_an_error(
    runner: SessionRunner, engine: sa.Engine, catalog: Catalog, scheduler: SessionTableScheduler
) -> None:
    [session_id] = _enqueue(catalog, scheduler)
    runner.start_pending()
    os.killpg(_row(engine, session_id)["pid"], signal.SIGKILL)
    wait_for(
        lambda: _after_ticks([runner], lambda: _row(engine, session_id)["status"]),
        lambda status: status == "ERROR",
        timeout_s=20,
        what="ERROR",
    )
    assert _row(engine, session_id)["terminated_at"] is not None
    assert _row(engine, session_id)["exit_code"] == -signal.SIGKILL


def test_a_crashing_session_records_its_exit_code_and_last_output(
    engine: sa.Engine, catalog: Catalog, scheduler: SessionTableScheduler, tmp_path: Path
) -> None:
    runner = SessionRunner(engine=engine, log_dir=tmp_path)
    crashing = make_revision(
        startup_command="python -c \"import sys; [print('line', i) for i in range(30)]; "
        "sys.exit('model weights not found')\""
    )
    catalog.create_scaling_group("sg1")
    deployment = catalog.create_deployment(make_deployment(target_revision=crashing))
    route = make_route(deployment)
    catalog.add_routes([route])
    session_id = scheduler.enqueue_session(session_spec(route, context_of(deployment)))
    runner.start_pending()
    row = wait_for(
        lambda: _after_ticks([runner], lambda: _row(engine, session_id)),
        lambda found: found["status"] == "ERROR",
        timeout_s=20,
        what="ERROR",
    )
    assert row["exit_code"] == 1
    lines = row["last_output"].splitlines()
    assert len(lines) == 20
    assert lines[-1] == "model weights not found"
    assert lines[0] == "line 11"


# Two runners in one test process share its children: one may reap a process the
# other's Popen still holds, which Python then reports when it collects that Popen.
# Real runners are separate processes.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_restarted_runner_neither_orphans_nor_starts_again(
    engine: sa.Engine, catalog: Catalog, scheduler: SessionTableScheduler
) -> None:
    [started, claimed] = _enqueue(catalog, scheduler, count=2)
    with (
        engine.begin() as conn
    ):  # claimed by this runner's last life, which died before starting it
        conn.execute(
            sessions.update()
            .where(sessions.c.id == claimed)
            .values(status="PREPARING", runner="host-r")
        )
    assert SessionRunner(engine=engine, name="host-r").start_pending() == 1
    pid = _row(engine, started)["pid"]
    reborn = SessionRunner(engine=engine, name="host-r", grace_s=1.0)
    reborn.recover()
    assert _row(engine, claimed)["status"] == "PENDING"
    reborn.tick()
    assert _row(engine, started)["pid"] == pid  # the running one was not started again
    assert _row(engine, claimed)["status"] == "RUNNING"
    scheduler.mark_sessions_for_termination([started, claimed])
    wait_for(
        lambda: _after_ticks(
            [reborn], lambda: {_row(engine, s)["status"] for s in (started, claimed)}
        ),
        lambda statuses: statuses == {"TERMINATED"},
        timeout_s=20,
        what="both terminated by the new runner",
    )
    assert not process_alive(pid)


# Two runners in one test process share its children: one may reap a process the
# other's Popen still holds, which Python then reports when it collects that Popen.
# Real runners are separate processes.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_two_runners_never_start_one_session_twice(
    engine: sa.Engine, catalog: Catalog, scheduler: SessionTableScheduler
) -> None:
    session_ids = _enqueue(catalog, scheduler, count=6)
    runners = [SessionRunner(engine=engine, grace_s=1.0) for _ in range(2)]
    threads = [threading.Thread(target=r.start_pending) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pids = [_row(engine, s)["pid"] for s in session_ids]
    assert None not in pids
    assert len(set(pids)) == 6
    started = sum(len(r._children) for r in runners)
    assert started == 6
    scheduler.mark_sessions_for_termination(session_ids)
    wait_for(
        lambda: _after_ticks(runners, lambda: [_row(engine, s)["status"] for s in session_ids]),
        lambda statuses: set(statuses) == {"TERMINATED"},
        timeout_s=20,
        what="every session terminated",
    )


def test_a_runner_looks_after_only_the_sessions_it_claimed(
    engine: sa.Engine, catalog: Catalog, scheduler: SessionTableScheduler
) -> None:
    [session_id] = _enqueue(catalog, scheduler)
    host_a = SessionRunner(engine=engine, name="host-a", grace_s=1.0)
    host_b = SessionRunner(engine=engine, name="host-b", grace_s=1.0)
    host_a.start_pending()
    assert _row(engine, session_id)["runner"] == "host-a"
    pid = _row(engine, session_id)["pid"]
    scheduler.mark_sessions_for_termination([session_id])
    host_b.recover()
    host_b.tick()  # not its session: its pid means nothing on host b
    assert _row(engine, session_id)["status"] == "TERMINATING"
    assert process_alive(pid)
    wait_for(
        lambda: _after_ticks([host_a], lambda: _row(engine, session_id)["status"]),
        lambda status: status == "TERMINATED",
        timeout_s=20,
        what="host a to stop its own session",
    )
    assert not process_alive(pid)
