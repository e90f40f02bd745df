"""What the executors return (the seeds' result types) and the status changes phases apply."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar
from uuid import UUID

from workers.domain.entities import DeploymentInfo, RouteData
from workers.domain.hosts import HostInfo
from workers.domain.statuses import DeploymentLifecycle, HostStatus, OutcomeBucket, RouteStatus


@dataclass
class RouteExecutionError:
    route_info: RouteData
    reason: str
    error_detail: str
    error_code: str | None = None


@dataclass
class RouteExecutionResult:
    successes: list[RouteData] = field(default_factory=list)
    errors: list[RouteExecutionError] = field(default_factory=list)
    stale: list[RouteData] = field(default_factory=list)
    # Not done yet: the phase comes back to them (a session no host has room for).
    waiting: list[RouteData] = field(default_factory=list)
    reasons: dict[UUID, RouteExecutionError] = field(default_factory=dict)


@dataclass
class DeploymentExecutionError:
    deployment_info: DeploymentInfo
    reason: str
    error_detail: str
    error_code: str | None = None


@dataclass
class DeploymentExecutionResult:
    successes: list[DeploymentInfo] = field(default_factory=list)
    errors: list[DeploymentExecutionError] = field(default_factory=list)
    skipped: list[DeploymentInfo] = field(default_factory=list)  # nothing to do
    # Not done yet: the phase comes back to them (a rollout in progress, a registration
    # waiting for an app proxy).
    waiting: list[DeploymentInfo] = field(default_factory=list)
    # Why a waiting deployment waits, or what a success did that is worth a history row
    # (by id), for its history and `deployment show`.
    reasons: dict[UUID, DeploymentExecutionError] = field(default_factory=dict)
    # When to look again at a waiting one, where the executor knows (a canary's step
    # ends then): the phase runs again then rather than at its next tick.
    again_in_s: dict[UUID, float] = field(default_factory=dict)


@dataclass
class HostExecutionError:
    host_info: HostInfo
    reason: str
    error_detail: str
    error_code: str | None = None


@dataclass
class HostExecutionResult:
    successes: list[HostInfo] = field(default_factory=list)
    errors: list[HostExecutionError] = field(default_factory=list)
    # Not done yet (replicas still moving off): the phase comes back to them.
    waiting: list[HostInfo] = field(default_factory=list)
    reasons: dict[UUID, HostExecutionError] = field(default_factory=dict)


StatusT = TypeVar("StatusT", RouteStatus, DeploymentLifecycle, HostStatus)


@dataclass(frozen=True)
class StatusTransition(Generic[StatusT]):
    """Move one entity to `to_status` if it is still in an `expected` status; record why.

    `to_status=None` keeps the status and still writes the history row, so an
    error that leaves an entity where it is stays visible (and, for a
    deployment, counts as a retry).
    """

    entity_id: UUID
    expected: frozenset[StatusT]
    to_status: StatusT | None
    phase: str
    result: OutcomeBucket
    error_code: str | None = None
    message: str = ""
    # An error that counts against the revision the route runs (a rollout judges it).
    revision_failure: bool = False
    # It says why the entity is not simply where it should be (an error, or what it
    # waits for): a deployment keeps that as its condition until it moves on.
    explains: bool = False


RouteTransition = StatusTransition[RouteStatus]
DeploymentTransition = StatusTransition[DeploymentLifecycle]
HostTransition = StatusTransition[HostStatus]
