"""The host agent: `modelfleet runner`, one per machine.

It registers its host (`hosts`: name, the address its sessions are reached by, its
slots) and keeps it alive with a heartbeat (`workers.standalone.heartbeat`). It honours
the `sessions` table contract (`agent_rows`): it claims the PENDING sessions the
controller placed on its host (and unplaced ones, made while no host was registered),
starts each as a local process in its own process group, telling it its port in `PORT`
and its session in `MODELFLEET_SESSION_ID`, records port, process identity and RUNNING,
records ERROR when a process exits on its own, and stops TERMINATING sessions (SIGTERM,
a grace period, SIGKILL) before recording TERMINATED.

A process is known by its identity (`process_identity`: pid, start time, boot id),
never by a bare pid: the agent signals, adopts or fences a process only when its
identity matches what it recorded; a mismatch means the session's process is gone.

No start is stranded: every pass looks at this agent's claims not recorded as started.
One whose process started but could not be recorded (a database blip) is recorded now;
one whose process an earlier agent started (it restarted in between) is found by its tag
and adopted; one never started is started. An agent restart never runs a session twice.

Fencing is by session: at every pass, before it takes new work, the agent stops any
process of its own whose session has ended (LOST: the controller gave it up and
replaced it elsewhere; TERMINATED, ERROR, CANCELLED), whatever its host row says. A
host the controller declared lost goes back to what its operator asked (ready,
cordoned or draining) once none of its given-up processes runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from workers.domain import HostStatus
from workers.errors import InfrastructureUnavailable
from workers.standalone.agent_rows import AgentRows, SessionProcess
from workers.standalone.gpus import Declared, session_environ, this_machine
from workers.standalone.heartbeat import Heartbeat
from workers.standalone.loop import repeat
from workers.standalone.machine import BIND_HOST_VARIABLE, PORT_VARIABLE, free_port
from workers.standalone.process_identity import (
    SESSION_VARIABLE,
    ProcessIdentity,
    environment_of,
    identify,
    is_running,
    tagged_processes,
)

log = logging.getLogger(__name__)

DEFAULT_COMMAND = "python -m workers.devtools.model_server"
OUTPUT_LINES_KEPT = 20  # of a session that exited on its own, kept in its row
OUTPUT_BYTES_READ = 8192
# Ended sessions are looked at again this far behind the last look (clock steps of the
# database's own; a commit that lands just after a read).
FENCE_OVERLAP = timedelta(seconds=10)
_LIVE = ("PREPARING", "RUNNING")


@dataclass(frozen=True)
class _Started:
    """A process started for a session, not recorded yet."""

    port: int
    identity: ProcessIdentity


@dataclass
class SessionRunner:
    engine: sa.Engine
    name: str = field(default_factory=socket.gethostname)
    host: str = "127.0.0.1"  # the address recorded for others to reach the sessions by
    grace_s: float = 5.0
    log_dir: Path | None = None  # each session's output goes to {log_dir}/{session id}.log
    slots: int = 0  # the most sessions this host may run; 0: no limit
    declared: Declared | None = None  # its GPUs as an operator declared them (else detected)
    heartbeat: Heartbeat | None = None  # started by run_forever, once the host is registered
    _children: dict[UUID, subprocess.Popen[bytes]] = field(default_factory=dict)
    _signalled: dict[UUID, float] = field(default_factory=dict)
    _unrecorded: dict[UUID, _Started] = field(default_factory=dict)
    _status: str = HostStatus.READY.value  # the host's status, as last read
    _fencing: dict[UUID, SessionProcess] = field(default_factory=dict)  # ended, still running
    _fenced_up_to: datetime | None = None  # ended sessions before this were looked at

    @property
    def rows(self) -> AgentRows:
        return AgentRows(self.engine, self.name)

    def register(self) -> None:
        machine = this_machine(self.name, self.declared)
        self._status = self.rows.register(self.host, self.slots, machine)
        log.info("host %s: registered at %s (%s, slots %s, %d GPUs, %g cores, %g GiB)",
                 self.name, self.host, self._status, self.slots or "no limit",
                 len(machine.devices), machine.cpus, machine.memory_gib)  # fmt: skip

    def tick(self) -> None:
        fencing = self.fence()
        self.examine_preparing()
        if not fencing and self._status != HostStatus.LOST.value:
            self.start_pending()
        self.reap_exited()
        self.stop_terminating()

    def run_forever(self, interval_s: float = 0.5) -> None:
        registered = False

        def one_pass() -> None:
            nonlocal registered
            if not registered:  # the database may be down at start: register once it is up
                self.register()
                registered = True
            if self.heartbeat is not None:
                self.heartbeat.ensure_running()  # started once registered, again if it died
            self.tick()

        repeat(f"host agent {self.name}", one_pass, interval_s)

    def fence(self) -> bool:
        """Stop every process of this agent's whose session has ended; once none runs, a
        host held lost goes back to its operator's intent. True while one still runs
        (no new work until then)."""
        ended, self._fenced_up_to = self.rows.ended_since(self._fenced_up_to, FENCE_OVERLAP)
        ended_by_id = {**self._fencing, **{p.session_id: p for p in ended}}
        still = {sid: p for sid, p in ended_by_id.items() if self._alive(p)}
        for session_id in set(ended_by_id) - set(still):
            self._forget(session_id)
        for process in still.values():
            self._signal_stop(process)
        self._fencing = still
        self._status = self.rows.host_status()
        if still:
            log.warning("host %s: stopping %d processes whose sessions ended (%s)",
                        self.name, len(still), self._status)  # fmt: skip
            return True
        if self._status == HostStatus.LOST.value:
            self.rows.back_from_lost()
            log.warning("host %s: back; given-up sessions stopped, taking work", self.name)
            self._status = self.rows.host_status()
        return False

    def examine_preparing(self) -> None:
        """This agent's claims not recorded as started: recorded now if their process
        started, adopted if an earlier agent started one (found by its tag), else
        started (an agent restarted between claiming and starting)."""
        waiting = self.rows.preparing()
        if not waiting:
            return
        unknown = [p for p in waiting if p.session_id not in self._unrecorded
                   and p.session_id not in self._children]  # fmt: skip
        tagged = tagged_processes([str(p.session_id) for p in unknown])
        for process in waiting:
            started = self._unrecorded.get(process.session_id)
            found = tagged.get(str(process.session_id))
            if started is None and found is not None:
                started = _adopted(found)
            if started is not None:
                self._record(process.session_id, started)
            elif process.session_id not in self._children:
                self._start(process)

    def start_pending(self) -> int:
        claimed = self.rows.claim()
        for process in claimed:
            self._start(process)
        return len(claimed)

    def reap_exited(self) -> None:
        """A RUNNING session whose process is gone ended on its own: ERROR, with its exit
        code (when this runner started it) and the last lines of its output (with a log dir)."""
        for process in self.rows.with_process(_LIVE):
            if self._alive(process):
                continue
            exit_code = self._exit_code(process.session_id)
            log.warning("session %s: its process (pid %s) is gone (exit code %s)",
                        process.session_id, process.pid, exit_code)  # fmt: skip
            self.rows.finish(process.session_id, "ERROR", expected=_LIVE, exit_code=exit_code,
                             last_output=self._last_output(process.session_id))  # fmt: skip
            self._forget(process.session_id)

    def stop_terminating(self) -> None:
        for process in self.rows.with_process(("TERMINATING",), with_unstarted=True):
            if process.pid is None or not self._alive(process):
                self.rows.finish(process.session_id, "TERMINATED", expected=("TERMINATING",))
                self._forget(process.session_id)
                continue
            self._signal_stop(process)

    def _alive(self, process: SessionProcess) -> bool:
        """Whether the session's own process runs: a child of this agent's, or the process
        its recorded identity names. A pid now held by another process is not it."""
        child = self._children.get(process.session_id)
        if child is not None:
            return child.poll() is None
        identity = process.identity or _legacy_identity(process)
        return identity is not None and is_running(identity)

    def _signal_stop(self, process: SessionProcess) -> None:
        """SIGTERM first (requests in flight finish), SIGKILL after the grace period; only
        to the process the session recorded (its group: it started one of its own)."""
        if not self._alive(process) or process.pid is None:
            return
        first = self._signalled.setdefault(process.session_id, time.monotonic())
        late = time.monotonic() - first > self.grace_s
        _signal_group(process.pid, signal.SIGKILL if late else signal.SIGTERM)

    def _start(self, process: SessionProcess) -> None:
        session_id, spec, port = process.session_id, process.spec or {}, free_port()
        argv = shlex.split(spec.get("startup_command") or DEFAULT_COMMAND)
        if argv and argv[0] == "python":
            argv[0] = sys.executable  # the demo's command runs on this interpreter
        shared = "gpu_memory_gib" in spec.get("resources", {})
        devices = session_environ(process.gpu_devices, process.gpu_gib if shared else None)
        environ = {**os.environ, **spec.get("environ", {}), **devices, PORT_VARIABLE: str(port),
                   SESSION_VARIABLE: str(session_id)}  # fmt: skip
        if self.host not in {"127.0.0.1", "localhost"}:
            environ[BIND_HOST_VARIABLE] = "0.0.0.0"  # reached from other hosts
        output = self._output(session_id)
        try:
            child = subprocess.Popen(
                argv, env=environ, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        except OSError as error:
            log.warning("session %s: cannot start %s: %s", session_id, argv, error)
            self.rows.finish(session_id, "ERROR", expected=("PREPARING",))
            return
        finally:
            if output is not subprocess.DEVNULL:
                output.close()
        self._children[session_id] = child
        identity = identify(child.pid) or ProcessIdentity(child.pid, -1, "")  # gone at once
        self._record(session_id, _Started(port, identity))

    def _record(self, session_id: UUID, started: _Started) -> None:
        """Record the start; if the database cannot take it now, the next pass tries again
        (the process is never left unrecorded)."""
        try:
            self.rows.record_started(session_id, self.host, started.port, started.identity)
        except InfrastructureUnavailable as error:
            self._unrecorded[session_id] = started
            log.warning("session %s: started (pid %d) but not recorded yet: %s",
                        session_id, started.identity.pid, error)  # fmt: skip
            return
        self._unrecorded.pop(session_id, None)
        log.info("session %s: started pid %d on port %d", session_id, started.identity.pid,
                 started.port)  # fmt: skip

    def _output(self, session_id: UUID) -> Any:
        if self.log_dir is None:
            return subprocess.DEVNULL
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return (self.log_dir / f"{session_id}.log").open("ab")

    def _exit_code(self, session_id: UUID) -> int | None:
        child = self._children.get(session_id)
        return None if child is None else child.returncode

    def _last_output(self, session_id: UUID) -> str | None:
        if self.log_dir is None:
            return None
        return last_lines(self.log_dir / f"{session_id}.log")

    def _forget(self, session_id: UUID) -> None:
        self._children.pop(session_id, None)
        self._signalled.pop(session_id, None)
        self._unrecorded.pop(session_id, None)


def _adopted(found: ProcessIdentity) -> _Started | None:
    """A tagged process an earlier agent started: its port is in its environment."""
    port = environment_of(found.pid).get(PORT_VARIABLE, "")
    return _Started(int(port), found) if port.isdigit() else None


def _legacy_identity(process: SessionProcess) -> ProcessIdentity | None:
    """A session recorded by an agent that kept a bare pid: its process is the one that
    still has the session's port in its environment."""
    if process.pid is None or process.port is None:
        return None
    if environment_of(process.pid).get(PORT_VARIABLE) != str(process.port):
        return None
    return identify(process.pid)


def last_lines(path: Path, lines: int = OUTPUT_LINES_KEPT) -> str | None:
    """The last `lines` lines of a file (at most its last 8 KiB), None when there is none."""
    try:
        with path.open("rb") as output:
            output.seek(0, os.SEEK_END)
            output.seek(max(0, output.tell() - OUTPUT_BYTES_READ))
            tail = output.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    kept = tail.splitlines()[-lines:]
    return "\n".join(kept) if kept else None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
