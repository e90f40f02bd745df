"""Child processes started as an operator would, and stopped without leftovers.

`modelfleet dev` runs every piece this way; the end-to-end tests do too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from workers.standalone.machine import process_alive

__all__ = ["Process", "celery", "modelfleet", "process_alive", "stop_all", "wait_for"]

T = TypeVar("T")

POLL_INTERVAL_S = 0.1


class Process:
    """One command in its own process group, its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.restarts = 0
        self.last_exit_code: int | None = None
        self._argv, self._env = argv, dict(env)
        self._log = self.log_path.open("ab")
        self.popen = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self._argv,
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def restart_if_dead(self) -> bool:
        """Start the command again if it exited (a supervisor's one move); True if it did."""
        code = self.popen.poll()
        if code is None:
            return False
        self._signal_group(signal.SIGKILL)  # what it left behind in its group
        self.last_exit_code, self.restarts = code, self.restarts + 1
        self._log.write(f"\n--- exited with {code}; restart {self.restarts} ---\n".encode())
        self._log.flush()
        self.popen = self._spawn()
        return True

    def kill_hard(self) -> None:
        """SIGKILL the whole group at once: no shutdown code runs anywhere."""
        self._signal_group(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._signal_group(signal.SIGKILL)  # children a graceful stop left behind
        self._log.close()

    def signal_stop(self) -> None:
        """SIGTERM the group: the first half of a stop that many processes make at once."""
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)

    def finish_stop(self, deadline: float) -> str:
        """Wait for the exit until `deadline` (monotonic), then SIGKILL; how it ended."""
        try:
            self.popen.wait(timeout=max(deadline - time.monotonic(), 0))
            ended = "stopped"
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.popen.wait(timeout=10)
            ended = "killed (did not stop in time)"
        self._signal_group(signal.SIGKILL)  # children a graceful stop left behind
        self._log.close()
        return ended

    def tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)


def stop_all(
    processes: list[Process], grace_s: float, say: Callable[[str], None] = lambda _: None
) -> None:
    """Stop every process at once: SIGTERM to all, `grace_s` for all of them together to
    exit, SIGKILL for the rest; a line per process."""
    for process in processes:
        process.signal_stop()
    deadline = time.monotonic() + grace_s
    for process in processes:
        say(f"{process.name}: {process.finish_stop(deadline)}")


def celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "workers", *args]


def modelfleet(*args: str) -> list[str]:
    return [sys.executable, "-m", "workers", *args]


def wait_for(
    probe: Callable[[], T],
    until: Callable[[T], object] = bool,
    *,
    timeout_s: float,
    what: str,
) -> T:
    """Poll `probe` until `until(value)` holds, and return that value; fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if until(last):
            return last
        time.sleep(POLL_INTERVAL_S)
    raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}; last seen: {last!r}")
