"""What the host agent reads and writes in PostgreSQL: its host row, and the `sessions` rows
of its own (the contract with the controller, see `workers.adapters.postgres.scheduler`).

Each write is one short transaction, so a database that goes away mid-pass costs that
write only; the agent tries again at its next pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from workers.adapters.postgres.engine import transaction
from workers.adapters.postgres.hosts import restore_to_intent
from workers.adapters.postgres.schema import TERMINAL_SESSION_STATUSES, hosts, sessions
from workers.domain import HostStatus, SessionStatus
from workers.phase_names import AGENT
from workers.standalone.process_identity import ProcessIdentity

CLAIM_BATCH = 16
_PREPARING, _RUNNING = SessionStatus.PREPARING.value, SessionStatus.RUNNING.value


@dataclass(frozen=True)
class SessionProcess:
    """One of the agent's sessions and the process it recorded for it."""

    session_id: UUID
    pid: int | None
    identity: ProcessIdentity | None  # None: not recorded (started by an older agent)
    port: int | None = None
    spec: dict[str, Any] | None = None


@dataclass(frozen=True)
class AgentRows:
    engine: sa.Engine
    name: str

    def register(self, address: str, slots: int) -> str:
        """The host row: a new host is ready; a known one keeps its status and intent and
        gets this address and slots. Its heartbeat is the heartbeat's to write."""
        statement = (
            insert(hosts)
            .values(id=uuid4(), name=self.name, address=address, slots=slots)
            .on_conflict_do_update(
                index_elements=[hosts.c.name], set_={"address": address, "slots": slots}
            )
            .returning(hosts.c.status)
        )
        with transaction(self.engine) as conn:
            return str(conn.execute(statement).scalar_one())

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
            .returning(sessions.c.id, sessions.c.spec)
        )
        with transaction(self.engine) as conn:
            return [SessionProcess(r.id, None, None, spec=r.spec) for r in conn.execute(claim)]

    def preparing(self) -> list[SessionProcess]:
        """This agent's claims not recorded as started yet."""
        query = sa.select(sessions.c.id, sessions.c.spec).where(
            sessions.c.runner == self.name,
            sessions.c.status == _PREPARING,
            sessions.c.pid.is_(None),
        )
        with transaction(self.engine) as conn:
            return [SessionProcess(r.id, None, None, spec=r.spec) for r in conn.execute(query)]

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
