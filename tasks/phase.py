"""How a phase is declared: its targets, its executor call, and its transitions as data.

Each phase module (`tasks/routes/provision.py`, ...) holds one `Phase`, the row
of DESIGN.md's phase table it implements. `tasks.runs` does everything else
(lock, run record, fan-out, callback, follow-ups) the same way for every phase.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from uuid import UUID

import sqlalchemy as sa

from workers.adapters.postgres.phase_store import PostgresPhaseStore
from workers.composition import Adapters
from workers.domain import (
    DeploymentExecutionResult,
    DeploymentInfo,
    DeploymentLifecycle,
    OutcomeBucket,
    RouteData,
    RouteExecutionResult,
    RouteStatus,
    StatusTransition,
)
from workers.phase_names import PhaseName
from workers.phase_runs import (
    Entry,
    Outcome,
    deployment_entries,
    deployment_result,
    outcomes_of,
    route_entries,
    route_result,
)

StatusT = TypeVar("StatusT", RouteStatus, DeploymentLifecycle)

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


Action = Move[Any] | Stay | StayUntil[Any]


@dataclass(frozen=True)
class EntityKind:
    """What differs between route phases and deployment phases."""

    name: str
    all_statuses: frozenset[Any]
    load: Callable[..., Sequence[Any]]  # (store, statuses, ids, conn=) -> entities
    entries: Callable[[Any], list[Entry]]  # seed result -> (bucket, entity, error) per entity
    result: Callable[[list[Outcome], Mapping[UUID, Any]], Any]  # records -> seed result
    status_of: Callable[[Any], Any]
    retries_of: Callable[[Any], int]
    apply: Callable[..., list[UUID]]  # (store, transitions, conn=) -> applied ids

    def outcomes(self, result: Any) -> list[Outcome]:
        """The compact records a header task returns for an executor's result."""
        return outcomes_of(self.entries(result))


ROUTES = EntityKind(
    name="route",
    all_statuses=frozenset(RouteStatus),
    load=PostgresPhaseStore.load_routes,
    entries=route_entries,
    result=route_result,
    status_of=lambda route: route.status,
    retries_of=lambda route: 0,
    apply=PostgresPhaseStore.apply_route_transitions,
)

DEPLOYMENTS = EntityKind(
    name="deployment",
    all_statuses=frozenset(DeploymentLifecycle),
    load=PostgresPhaseStore.load_deployments,
    entries=deployment_entries,
    result=deployment_result,
    status_of=lambda deployment: deployment.lifecycle,
    retries_of=lambda deployment: deployment.retry_count,
    apply=PostgresPhaseStore.apply_deployment_transitions,
)

Result = RouteExecutionResult | DeploymentExecutionResult
Item = RouteData | DeploymentInfo


@dataclass(frozen=True)
class Phase:
    """One row of the phase table."""

    name: str
    kind: EntityKind
    targets: frozenset[Any]
    execute: Callable[[Adapters, list[Any]], Result]
    on: Mapping[OutcomeBucket, Action] = field(default_factory=dict)
    # Phases to start at once when a transition of that bucket was applied.
    follow_ups: Mapping[OutcomeBucket, tuple[str, ...]] = field(default_factory=dict)
    # Phases to start at once when any item landed in that bucket, moved or not (an
    # executor that changes routes while its own entity stays, like a rollout step).
    follow_ups_on_outcome: Mapping[OutcomeBucket, tuple[str, ...]] = field(default_factory=dict)
    # Where the targets come from when "every entity in `targets`" is not the answer.
    load_targets: Callable[[Adapters], Sequence[Item]] | None = None
    # One header task gets every item: the phase acts on the set as a whole.
    whole_set: bool = False
    # Each item is a call to another service (the app proxy): one header task per item.
    remote_items: bool = False
    # An error here says the route's revision is bad: it counts as a failure of that
    # revision, which a rollout to it judges (`failure_threshold`).
    judges_revision: bool = False

    def follow_ups_after(
        self, applied: Collection[OutcomeBucket], seen: Collection[OutcomeBucket]
    ) -> set[str]:
        """The phases to start now, given the buckets of applied transitions and of outcomes."""
        return {name for bucket in applied for name in self.follow_ups.get(bucket, ())} | {
            name for bucket in seen for name in self.follow_ups_on_outcome.get(bucket, ())
        }

    def targets_now(self, adapters: Adapters) -> Sequence[Item]:
        if self.load_targets is not None:
            return self.load_targets(adapters)
        loaded: Sequence[Item] = self.kind.load(adapters.phase_store, self.targets)
        return loaded

    def load_items(self, adapters: Adapters, ids: Sequence[UUID]) -> list[Item]:
        """The items as they are now, if still in one of the phase's statuses."""
        return list(self.kind.load(adapters.phase_store, self.targets, ids))

    def load_current(self, adapters: Adapters, ids: Sequence[UUID], conn: sa.Connection) -> Any:
        """The items as they are now, in any status (the callback decides what applies)."""
        return {
            item.id: item
            for item in self.kind.load(adapters.phase_store, self.kind.all_statuses, ids, conn=conn)
        }

    def transitions(self, result: Result) -> list[StatusTransition[Any]]:
        """The phase table's transitions for a rebuilt result, guarded by the target statuses."""
        changes = []
        for bucket, entity, error in self.kind.entries(result):
            change = self._transition(bucket, entity, error)
            if change is not None:
                changes.append(change)
        return changes

    def _transition(
        self, bucket: OutcomeBucket, entity: Any, error: Any
    ) -> StatusTransition[Any] | None:
        action = self.on.get(bucket)
        if action is None:
            return None
        to_status = _destination(action, self.kind.retries_of(entity))
        if to_status == self.kind.status_of(entity) and error is None:
            return None  # nothing changes and there is nothing to say: no history row
        return StatusTransition(
            entity_id=entity.id,
            expected=self.targets,
            to_status=to_status,
            phase=self.name,
            result=bucket,
            error_code=None if error is None else error.error_code,
            message="" if error is None else f"{error.reason}: {error.error_detail}",
            revision_failure=self.judges_revision and bucket is OutcomeBucket.ERROR,
        )


def _destination(action: Action, retries: int) -> Any:
    if isinstance(action, Move):
        return action.to
    if isinstance(action, StayUntil) and retries + 1 >= action.tries:
        return action.then
    return None
