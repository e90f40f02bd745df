"""`modelfleet dev` as a newcomer runs it: up, the demo served, and nothing left after Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.factories import make_deployment, make_route
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.engine import create_database_engine
from workers.adapters.postgres.migrate import upgrade_to_head
from workers.adapters.postgres.schema import deployments, sessions
from workers.adapters.redis.keys import RedisKeys
from workers.devtools import dev
from workers.devtools.processes import process_alive, wait_for

TIMEOUT_S = 90


def _processes_with(marker: str) -> list[int]:
    """Pids of the processes whose environment carries `marker` (this test's key prefix)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def _live_session_pids(database_url: str) -> list[int]:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            query = sa.select(sessions.c.pid).where(sessions.c.status == "RUNNING")
            return [pid for pid in conn.execute(query).scalars() if pid is not None]
    except sa.exc.ProgrammingError:
        return []  # `modelfleet dev` has not migrated the database yet
    finally:
        engine.dispose()


def _dev_command(*, background: bool) -> list[str]:
    """`modelfleet dev`, or as a shell script's `modelfleet dev > log &` starts it: with
    SIGINT ignored from the start (which a process inherits)."""
    command = [sys.executable, "-m", "workers.cli", "dev", "--replicas", "2"]
    if not background:
        return command
    return ["sh", "-c", 'trap "" INT; exec "$@"', "background-job", *command]


@pytest.mark.parametrize(
    ("stop", "background"),
    [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["ctrl-c", "kill-int-of-a-background-job", "sigterm"],
)
def test_dev_serves_the_demo_and_leaves_nothing_running(
    stop: signal.Signals,
    background: bool,
    *,
    create_database: Callable[[], str],
    broker_url: str,
    redis_url: str,
    redis_keys: RedisKeys,
    tmp_path: Path,
) -> None:
    database_url = create_database()
    env = {
        **os.environ,
        "MODELFLEET_DATABASE_URL": database_url,
        "MODELFLEET_REDIS_URL": redis_url,
        "MODELFLEET_REDIS_KEY_PREFIX": redis_keys.prefix,
        "MODELFLEET_BROKER_URL": broker_url,
        "MODELFLEET_RESULT_BACKEND": redis_url,
        "COLUMNS": "80",
        "FLOWER_BASIC_AUTH": "ops:pw-not-shown",
    }
    shown = tmp_path / "dev.out"
    with shown.open("wb") as out:
        dev = subprocess.Popen(
            _dev_command(background=background), env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        pids = wait_for(
            lambda: _live_session_pids(database_url),
            lambda found: len(found) == 2,
            timeout_s=TIMEOUT_S,
            what="the demo's two sessions running",
        )
        assert len(_processes_with(redis_keys.prefix)) > 2  # dev, its children, the models
    finally:
        dev.send_signal(stop)
        assert dev.wait(timeout=60) is not None
    assert _processes_with(redis_keys.prefix) == []
    assert [pid for pid in pids if process_alive(pid)] == []
    _said_what_a_person_needs(shown.read_text(errors="replace"))


def _said_what_a_person_needs(output: str) -> None:
    """Every address, Flower's real login (never its password), a line per stop step, and
    a view that fits 80 columns (only the copyable command lines may be longer)."""
    lines = [line.rstrip() for line in output.replace("\r", "\n").splitlines()]
    for start in ("app proxy   http://127.0.0.1:", "discovery   http://", "logs        /"):
        assert any(line.startswith(start) for line in lines), (start, output)
    assert any("user ops; password from FLOWER_BASIC_AUTH" in line for line in lines), output
    assert "pw-not-shown" not in output
    assert not any(line.strip().startswith("export ") for line in lines)  # all set already
    for step in ("worker: stopped", "runner: stopped", "sessions: 2 stopped",
                 "logs removed"):  # fmt: skip
        assert any(step in line for line in lines), (step, output)
    commands = [line for line in lines if line.strip().startswith(("curl ", "export "))]
    assert [line for line in lines if len(line) > 80 and line not in commands] == [], output
    assert "Traceback" not in output


def test_dev_on_someone_elses_database_stops_only_what_it_started(
    create_database: Callable[[], str], broker_url: str, redis_url: str, redis_keys: RedisKeys
) -> None:
    """It once SIGKILLed every RUNNING session's process group on the host."""
    database_url = create_database()
    engine = create_database_engine(database_url)
    upgrade_to_head(engine)
    foreign = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        catalog = Catalog(engine=engine)
        catalog.create_scaling_group("prod")
        theirs = catalog.create_deployment(make_deployment(resource_group="prod"))
        route = make_route(theirs)
        catalog.add_routes([route])
        with engine.begin() as conn:
            conn.execute(sessions.insert().values(
                id=uuid.uuid4(), route_id=route.id, name="theirs", spec={}, status="RUNNING",
                host="127.0.0.1", port=1, pid=foreign.pid, runner="prod-runner",
            ))  # fmt: skip
        environ = {
            **os.environ,
            "MODELFLEET_DATABASE_URL": database_url,
            "MODELFLEET_REDIS_URL": redis_url,
            "MODELFLEET_REDIS_KEY_PREFIX": redis_keys.prefix,
            "MODELFLEET_BROKER_URL": broker_url,
            "MODELFLEET_RESULT_BACKEND": redis_url,
        }
        with dev.running_system(environ) as system:
            demo = system.demo()
            wait_for(lambda: _live_session_pids(database_url), lambda pids: len(pids) == 3,
                     timeout_s=TIMEOUT_S, what="the demo's two sessions beside theirs")  # fmt: skip
        assert foreign.poll() is None, "a process dev did not start was killed"
        with engine.connect() as conn:
            their_session = conn.execute(
                sa.select(sessions.c.status).where(sessions.c.runner == "prod-runner")
            ).scalar_one()
            lifecycles = dict(
                conn.execute(sa.select(deployments.c.id, deployments.c.lifecycle)).all()
            )
        assert their_session == "RUNNING"
        assert lifecycles == {theirs.id: "pending", demo.id: "destroyed"}
    finally:
        foreign.kill()
        foreign.wait()
        engine.dispose()
