"""How a phase is declared: its targets, its executor call, and its transitions as data.

Each phase module (`tasks/routes/provision.py`, ...) holds one `Phase`, the row of
the phase table it implements (`modelfleet phase list` prints the table). `tasks.runs`
does everything else (lock, run record, fan-out, callback, follow-ups) the same way for
every phase.

An executor's result becomes `Outcome` records once, in the header task
(`Kind.outcomes`); the callback derives the transitions from those records
and the entities as they are now, never from a rebuilt executor result.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from uuid import UUID

from workers.composition import Adapters
from workers.domain import (
    DeploymentExecutionResult,
    DeploymentInfo,
    DeploymentLifecycle,
    EntityKind,
    HostExecutionResult,
    HostInfo,
    HostStatus,
    OutcomeBucket,
    RouteData,
    RouteExecutionResult,
    RouteStatus,
    StatusTransition,
)
from workers.phase_names import PhaseName
from workers.phase_runs import Outcome, deployment_outcomes, host_outcomes, route_outcomes

StatusT = TypeVar("StatusT", RouteStatus, DeploymentLifecycle, HostStatus)
EntityT = TypeVar("EntityT", RouteData, DeploymentInfo, HostInfo)
ResultT = TypeVar("ResultT", RouteExecutionResult, DeploymentExecutionResult, HostExecutionResult)

# What follows at once when routes leave service: traffic first (they leave service
# discovery now), then the process (routes.drain stops them after drain_s).
LEAVING_SERVICE = (PhaseName.SYNC_SERVICE_DISCOVERY, PhaseName.DRAIN)


@dataclass(frozen=True)
class Move(Generic[StatusT]):
    """The entity moves to `to` (nothing is written if it is already there, unless an error)."""

    to: StatusT


@dataclass(frozen=True)
class Stay:
    """The entity stays where it is; a history row says why (a deployment counts a retry)."""


@dataclass(frozen=True)
class StayUntil(Generic[StatusT]):
    """Stay and count a retry; after `tries` failed tries in a row, move to `then`."""

    tries: int
    then: StatusT


Action = Move[StatusT] | Stay | StayUntil[StatusT]


@dataclass(frozen=True)
class Current(Generic[StatusT]):
    """An entity's status (and retry count) as a run's callback finds it."""

    status: StatusT
    retries: int = 0


@dataclass(frozen=True)
class Kind(Generic[EntityT, StatusT, ResultT]):
    """What a phase needs to know of the entities it moves, beyond where they are stored
    (the phase store keeps one record per `EntityKind` for that)."""

    name: EntityKind
    all_statuses: tuple[StatusT, ...]  # in their enum's order
    outcomes: Callable[[ResultT], list[Outcome]]  # the executor's result, as records
    status_of: Callable[[EntityT], StatusT]
    retries_of: Callable[[EntityT], int]


ROUTES: Kind[RouteData, RouteStatus, RouteExecutionResult] = Kind(
    name=EntityKind.ROUTE,
    all_statuses=tuple(RouteStatus),
    outcomes=route_outcomes,
    status_of=lambda route: route.status,
    retries_of=lambda route: 0,
)

DEPLOYMENTS: Kind[DeploymentInfo, DeploymentLifecycle, DeploymentExecutionResult] = Kind(
    name=EntityKind.DEPLOYMENT,
    all_statuses=tuple(DeploymentLifecycle),
    outcomes=deployment_outcomes,
    status_of=lambda deployment: deployment.lifecycle,
    retries_of=lambda deployment: deployment.retry_count,
)

HOSTS: Kind[HostInfo, HostStatus, HostExecutionResult] = Kind(
    name=EntityKind.HOST,
    all_statuses=tuple(HostStatus),
    outcomes=host_outcomes,
    status_of=lambda host: host.status,
    retries_of=lambda host: 0,
)


@dataclass(frozen=True)
class Phase(Generic[EntityT, StatusT, ResultT]):
    """One row of the phase table."""

    name: PhaseName
    kind: Kind[EntityT, StatusT, ResultT]
    targets: frozenset[StatusT]
    execute: Callable[[Adapters, list[EntityT]], ResultT]
    on: Mapping[OutcomeBucket, Action[StatusT]] = field(default_factory=dict)
    # Phases to start at once when a transition of that bucket was applied.
    follow_ups: Mapping[OutcomeBucket, tuple[PhaseName, ...]] = field(default_factory=dict)
    # Phases to start at once when any item landed in that bucket, moved or not (an
    # executor that changes routes while its own entity stays, like a rollout step).
    follow_ups_on_outcome: Mapping[OutcomeBucket, tuple[PhaseName, ...]] = field(
        default_factory=dict
    )
    # Where the targets come from when "every entity in `targets`" is not the answer,
    # and which of them it chooses, in words (for the phase table).
    load_targets: Callable[[Adapters], Sequence[EntityT]] | None = None
    chosen_by: str = ""
    # One header task gets every item: the phase acts on the set as a whole.
    whole_set: bool = False
    # Each item is a call to another service (the app proxy): one header task per item.
    remote_items: bool = False
    # An error here says the route's revision is bad: it counts as a failure of that
    # revision, which a rollout to it judges (`failure_threshold`).
    judges_revision: bool = False
    # What its errors and waits say becomes the deployment's condition (REASON) until it
    # moves on; not for an outcome that leaves it serving (a rollback).
    explains: bool = True

    def __post_init__(self) -> None:
        if self.load_targets is not None and not self.chosen_by:
            raise ValueError(f"{self.name}: a phase with load_targets says how it chooses")

    def follow_ups_after(
        self, applied: Collection[OutcomeBucket], seen: Collection[OutcomeBucket]
    ) -> set[str]:
        """The phases to start now, given the buckets of applied transitions and of outcomes."""
        return {name for bucket in applied for name in self.follow_ups.get(bucket, ())} | {
            name for bucket in seen for name in self.follow_ups_on_outcome.get(bucket, ())
        }

    def targets_now(self, adapters: Adapters) -> Sequence[EntityT]:
        if self.load_targets is not None:
            return self.load_targets(adapters)
        return adapters.phase_store.load(self.kind.name, self.targets)

    def target_ids(self, adapters: Adapters) -> list[UUID]:
        """The ids of the targets now (only ids: each task loads its items fresh)."""
        if self.load_targets is not None:
            return [item.id for item in self.load_targets(adapters)]
        return adapters.phase_store.ids(self.kind.name, self.targets)

    def target_count(self, adapters: Adapters) -> int | None:
        """How many targets there are now; None for a phase with its own `load_targets`
        (they are found by a query of their own, not counted by status)."""
        if self.load_targets is not None:
            return None
        return adapters.phase_store.count(self.kind.name, self.targets)

    def load_items(self, adapters: Adapters, ids: Sequence[UUID]) -> list[EntityT]:
        """The items as they are now, if still in one of the phase's statuses."""
        return adapters.phase_store.load(self.kind.name, self.targets, ids)

    def load_current(
        self, adapters: Adapters, ids: Sequence[UUID], conn: Any
    ) -> dict[UUID, Current[StatusT]]:
        """The items' statuses now, in any status (the callback decides what applies):
        two columns, not the whole entities the header tasks worked on."""
        by_value = {status.value: status for status in self.kind.all_statuses}
        found = adapters.phase_store.statuses(self.kind.name, ids, conn)
        return {i: Current(by_value[status], retries) for i, (status, retries) in found.items()}

    def _current(self, entity: EntityT) -> Current[StatusT]:
        return Current(self.kind.status_of(entity), self.kind.retries_of(entity))

    def outcomes(self, result: ResultT) -> list[Outcome]:
        return self.kind.outcomes(result)

    def transitions(
        self, outcomes: Sequence[Outcome], current: Mapping[UUID, EntityT | Current[StatusT]]
    ) -> list[StatusTransition[StatusT]]:
        """The phase table's transitions for the outcomes of entities that still exist,
        guarded by the target statuses."""
        changes = []
        for outcome in outcomes:
            entity = current.get(outcome.id)
            change = None if entity is None else self._transition(outcome, entity)
            if change is not None:
                changes.append(change)
        return changes

    def apply(
        self, adapters: Adapters, changes: Sequence[StatusTransition[StatusT]], conn: Any
    ) -> list[UUID]:
        return adapters.phase_store.apply(self.kind.name, changes, conn=conn)

    def _transition(
        self, outcome: Outcome, entity: EntityT | Current[StatusT]
    ) -> StatusTransition[StatusT] | None:
        action = self.on.get(outcome.bucket)
        if action is None:
            return None
        now = entity if isinstance(entity, Current) else self._current(entity)
        to_status = _destination(action, now.retries)
        if to_status == now.status and not outcome.says_why:
            return None  # nothing changes and there is nothing to say: no history row
        return StatusTransition(
            entity_id=outcome.id,
            expected=self.targets,
            to_status=to_status,
            phase=self.name,
            result=outcome.bucket,
            error_code=outcome.error_code,
            message=outcome.message,
            revision_failure=self.judges_revision and outcome.bucket is OutcomeBucket.ERROR,
            explains=self.explains and outcome.says_why,
        )


def _destination(action: Action[StatusT], retries: int) -> StatusT | None:
    if isinstance(action, Move):
        return action.to
    if isinstance(action, StayUntil) and retries + 1 >= action.tries:
        return action.then
    return None


AnyPhase = Phase[Any, Any, Any]
