"""What the phase tasks read and write in PostgreSQL, beyond the executors' repository.

Targets by status or id, guarded transitions with history, and the
`phase_runs` record. Writes take the caller's connection where a phase needs
several of them in one transaction (the chord callback: transitions, history
and the run's counts commit together).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import distinct_on

from workers.adapters.postgres import phase_targets, traffic_autoscaling, transitions
from workers.adapters.postgres.engine import joined, transaction
from workers.adapters.postgres.entity_kinds import STORED_KINDS
from workers.adapters.postgres.schema import phase_runs
from workers.domain import DeploymentInfo, EntityKind, RouteData, StatusTransition
from workers.phase_runs import OutcomeCounts, PhaseRun, PhaseRunState, RunSummary

_RUNNING = PhaseRunState.RUNNING.value
_ONE_OPEN_RUN = "uq_phase_runs_phase_running"


class PostgresPhaseStore:
    def __init__(self, *, engine: sa.Engine) -> None:
        self._engine = engine

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        with transaction(self._engine) as conn:
            yield conn

    # -- entities, by kind --
    def ids(self, kind: EntityKind, statuses: AbstractSet[StrEnum]) -> list[UUID]:
        """The ids of the entities in `statuses`, in fan-out order (each task loads its own)."""
        stored = STORED_KINDS[kind]
        with transaction(self._engine) as conn:
            return phase_targets.target_ids(conn, stored.status, statuses, *stored.order)

    def count(self, kind: EntityKind, statuses: AbstractSet[StrEnum]) -> int:
        with transaction(self._engine) as conn:
            return phase_targets.count_in(conn, STORED_KINDS[kind].status, statuses)

    def load(
        self,
        kind: EntityKind,
        statuses: AbstractSet[StrEnum],
        ids: Collection[UUID] | None = None,
        *,
        conn: sa.Connection | None = None,
    ) -> list[Any]:
        """The entities in `statuses` (and among `ids`, when given), in fan-out order."""
        with joined(self._engine, conn) as c:
            return STORED_KINDS[kind].load(c, statuses, ids)

    def statuses(
        self, kind: EntityKind, ids: Collection[UUID], conn: sa.Connection
    ) -> transitions.Statuses:
        """Each entity's status and retry count now: what a run's close decides from."""
        return STORED_KINDS[kind].statuses(conn, ids)

    def apply(
        self,
        kind: EntityKind,
        changes: Sequence[StatusTransition[Any]],
        *,
        conn: sa.Connection | None = None,
    ) -> list[UUID]:
        """Guarded status changes plus history (see `transitions`): the ids that moved."""
        with joined(self._engine, conn) as c:
            return STORED_KINDS[kind].apply(c, changes)

    # -- targets a phase finds by a query of its own --
    def load_eviction_candidates(self) -> list[RouteData]:
        with transaction(self._engine) as conn:
            return phase_targets.load_eviction_candidates(conn)

    def load_routes_to_provision(self) -> list[RouteData]:
        with transaction(self._engine) as conn:
            return phase_targets.load_routes_to_provision(conn)

    def load_drained_routes(self) -> list[RouteData]:
        with transaction(self._engine) as conn:
            return phase_targets.load_drained_routes(conn)

    def load_scale_to_zero_candidates(self) -> list[DeploymentInfo]:
        with transaction(self._engine) as conn:
            return phase_targets.load_scale_to_zero_candidates(conn)

    def load_autoscaled(self) -> list[DeploymentInfo]:
        """Ready deployments, and deployments being rolled out, whose autoscaler is on."""
        with transaction(self._engine) as conn:
            return traffic_autoscaling.tracked(conn)

    def load_routes_starting(self) -> list[RouteData]:
        with transaction(self._engine) as conn:
            return phase_targets.load_routes_starting(conn)

    # -- phase runs --
    def open_run(
        self,
        phase: str,
        *,
        item_count: int,
        task_count: int,
        lock_token: str,
        deadline_s: float,
        run_id: UUID | None = None,
    ) -> PhaseRun | None:
        """Record a run as started now (database clock), due by `deadline_s` from now.

        None when a run of `phase` is open already: the database, not the Redis
        lock alone, guarantees that a phase never runs twice at once.
        """
        statement = (
            phase_runs.insert()
            .values(
                id=run_id or uuid4(),
                phase=phase,
                item_count=item_count,
                task_count=task_count,
                lock_token=lock_token,
                deadline_at=sa.func.now() + sa.func.make_interval(0, 0, 0, 0, 0, 0, deadline_s),
            )
            .returning(*phase_runs.c)
        )
        try:
            with transaction(self._engine) as conn:
                return _run_from_row(conn.execute(statement).mappings().one())
        except sa.exc.IntegrityError as error:
            if _ONE_OPEN_RUN not in str(error.orig):
                raise
            return None

    def open_run_of(self, phase: str) -> PhaseRun | None:
        """The run of `phase` that is open now, if any."""
        query = sa.select(*phase_runs.c).where(
            phase_runs.c.phase == phase, phase_runs.c.state == _RUNNING
        )
        with transaction(self._engine) as conn:
            row = conn.execute(query).mappings().one_or_none()
        return None if row is None else _run_from_row(row)

    def is_running(self, run_id: UUID) -> bool:
        query = sa.select(phase_runs.c.state).where(phase_runs.c.id == run_id)
        with transaction(self._engine) as conn:
            return conn.execute(query).scalar() == _RUNNING

    def claim_running(self, conn: sa.Connection, run_id: UUID) -> PhaseRun | None:
        """Lock a still-running run for closing; None when another closer got there first."""
        query = (
            sa.select(*phase_runs.c)
            .where(phase_runs.c.id == run_id, phase_runs.c.state == _RUNNING)
            .with_for_update()
        )
        row = conn.execute(query).mappings().one_or_none()
        return None if row is None else _run_from_row(row)

    def close_run(
        self,
        conn: sa.Connection,
        run_id: UUID,
        state: PhaseRunState,
        summary: RunSummary,
    ) -> PhaseRun:
        counts = summary.counts
        statement = (
            phase_runs.update()
            .where(phase_runs.c.id == run_id)
            .values(
                state=state.value,
                finished_at=sa.func.now(),
                duration_s=sa.extract("epoch", sa.func.now() - phase_runs.c.started_at),
                success_count=counts.success,
                error_count=counts.error,
                stale_count=counts.stale,
                skipped_count=counts.skipped,
                waiting_count=counts.waiting,
                missing_count=counts.missing,
                transition_count=summary.transition_count,
                error=summary.error,
                error_samples=list(summary.error_samples),
            )
            .returning(*phase_runs.c)
        )
        return _run_from_row(conn.execute(statement).mappings().one())

    def overdue_run_ids(self) -> list[UUID]:
        """Runs still open past their deadline, oldest first."""
        query = (
            sa.select(phase_runs.c.id)
            .where(phase_runs.c.state == _RUNNING, phase_runs.c.deadline_at < sa.func.now())
            .order_by(phase_runs.c.deadline_at)
        )
        with transaction(self._engine) as conn:
            return list(conn.execute(query).scalars())

    def forget_runs_finished_before(self, age_s: float, *, limit: int = 10_000) -> int:
        """Delete up to `limit` closed runs that finished over `age_s` ago; returns how many."""
        old = (
            sa.select(phase_runs.c.id)
            .where(
                phase_runs.c.state != _RUNNING,
                phase_runs.c.finished_at
                < sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, age_s),
            )
            .limit(limit)
            .scalar_subquery()
        )
        with transaction(self._engine) as conn:
            return int(conn.execute(phase_runs.delete().where(phase_runs.c.id.in_(old))).rowcount)

    def running_run_ids(self) -> list[UUID]:
        query = sa.select(phase_runs.c.id).where(phase_runs.c.state == _RUNNING)
        with transaction(self._engine) as conn:
            return list(conn.execute(query).scalars())

    def get_run(self, run_id: UUID) -> PhaseRun | None:
        query = sa.select(*phase_runs.c).where(phase_runs.c.id == run_id)
        with transaction(self._engine) as conn:
            row = conn.execute(query).mappings().one_or_none()
        return None if row is None else _run_from_row(row)

    def recent_runs(self, *, phase: str | None = None, limit: int = 20) -> list[PhaseRun]:
        query = sa.select(*phase_runs.c).order_by(phase_runs.c.started_at.desc()).limit(limit)
        if phase is not None:
            query = query.where(phase_runs.c.phase == phase)
        with transaction(self._engine) as conn:
            return [_run_from_row(row) for row in conn.execute(query).mappings()]

    def latest_run_per_phase(self) -> list[PhaseRun]:
        query = (
            sa.select(*phase_runs.c)
            .ext(distinct_on(phase_runs.c.phase))
            .order_by(phase_runs.c.phase, phase_runs.c.started_at.desc())
        )
        with transaction(self._engine) as conn:
            return [_run_from_row(row) for row in conn.execute(query).mappings()]


def _run_from_row(m: sa.RowMapping) -> PhaseRun:
    return PhaseRun(
        id=m["id"],
        phase=m["phase"],
        state=PhaseRunState(m["state"]),
        started_at=m["started_at"],
        deadline_at=m["deadline_at"],
        item_count=m["item_count"],
        task_count=m["task_count"],
        lock_token=m["lock_token"],
        finished_at=m["finished_at"],
        duration_s=m["duration_s"],
        summary=RunSummary(
            counts=OutcomeCounts(
                success=m["success_count"],
                error=m["error_count"],
                stale=m["stale_count"],
                skipped=m["skipped_count"],
                waiting=m["waiting_count"],
                missing=m["missing_count"],
            ),
            transition_count=m["transition_count"],
            error=m["error"],
            error_samples=m["error_samples"],
        ),
    )
