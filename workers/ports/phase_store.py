"""What a phase run reads and writes beyond the executors' ports."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from collections.abc import Set as AbstractSet
from contextlib import AbstractContextManager
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID

from workers.domain import (
    DeploymentInfo,
    EntityKind,
    RouteData,
    StatusTransition,
)
from workers.phase_runs import PhaseRun, PhaseRunState, RunSummary


class PhaseStore(Protocol):
    """What a phase run reads and writes beyond the executors' ports: its targets (by
    kind and status, or by a query of their own), guarded transitions with history, and
    its `phase_runs` record. `transaction()` yields the handle the `conn` arguments take:
    a run's close applies its transitions and closes its record in one transaction."""

    def transaction(self) -> AbstractContextManager[Any]: ...

    # -- entities, by kind --
    def ids(self, kind: EntityKind, statuses: AbstractSet[StrEnum]) -> list[UUID]:
        """The ids of the entities in `statuses`, in fan-out order."""
        ...

    def count(self, kind: EntityKind, statuses: AbstractSet[StrEnum]) -> int: ...

    def load(
        self,
        kind: EntityKind,
        statuses: AbstractSet[StrEnum],
        ids: Collection[UUID] | None = None,
        *,
        conn: Any = None,
    ) -> list[Any]:
        """The entities in `statuses` (and among `ids`, when given), in fan-out order."""
        ...

    def statuses(
        self, kind: EntityKind, ids: Collection[UUID], conn: Any
    ) -> dict[UUID, tuple[str, int]]:
        """Each entity's status value and retry count now (0 for a kind without one)."""
        ...

    def apply(
        self, kind: EntityKind, changes: Sequence[StatusTransition[Any]], *, conn: Any = None
    ) -> list[UUID]:
        """Guarded status changes plus a history row each: the ids whose guard held."""
        ...

    # -- targets a phase finds by a query of its own --
    def load_eviction_candidates(self) -> list[RouteData]: ...

    def load_routes_to_provision(self) -> list[RouteData]: ...

    def load_drained_routes(self) -> list[RouteData]: ...

    def load_scale_to_zero_candidates(self) -> list[DeploymentInfo]: ...

    def load_routes_starting(self) -> list[RouteData]: ...

    def load_autoscaled(self) -> list[DeploymentInfo]: ...

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
        """Record a run as started now; None when a run of `phase` is open already."""
        ...

    def open_run_of(self, phase: str) -> PhaseRun | None: ...

    def is_running(self, run_id: UUID) -> bool: ...

    def claim_running(self, conn: Any, run_id: UUID) -> PhaseRun | None:
        """Lock a still-running run for closing; None when another closer got there first."""
        ...

    def close_run(
        self, conn: Any, run_id: UUID, state: PhaseRunState, summary: RunSummary
    ) -> PhaseRun: ...

    def overdue_run_ids(self) -> list[UUID]: ...

    def forget_runs_finished_before(self, age_s: float, *, limit: int = 10_000) -> int: ...

    def running_run_ids(self) -> list[UUID]: ...

    def get_run(self, run_id: UUID) -> PhaseRun | None: ...

    def recent_runs(self, *, phase: str | None = None, limit: int = 20) -> list[PhaseRun]: ...

    def latest_run_per_phase(self) -> list[PhaseRun]: ...
