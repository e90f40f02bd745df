"""What the host agent reads and writes in PostgreSQL: its host row, and the `sessions` rows
of its own (the contract with the controller, see `workers.adapters.postgres.scheduler`).

Each write is one short transaction, so a database that goes away mid-pass costs that
write only; the agent tries again at its next pass.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from workers.adapters.postgres.engine import transaction
from workers.adapters.postgres.hosts import give_up_sessions, restore_to_intent
from workers.adapters.postgres.schema import TERMINAL_SESSION_STATUSES, hosts, sessions
from workers.adapters.postgres.terms import LIVE_SESSION, SESSION_HOST
from workers.domain import Device, HostStatus, SessionStatus
from workers.phase_names import AGENT
from workers.standalone.gpus import Machine
from workers.standalone.process_identity import ProcessIdentity

CLAIM_BATCH = 16
# What starting a session needs: its spec and the devices it was given.
_TO_START = (sessions.c.id, sessions.c.spec, sessions.c.gpu_devices, sessions.c.gpu_gib)
log = logging.getLogger(__name__)
_PREPARING, _RUNNING = SessionStatus.PREPARING.value, SessionStatus.RUNNING.value


@dataclass(frozen=True)
class SessionProcess:
    """One of the agent's sessions and the process it recorded for it."""

    session_id: UUID
    pid: int | None
    identity: ProcessIdentity | None  # None: not recorded (started by an older agent)
    port: int | None = None
    spec: dict[str, Any] | None = None
    gpu_devices: tuple[int, ...] = ()  # the devices placement gave it
    gpu_gib: float = 0.0


