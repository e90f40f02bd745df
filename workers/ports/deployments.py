"""Deployments, their routes and sessions: the system of record and the scheduler."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Protocol
from uuid import UUID

from workers.domain import (
    AutoscaleDecision,
    AutoScalingMetricsData,
    AutoScalingRule,
    CleanupConfig,
    Condition,
    DeploymentContext,
    DeploymentInfo,
    EndpointState,
    RolloutState,
    RolloutStep,
    RouteBatchUpdater,
    RouteCreator,
    RouteData,
    RouteDiscoveryData,
    ScalingGroupProxyTarget,
    SessionId,
    SessionSpec,
    SessionStatus,
    StartupProgress,
)


class DeploymentRepository(Protocol):
    """The system of record for deployments, routes and resource groups."""

    # -- read by the route executor --
    def get_endpoints_by_ids(self, endpoint_ids: AbstractSet[UUID]) -> list[DeploymentInfo]:
        """The deployments among `endpoint_ids` that exist, in any lifecycle."""
        ...

    def fetch_deployment_context(
        self, deployment: DeploymentInfo, revision: int | None = None
    ) -> DeploymentContext:
        """What starting a session needs: the revision to run (the current one unless
        `revision` names another) and the resource group's environment."""
        ...

    def update_route_sessions(self, route_sessions: Mapping[UUID, SessionId]) -> None:
        """Link each route to the session started for it."""
        ...

    def fetch_session_statuses_by_route_ids(
        self, route_ids: AbstractSet[UUID]
    ) -> Mapping[UUID, SessionStatus]:
        """The status of each route's session; routes without one are absent."""
        ...

    def fetch_overdue_starts(
        self, route_ids: AbstractSet[UUID], default_deadline_s: float
    ) -> Mapping[UUID, tuple[float, float]]:
        """Routes whose session has not started within its deployment's start deadline
        (`default_deadline_s` where none is set): seconds waited and the deadline."""
        ...

    def fetch_route_service_discovery_info(
        self, route_ids: AbstractSet[UUID]
    ) -> list[RouteDiscoveryData]:
        """Scrape addresses of the routes whose session has a host and port."""
        ...

    def get_scaling_group_cleanup_configs(
        self, scaling_group_names: Sequence[str]
    ) -> Mapping[str, CleanupConfig]: ...

    def fetch_startup_progress(
        self, route_ids: AbstractSet[UUID]
    ) -> Mapping[UUID, StartupProgress]:
        """For routes whose session runs and whose revision has a health check: how long
        they have been starting, against their revision's health budget."""
        ...

    def note_conditions(self, notes: Mapping[UUID, Condition]) -> None:
        """Say why each deployment does not serve (no route of its revision became healthy
        in time, no host has room): its condition and a history row (a repeat counts an
        attempt)."""
        ...

    # -- read and written by the deployment executor --
    def fetch_scaling_group_proxy_targets(
        self, scaling_group_names: AbstractSet[str]
    ) -> Mapping[str, ScalingGroupProxyTarget | None]: ...

    def update_endpoint_urls_bulk(self, endpoint_urls: Mapping[UUID, str]) -> None: ...

    def fetch_active_routes_by_endpoint_ids(
        self, endpoint_ids: AbstractSet[UUID]
    ) -> Mapping[UUID, Sequence[RouteData]]:
        """Routes that count as replicas (`domain.ACTIVE_ROUTE_STATUSES`), per deployment."""
        ...

    def scale_routes(
        self, creators: Sequence[RouteCreator], updater: RouteBatchUpdater | None
    ) -> None:
        """Insert the new routes and apply the scale-in change, in one transaction."""
        ...

    def fetch_auto_scaling_rules_by_endpoint_ids(
        self, endpoint_ids: AbstractSet[UUID]
    ) -> Mapping[UUID, Sequence[AutoScalingRule]]: ...

    def fetch_metrics_for_autoscaling(
        self,
        deployments: Sequence[DeploymentInfo],
        rules: Mapping[UUID, Sequence[AutoScalingRule]],
    ) -> AutoScalingMetricsData: ...

    def calculate_desired_replicas_for_deployment(
        self,
        deployment: DeploymentInfo,
        rules: Sequence[AutoScalingRule],
        metrics: AutoScalingMetricsData,
    ) -> int | None:
        """The replica count the rules ask for now, or None when nothing changes."""
        ...

    def update_desired_replicas_bulk(self, desired_replicas: Mapping[UUID, int]) -> None: ...

    def fetch_engine_load(self, deployment_ids: AbstractSet[UUID]) -> Mapping[UUID, float]:
        """Requests the engines hold (running and waiting) per deployment, as last scraped."""
        ...

    def count_serving(self, deployment_ids: AbstractSet[UUID]) -> Mapping[UUID, int]:
        """Healthy replicas per deployment that are not leaving."""
        ...

    def save_autoscale(self, decisions: Mapping[UUID, AutoscaleDecision]) -> AbstractSet[UUID]:
        """Each traffic autoscaler decision saved (its count where the deployment's count is
        read from, 0 as scale to zero does; what it remembers; its view): those changed."""
        ...

    def scale_to_zero(self, counts: Mapping[UUID, int]) -> AbstractSet[UUID]:
        """Each (ready, not yet zeroed) deployment to 0 replicas, remembering its count;
        the ids that went."""
        ...

    def restore_from_zero(self, counts: Mapping[UUID, int]) -> AbstractSet[UUID]:
        """Each deployment still at zero by idleness back to `count` replicas (one wake
        wins); the ids restored."""
        ...

    def fetch_endpoint_modes(self) -> Mapping[UUID, EndpointState]:
        """What a proxy does with a request for a live deployment that has no replica:
        `EndpointMode` values by deployment id (absent: 503 at once)."""
        ...

    def mark_terminating_route_status_bulk(self, route_ids: AbstractSet[UUID]) -> None: ...

    def fetch_rollout_states(
        self, deployments: Sequence[DeploymentInfo]
    ) -> Mapping[UUID, RolloutState]:
        """The state of each rollout in progress (deployments not deploying are absent)."""
        ...

    def apply_rollout_step(
        self, deployment_id: UUID, state: RolloutState, step: RolloutStep
    ) -> bool:
        """Start, drain and switch routes as `step` says; close the rollout if it ended.
        False (nothing done) when a step was applied since `state` was read."""
        ...


class SchedulingController(Protocol):
    """Starts and stops the sessions that run model servers."""

    def enqueue_session(self, spec: SessionSpec) -> SessionId:
        """Ask for a session for `spec.route_id`; a route's live session is returned again."""
        ...

    def mark_sessions_for_termination(self, session_ids: Sequence[SessionId]) -> None: ...
