"""`modelfleet dev`'s live view on PostgreSQL: a stop that comes while it reads."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from workers.devtools import commands

LOCK_HELD_S = 1.0
STOP_AFTER_S = 0.3


@contextmanager
def _deployments_locked(engine: sa.Engine) -> Iterator[None]:
    """The deployments table locked from another connection for `LOCK_HELD_S`, so that
    the view's read of it waits inside its query."""
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with engine.begin() as conn:
            conn.execute(sa.text("LOCK TABLE deployments IN ACCESS EXCLUSIVE MODE"))
            locked.set()
            release.wait(LOCK_HELD_S)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        yield
    finally:
        release.set()
        holder.join()


@contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    kept = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in kept.items():
            signal.signal(signum, handler)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stop_during_a_read_lets_the_read_finish(engine: sa.Engine, stop: signal.Signals) -> None:
    """It once raised KeyboardInterrupt inside the query, cutting it in half; once in CI the
    connection then failed its own cleanup ("can't change 'autocommit' now"), and
    `modelfleet dev` exited with that error instead of stopping."""
    system = SimpleNamespace(
        env={"MODELFLEET_DATABASE_URL": engine.url.render_as_string(hide_password=False)},
        processes=[],
    )
    with _signal_handlers_kept():
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # as `dev` had it
        with _deployments_locked(engine):
            threading.Timer(STOP_AFTER_S, os.kill, (os.getpid(), stop)).start()
            try:
                commands._live_view(system)  # type: ignore[arg-type]
            except BaseException as error:  # KeyboardInterrupt would end pytest
                pytest.fail(f"the stop came out of the view as {error!r}")
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # a second stop waits