@dataclass(frozen=True)
class AgentRows:
    engine: sa.Engine
    name: str

    def register(self, address: str, slots: int, machine: Machine | None = None) -> str:
        """The host row: a new host is ready; a known one keeps its status and intent and
        gets this address, slots and resources (read again at every start: a device gone
        since, and the sessions it held are given up and replaced elsewhere). Its heartbeat
        is the heartbeat's to write."""
        machine = machine or Machine((), 0.0, 0.0)
        reported = {"address": address, "slots": slots, "cpus": machine.cpus,
                    "memory_gib": machine.memory_gib,
                    "devices": [d.to_json() for d in machine.devices]}  # fmt: skip
        statement = (
            insert(hosts)
            .values(id=uuid4(), name=self.name, **reported)
            .on_conflict_do_update(index_elements=[hosts.c.name], set_=reported)
            .returning(hosts.c.status)
        )
        with transaction(self.engine) as conn:
            status = str(conn.execute(statement).scalar_one())
            self._give_up_unfit(conn, machine.devices)
        return status

    def _give_up_unfit(self, conn: sa.Connection, devices: Sequence[Device]) -> None:
        """Live sessions holding a device this host no longer has, or more of one than it
        now has, are given up (their routes replaced elsewhere)."""
        memory = {d.index: d.memory_gib for d in devices}
        held = conn.execute(
            sa.select(sessions.c.id, sessions.c.gpu_devices, sessions.c.gpu_gib).where(
                SESSION_HOST.in_([self.name]), LIVE_SESSION, sessions.c.gpu_devices.is_not(None)
            )
        ).all()
        used: dict[int, float] = {}
        unfit = []
        for session_id, indices, gib in held:
            for index in indices:
                used[index] = used.get(index, 0.0) + gib
            if any(i not in memory or used[i] > memory[i] + 1e-6 for i in indices):
                unfit.append(session_id)
        if unfit:
            why = f"its GPU is gone from host {self.name} (devices read again at its start)"
            log.warning("host %s: %d sessions hold devices it no longer has: given up",
                        self.name, len(unfit))  # fmt: skip
            give_up_sessions(conn, sessions.c.id.in_(unfit), why, AGENT, "device_gone")

    def host_status(self) -> str:
        with transaction(self.engine) as conn:
            status = conn.execute(
                sa.select(hosts.c.status).where(hosts.c.name == self.name)
            ).scalar_one_or_none()
        return status or HostStatus.READY.value  # unregistered: nothing to fence

    def back_from_lost(self) -> None:
        why = "back: every process the controller gave up is stopped"
        with transaction(self.engine) as conn:
            restore_to_intent(conn, {self.name}, HostStatus.LOST, AGENT, why)

    def claim(self) -> list[SessionProcess]:
        """PENDING sessions placed on this host, or unplaced (no host was registered),
        become PREPARING in its name (`FOR UPDATE SKIP LOCKED`)."""
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
            .values(status=_PREPARING, runner=self.name, updated_at=sa.func.now())
            .returning(*_TO_START)
        )
        with transaction(self.engine) as conn:
            return [_to_start(row) for row in conn.execute(claim)]

    def preparing(self) -> list[SessionProcess]:
        """This agent's claims not recorded as started yet."""
        query = sa.select(*_TO_START).where(
            sessions.c.runner == self.name,
            sessions.c.status == _PREPARING,
            sessions.c.pid.is_(None),
        )
        with transaction(self.engine) as conn:
            return [_to_start(row) for row in conn.execute(query)]

    def record_started(self, session_id: UUID, address: str, port: int,
                       identity: ProcessIdentity) -> None:  # fmt: skip
        """The process started for the session: RUNNING, unless it was marked for
        termination meanwhile (then that stays, and the next pass stops it)."""
        with transaction(self.engine) as conn:
            conn.execute(
                sessions.update()
                .where(sessions.c.id == session_id)
                .values(
                    host=address,
                    port=port,
                    pid=identity.pid,
                    process_started_ticks=identity.started_ticks,
                    boot_id=identity.boot_id,
                    started_at=sa.func.now(),
                    updated_at=sa.func.now(),
                    status=sa.case(
                        (sessions.c.status == _PREPARING, _RUNNING), else_=sessions.c.status
                    ),
                )
            )

    def with_process(
        self, statuses: tuple[str, ...], *, with_unstarted: bool = False
    ) -> list[SessionProcess]:
        """This agent's sessions in `statuses` with a process recorded (and, with
        `with_unstarted`, any session nobody started, which any agent may end)."""
        mine = sessions.c.runner == self.name
        if with_unstarted:
            mine = sa.or_(mine, sa.and_(sessions.c.runner.is_(None), sessions.c.pid.is_(None)))
        else:
            mine = sa.and_(mine, sessions.c.pid.is_not(None))
        query = _processes().where(sessions.c.status.in_(statuses), mine)
        with transaction(self.engine) as conn:
            return [_process(row) for row in conn.execute(query)]

    def ended_since(self, since: datetime | None, overlap: timedelta) -> tuple[
        list[SessionProcess], datetime
    ]:  # fmt: skip
        """This agent's sessions that ended (any terminal status) since `since` (all of
        them when None) with a process recorded; and the database's now."""
        mine = sa.and_(
            sessions.c.runner == self.name,
            sessions.c.pid.is_not(None),
            sessions.c.status.in_(TERMINAL_SESSION_STATUSES),
        )
        if since is not None:
            mine = sa.and_(mine, sessions.c.updated_at >= since - overlap)
        with transaction(self.engine) as conn:
            now = conn.execute(sa.select(sa.func.now())).scalar_one()
            found = [_process(row) for row in conn.execute(_processes().where(mine))]
        return found, now

    def finish(self, session_id: UUID, status: str, *, expected: tuple[str, ...],
               exit_code: int | None = None, last_output: str | None = None) -> None:  # fmt: skip
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


def _processes() -> sa.Select[Any]:
    return sa.select(
        sessions.c.id,
        sessions.c.pid,
        sessions.c.process_started_ticks,
        sessions.c.boot_id,
        sessions.c.port,
    )


def _process(row: Any) -> SessionProcess:
    identity = None
    if row.pid is not None and row.process_started_ticks is not None:
        identity = ProcessIdentity(row.pid, row.process_started_ticks, row.boot_id or "")
    return SessionProcess(row.id, row.pid, identity, row.port)


def _to_start(row: Any) -> SessionProcess:
    devices = tuple(row.gpu_devices or ())
    return SessionProcess(row.id, None, None, spec=row.spec, gpu_devices=devices,
                          gpu_gib=row.gpu_gib)  # fmt: skip
