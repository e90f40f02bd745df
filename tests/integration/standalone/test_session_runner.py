"""The session runner with real child processes: start, crash, terminate, restart, two runners."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
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
from workers.errors import InfrastructureUnavailable
from workers.executors.payloads import session_spec
from workers.standalone.agent_rows import AgentRows
from workers.standalone.process_identity import identify, tagged_processes
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
    reborn.tick()  # its own claim, never started: started now
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


def test_a_failed_write_of_a_start_leaves_no_unrecorded_process_after_one_more_pass(
    runner: SessionRunner, engine: sa.Engine, catalog: Catalog, scheduler: SessionTableScheduler,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    [session_id] = _enqueue(catalog, scheduler)
    _record_fails_once(monkeypatch)
    runner.start_pending()  # started; the database refused to record it
    assert (_row(engine, session_id)["status"], _row(engine, session_id)["pid"]) == (
        "PREPARING", None)  # fmt: skip
    runner.tick()
    row = _row(engine, session_id)
    assert row["status"] == "RUNNING"
    assert _tagged(session_id) == [row["pid"]]  # one process, the one recorded
    scheduler.mark_sessions_for_termination([session_id])
    wait_for(lambda: _after_ticks([runner], lambda: _row(engine, session_id)["status"]),
             lambda status: status == "TERMINATED", timeout_s=20, what="TERMINATED")  # fmt: skip


def test_an_agent_restarted_mid_start_adopts_the_process_instead_of_starting_another(
    engine: sa.Engine, catalog: Catalog, scheduler: SessionTableScheduler,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    [session_id] = _enqueue(catalog, scheduler)
    _record_fails_once(monkeypatch)
    first_life = SessionRunner(engine=engine, name="host-r")
    first_life.start_pending()  # then the agent died
    [pid] = _tagged(session_id)
    reborn = SessionRunner(engine=engine, name="host-r", grace_s=1.0)
    reborn.tick()
    row = _row(engine, session_id)
    assert (row["status"], row["pid"]) == ("RUNNING", pid)
    assert _tagged(session_id) == [pid]
    wait_for(lambda: _health(_row(engine, session_id)), lambda s: s == 200, timeout_s=20,
             what="the adopted model to answer on its recorded port")  # fmt: skip
    scheduler.mark_sessions_for_termination([session_id])
    wait_for(lambda: _after_ticks([reborn], lambda: _row(engine, session_id)["status"]),
             lambda status: status == "TERMINATED", timeout_s=20, what="TERMINATED")  # fmt: skip
    for child in first_life._children.values():  # in this test, its parent is still here
        child.wait(timeout=10)
    assert _tagged(session_id) == []


def test_a_session_whose_recorded_pid_passed_to_another_process_leaves_that_process_alive(
    runner: SessionRunner, engine: sa.Engine, catalog: Catalog, scheduler: SessionTableScheduler
) -> None:
    [terminating, running] = _enqueue(catalog, scheduler, count=2)
    strangers = [subprocess.Popen(["sleep", "60"], start_new_session=True) for _ in range(2)]
    try:
        for session_id, stranger in zip((terminating, running), strangers, strict=True):
            identity = identify(stranger.pid)
            assert identity is not None
            with engine.begin() as conn:  # recorded by a life of this agent before a reboot
                conn.execute(sessions.update().where(sessions.c.id == session_id).values(
                    status="RUNNING", runner=runner.name, pid=stranger.pid, port=1,
                    process_started_ticks=identity.started_ticks + 1,
                    boot_id=identity.boot_id))  # fmt: skip
        scheduler.mark_sessions_for_termination([terminating])
        runner.tick()
        runner.tick()
        assert [stranger.poll() for stranger in strangers] == [None, None]  # both alive
        assert _row(engine, terminating)["status"] == "TERMINATED"  # its process is gone
        assert _row(engine, running)["status"] == "ERROR"  # likewise: not "running" for ever
    finally:
        for stranger in strangers:
            stranger.kill()
            stranger.wait()


PID_NAMESPACE_SCRIPT = """
import subprocess, sys, time
import sqlalchemy as sa
from workers.adapters.postgres.engine import create_database_engine
from workers.adapters.postgres.schema import sessions
from workers.standalone.runner import SessionRunner
engine = create_database_engine(sys.argv[1])
ids = sys.argv[2:]
strangers = [subprocess.Popen(["sleep", "60"], start_new_session=True) for _ in ids]
with engine.begin() as conn:  # the old life's pids now belong to these new processes
    for session_id, stranger in zip(ids, strangers):
        conn.execute(sessions.update().where(sessions.c.id == session_id).values(pid=stranger.pid))
runner = SessionRunner(engine=engine, name="host-ns", grace_s=0.5)
for _ in range(3):
    runner.tick()
    time.sleep(0.6)
print("alive", sum(1 for stranger in strangers if stranger.poll() is None), "of", len(ids))
"""


def test_an_agent_restarted_in_a_fresh_pid_namespace_kills_none_of_the_pids_it_finds(
    engine: sa.Engine, catalog: Catalog, scheduler: SessionTableScheduler
) -> None:
    """A container restart: the runner's new pid namespace hands out the pids its old
    sessions had to unrelated processes. Given up, terminating or running, none is its."""
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is needed"
    assert os.geteuid() == 0, "a pid namespace of its own needs root"
    ids = _enqueue(catalog, scheduler, count=3)
    old_life = {"runner": "host-ns", "port": 1, "process_started_ticks": 12345,
                "boot_id": "an-earlier-boot"}  # fmt: skip
    with engine.begin() as conn:
        for session_id, status in zip(ids, ("LOST", "TERMINATING", "RUNNING"), strict=True):
            conn.execute(sessions.update().where(sessions.c.id == session_id)
                         .values(status=status, **old_life))  # fmt: skip
    url = engine.url.render_as_string(hide_password=False)
    done = subprocess.run(
        [unshare, "--pid", "--fork", "--mount-proc", sys.executable, "-c", PID_NAMESPACE_SCRIPT,
         url, *map(str, ids)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "alive 3 of 3"
    statuses = [_row(engine, session_id)["status"] for session_id in ids]
    assert statuses == ["LOST", "TERMINATED", "ERROR"]


def _record_fails_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The next write of a start fails as a database blip would."""
    real = AgentRows.record_started
    calls = {"n": 0}

    def flaky(self: AgentRows, *args: object) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise InfrastructureUnavailable("database unavailable: server closed the connection")
        real(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(AgentRows, "record_started", flaky)


def _tagged(session_id: UUID) -> list[int]:
    """The pids of live processes tagged with the session (its model server)."""
    found = tagged_processes([str(session_id)])
    return [found[str(session_id)].pid] if str(session_id) in found else []
