"""The host agent: `modelfleet runner`, one per machine.

It registers its host (`hosts`: name, the address its sessions are reached by,
its slots) and keeps it alive with a heartbeat (`workers.standalone.heartbeat`).
It honours the `sessions` table contract: it claims the PENDING sessions the
controller placed on its host (and unplaced ones, made while no host was
registered) with `FOR UPDATE SKIP LOCKED`, starts each as a local process in its
own process group, telling it its port in `PORT`, records host, port, pid and
RUNNING, records ERROR when a process exits on its own, and stops TERMINATING
sessions (SIGTERM, a grace period, SIGKILL) before recording TERMINATED.

Fencing is by session: at every pass, before it takes new work, the agent stops any
process of its own whose session has ended (LOST: the controller gave it up and
replaced it elsewhere; TERMINATED, ERROR, CANCELLED), whatever its host row says. A
host the controller declared lost goes back to what its operator asked (ready,
cordoned or draining) once none of its given-up processes runs.

The agent looks after its own sessions only: pids mean something on one host
alone. The processes outlive the agent, so a restarted agent of the same name
finds them by pid instead of starting them again; a session it claimed but had
not started yet goes back to PENDING.
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
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from workers.adapters.postgres.engine import transaction
from workers.adapters.postgres.hosts import restore_to_intent
from workers.adapters.postgres.schema import TERMINAL_SESSION_STATUSES, hosts, sessions
from workers.domain import HostStatus
from workers.phase_names import AGENT
from workers.standalone.heartbeat import Heartbeat
from workers.standalone.loop import repeat
from workers.standalone.machine import BIND_HOST_VARIABLE, PORT_VARIABLE, free_port, process_alive

log = logging.getLogger(__name__)

DEFAULT_COMMAND = "python -m workers.devtools.model_server"
CLAIM_BATCH = 16
OUTPUT_LINES_KEPT = 20  # of a session that exited on its own, kept in its row
OUTPUT_BYTES_READ = 8192
# Ended sessions are looked at again this far behind the last look (clock steps of the
# database's own; a commit that lands just after a read).
FENCE_OVERLAP_S = 10.0


@dataclass
class SessionRunner:
    engine: sa.Engine
    name: str = field(default_factory=socket.gethostname)
    host: str = "127.0.0.1"  # the address recorded for others to reach the sessions by
    grace_s: float = 5.0
    log_dir: Path | None = None  # each session's output goes to {log_dir}/{session id}.log
    slots: int = 0  # the most sessions this host may run; 0: no limit
    heartbeat: Heartbeat | None = None  # started by run_forever, once the host is registered
    _children: dict[UUID, subprocess.Popen[bytes]] = field(default_factory=dict)
    _signalled: dict[UUID, float] = field(default_factory=dict)
    _status: str = HostStatus.READY.value  # the host's status, as last read
    _fencing: dict[UUID, int] = field(default_factory=dict)  # ended sessions still running
    _fenced_up_to: datetime | None = None  # ended sessions before this were looked at

    def register(self) -> None:
        """The host row: a new host is ready; a known one keeps its status (cordoned,
        draining, unreachable, or lost until fenced) and gets this address and slots.
        Its heartbeat is the heartbeat's to write, nobody else's."""
        statement = (
            insert(hosts)
            .values(id=uuid4(), name=self.name, address=self.host, slots=self.slots)
            .on_conflict_do_update(
                index_elements=[hosts.c.name], set_={"address": self.host, "slots": self.slots}
            )
            .returning(hosts.c.status)
        )
        with transaction(self.engine) as conn:
            self._status = conn.execute(statement).scalar_one()
        log.info("host %s: registered at %s (%s, slots %s)", self.name, self.host,
                 self._status, self.slots or "no limit")  # fmt: skip

    def fence(self) -> bool:
        """Stop every process of this agent's whose session has ended; once none runs, a
        host held lost goes back to its operator's intent. True while one still runs
        (no new work until then)."""
        ended = self._ended_sessions()
        still = {sid: pid for sid, pid in ended.items() if self._alive(sid, pid)}
        for session_id in set(ended) - set(still):
            self._children.pop(session_id, None)
            self._signalled.pop(session_id, None)
        for session_id, pid in still.items():
            self._signal_stop(session_id, pid)
        self._fencing = still
        self._status = self._host_status()
        if still:
            log.warning("host %s: stopping %d processes whose sessions ended (%s)",
                        self.name, len(still), self._status)  # fmt: skip
            return True
        if self._status == HostStatus.LOST.value:
            with transaction(self.engine) as conn:
                why = "back: every process the controller gave up is stopped"
                restore_to_intent(conn, {self.name}, HostStatus.LOST, AGENT, why)
            log.warning("host %s: back; given-up sessions stopped, taking work", self.name)
            self._status = self._host_status()
        return False

    def _ended_sessions(self) -> dict[UUID, int]:
        """This agent's sessions that ended since the last look (all of them at the first),
        with a process recorded, and those still being stopped."""
        mine = sa.and_(
            sessions.c.runner == self.name,
            sessions.c.pid.is_not(None),
            sessions.c.status.in_(TERMINAL_SESSION_STATUSES),
        )
        if self._fenced_up_to is not None:
            overlap = timedelta(seconds=FENCE_OVERLAP_S)
            mine = sa.and_(mine, sessions.c.updated_at >= self._fenced_up_to - overlap)
        with transaction(self.engine) as conn:
            now = conn.execute(sa.select(sa.func.now())).scalar_one()
            found = conn.execute(sa.select(sessions.c.id, sessions.c.pid).where(mine)).all()
        self._fenced_up_to = now
        return {**self._fencing, **{row.id: row.pid for row in found}}

    def _host_status(self) -> str:
        with transaction(self.engine) as conn:
            status = conn.execute(
                sa.select(hosts.c.status).where(hosts.c.name == self.name)
            ).scalar_one_or_none()
        return status or HostStatus.READY.value  # unregistered: nothing to fence

    def recover(self) -> None:
        """After a restart: unstarted claims go back to PENDING; started ones are kept by pid."""
        with transaction(self.engine) as conn:
            conn.execute(
                sessions.update()
                .where(
                    sessions.c.status == "PREPARING",
                    sessions.c.pid.is_(None),
                    sessions.c.runner == self.name,
                )
                .values(status="PENDING", runner=None, updated_at=sa.func.now())
            )

    def tick(self) -> None:
        if not self.fence() and self._status != HostStatus.LOST.value:
            self.start_pending()
        self.reap_exited()
        self.stop_terminating()

    def run_forever(self, interval_s: float = 0.5) -> None:
        registered = False

        def one_pass() -> None:
            nonlocal registered
            if not registered:  # the database may be down at start: register once it is up
                self.register()
                self.recover()
                registered = True
            if self.heartbeat is not None:
                self.heartbeat.ensure_running()  # started once registered, again if it died
            self.tick()

        repeat(f"host agent {self.name}", one_pass, interval_s)

    def start_pending(self) -> int:
        claimed = self._claim()
        for session_id, spec in claimed:
            self._start(session_id, spec)
        return len(claimed)

    def reap_exited(self) -> None:
        """A RUNNING session whose process is gone ended on its own: ERROR, with its exit
        code (when this runner started it) and the last lines of its output (with a log dir)."""
        for session_id, pid in self._sessions_with_pid(("PREPARING", "RUNNING")):
            if pid is None or self._alive(session_id, pid):
                continue
            exit_code = self._exit_code(session_id)
            log.warning("session %s: process %d exited on its own (%s)", session_id, pid, exit_code)
            self._finish(
                session_id,
                "ERROR",
                expected=("PREPARING", "RUNNING"),
                exit_code=exit_code,
                last_output=self._last_output(session_id),
            )

    def stop_terminating(self) -> None:
        for session_id, pid in self._sessions_with_pid(("TERMINATING",), with_unstarted=True):
            if pid is None or not self._alive(session_id, pid):
                self._finish(session_id, "TERMINATED", expected=("TERMINATING",))
                continue
            self._signal_stop(session_id, pid)

    def _signal_stop(self, session_id: UUID, pid: int) -> None:
        """SIGTERM first (requests in flight finish), SIGKILL after the grace period."""
        first = self._signalled.setdefault(session_id, time.monotonic())
        late = time.monotonic() - first > self.grace_s
        _signal_group(pid, signal.SIGKILL if late else signal.SIGTERM)

    def _claim(self) -> list[tuple[UUID, dict[str, Any]]]:
        """PENDING sessions placed on this host, or unplaced (no host was registered)."""
        here = sa.or_(sessions.c.placed_on == self.name, sessions.c.placed_on.is_(None))
        waiting = (
            sa.select(sessions.c.id)
            .where(sessions.c.status.in_(["PENDING", "SCHEDULED"]), here)
            .order_by(sessions.c.created_at)
            .limit(CLAIM_BATCH)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        claim = (
            sessions.update()
            .where(sessions.c.id.in_(waiting))
            .values(status="PREPARING", runner=self.name, updated_at=sa.func.now())
            .returning(sessions.c.id, sessions.c.spec)
        )
        with transaction(self.engine) as conn:
            return [(row.id, row.spec) for row in conn.execute(claim)]

    def _start(self, session_id: UUID, spec: dict[str, Any]) -> None:
        port = free_port()
        argv = shlex.split(spec.get("startup_command") or DEFAULT_COMMAND)
        if argv and argv[0] == "python":
            argv[0] = sys.executable  # the demo's command runs on this interpreter
        environ = {**os.environ, **spec.get("environ", {}), PORT_VARIABLE: str(port)}
        if self.host not in {"127.0.0.1", "localhost"}:
            environ[BIND_HOST_VARIABLE] = "0.0.0.0"  # reached from other hosts
        output = self._output(session_id)
        try:
            child = subprocess.Popen(
                argv, env=environ, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        except OSError as error:
            log.warning("session %s: cannot start %s: %s", session_id, argv, error)
            self._finish(session_id, "ERROR", expected=("PREPARING",))
            return
        finally:
            if output is not subprocess.DEVNULL:
                output.close()
        self._children[session_id] = child
        with transaction(self.engine) as conn:
            conn.execute(
                sessions.update()
                .where(sessions.c.id == session_id)
                .values(
                    host=self.host,
                    port=port,
                    pid=child.pid,
                    started_at=sa.func.now(),
                    updated_at=sa.func.now(),
                    # Marked for termination while starting: keep that, stop it next pass.
                    status=sa.case(
                        (sessions.c.status == "PREPARING", "RUNNING"), else_=sessions.c.status
                    ),
                )
            )
        log.info("session %s: started pid %d on port %d", session_id, child.pid, port)

    def _output(self, session_id: UUID) -> Any:
        if self.log_dir is None:
            return subprocess.DEVNULL
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return (self.log_dir / f"{session_id}.log").open("ab")

    def _alive(self, session_id: UUID, pid: int) -> bool:
        child = self._children.get(session_id)
        if child is not None:
            return child.poll() is None
        # A process a previous runner started: reap it if it is our child after all
        # (a runner restarted inside one process), else ask whether the pid lives.
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return False
        return process_alive(pid)

    def _sessions_with_pid(
        self, statuses: tuple[str, ...], *, with_unstarted: bool = False
    ) -> list[tuple[UUID, int | None]]:
        mine = sessions.c.runner == self.name
        if with_unstarted:  # a session nobody started can be ended by any runner
            mine = sa.or_(mine, sa.and_(sessions.c.runner.is_(None), sessions.c.pid.is_(None)))
        else:
            mine = sa.and_(mine, sessions.c.pid.is_not(None))
        query = sa.select(sessions.c.id, sessions.c.pid).where(
            sessions.c.status.in_(statuses), mine
        )
        with transaction(self.engine) as conn:
            return [(row.id, row.pid) for row in conn.execute(query)]

    def _exit_code(self, session_id: UUID) -> int | None:
        child = self._children.get(session_id)
        return None if child is None else child.returncode

    def _last_output(self, session_id: UUID) -> str | None:
        if self.log_dir is None:
            return None
        return last_lines(self.log_dir / f"{session_id}.log")

    def _finish(
        self,
        session_id: UUID,
        status: str,
        *,
        expected: tuple[str, ...],
        exit_code: int | None = None,
        last_output: str | None = None,
    ) -> None:
        with transaction(self.engine) as conn:
            conn.execute(
                sessions.update()
                .where(sessions.c.id == session_id, sessions.c.status.in_(expected))
                .values(
                    status=status,
                    exit_code=exit_code,
                    last_output=last_output,
                    terminated_at=sa.func.now(),
                    updated_at=sa.func.now(),
                )
            )
        self._children.pop(session_id, None)
        self._signalled.pop(session_id, None)
        log.info("session %s: %s", session_id, status)


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
