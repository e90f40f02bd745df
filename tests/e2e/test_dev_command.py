"""`modelfleet dev` as a newcomer runs it: up, the demo served, and nothing left after Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from workers.adapters.postgres.schema import sessions
from workers.adapters.redis_keys import RedisKeys
from workers.reference.processes import process_alive, wait_for

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


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_dev_serves_the_demo_and_leaves_nothing_running(
    stop: signal.Signals,
    create_database: Callable[[], str],
    broker_url: str,
    redis_url: str,
    redis_keys: RedisKeys,
) -> None:
    database_url = create_database()
    env = {
        **os.environ,
        "MODELFLEET_DATABASE_URL": database_url,
        "MODELFLEET_REDIS_URL": redis_url,
        "MODELFLEET_REDIS_KEY_PREFIX": redis_keys.prefix,
        "MODELFLEET_BROKER_URL": broker_url,
        "MODELFLEET_RESULT_BACKEND": redis_url,
    }
    dev = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "dev"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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
