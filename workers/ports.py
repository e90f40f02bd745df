"""What the executors need from the world, as Protocols.

Method names and arguments are sokovan's (docs/design.md, "Contract"), made synchronous.
Real implementations live in `workers.adapters`; unit tests autospec these
classes, so a misspelt method fails the test instead of passing silently.

Batch reads take a set of ids and answer for all of them in one call. A batch
call that cannot reach its store raises `workers.errors.InfrastructureUnavailable`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import AbstractContextManager
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID

from workers.domain import (
    AutoscaleDecision,
    AutoScalingMetricsData,
    AutoScalingRule,
    CleanupConfig,
    Condition,
    ControllerView,
    DeploymentContext,
    DeploymentInfo,
    EndpointState,
    EntityKind,
    FleetView,
    HealthStatus,
    HostInfo,
    HostRoute,
    ModelServiceMetadata,
    ProbeReach,
    ReplicaMove,
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
    StatusTransition,
    TrafficCounts,
    TrafficLoad,
)
from workers.phase_runs import PhaseRun, PhaseRunState, RunSummary


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


class HostRegistry(Protocol):
    """The machines that run sessions (`hosts`), their agents' heartbeats and load."""

    def observe(self, blind_after_s: float) -> ControllerView:
        """The controller looks at the hosts now: how long it has been seeing without a
        gap longer than `blind_after_s` (its own outage), and since its last give-up."""
        ...

    def fetch_hosts(self, names: AbstractSet[str] | None = None) -> list[HostInfo]:
        """Every host (or those named) with its heartbeat's age and live sessions."""
        ...

    def give_up_hosts(self, silent_s: Mapping[str, float]) -> Mapping[str, int]:
        """Each named host lost (silent that many seconds), in one transaction with its
        sessions given up (LOST) and its routes out of service; how many routes each
        host gave up (a host lost already is left out)."""
        ...

    def restore_hosts(self, names: AbstractSet[str], why: str) -> Sequence[str]:
        """Unreachable hosts heard again back to what their operator asked; those restored."""
        ...

    def note_probes(self, failing: Mapping[str, str], cleared: AbstractSet[str]) -> None:
        """Hosts whose replicas' probes started failing (why), and those passing again."""
        ...

    def fetch_routes_on(self, names: AbstractSet[str]) -> list[HostRoute]:
        """Active routes with a live session on the named hosts, with how many healthy
        replicas their deployments have on hosts that are not leaving."""
        ...

    def count_live_sessions(self, names: AbstractSet[str]) -> Mapping[str, int]:
        """Live sessions per named host (hosts with none are absent)."""
        ...

    def move_off(self, route_ids: AbstractSet[UUID], why: str) -> None:
        """Take routes out of service (traffic first, then drain), history saying why."""
        ...

    def fetch_fleet(self) -> FleetView:
        """Every host's load, the active replicas on them, the routes waiting for room,
        and how many replicas are moving now: what a move is planned from."""
        ...

    def start_move(self, move: ReplicaMove) -> bool:
        """Mark the route moving (it stops counting; its replacement starts elsewhere),
        with a history row; False when it could no longer move."""
        ...

    def finish_moves(self, abandon_after_s: float) -> Sequence[tuple[str, str]]:
        """Moving routes whose deployment is served without them leave service; moves
        older than `abandon_after_s` are abandoned. (host, what happened) for each."""
        ...


class HostSignals(Protocol):
    """What the hosts say outside the controller's database (Redis)."""

    def heartbeat_ages_s(self) -> Mapping[str, float]:
        """Seconds since each host's agent last beat there (hosts never heard are absent)."""
        ...

    def probe_reach(self) -> Mapping[str, ProbeReach]:
        """What the probers last saw of each host's replicas."""
        ...


class HealthStore(Protocol):
    """Route readiness as written by the health checker (the seeds' `valkey_schedule`)."""

    def check_route_health_status(self, route_ids: Sequence[str]) -> Mapping[str, HealthStatus]:
        """Readiness per route id; routes with no data are absent."""
        ...


class ServiceDiscovery(Protocol):
    """Where Prometheus learns which model servers to scrape."""

    def sync_model_service_routes(self, routes: Sequence[ModelServiceMetadata]) -> None:
        """Replace the whole registered set with `routes`."""
        ...

    def publish_endpoint_modes(self, modes: Mapping[UUID, EndpointState]) -> None:
        """Replace what the proxies do for endpoints without a replica (`EndpointMode`)."""
        ...

    def published_route_ids(self) -> AbstractSet[UUID]:
        """The routes the registered set holds now (what the app proxy routes to)."""
        ...


class AppProxyClient(Protocol):
    """One app proxy's endpoint API."""

    def create_endpoint(self, endpoint_id: UUID, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """Register (or re-register) an endpoint; the answer's `endpoint` is its public URL."""
        ...

    def delete_endpoint(self, endpoint_id: UUID) -> None:
        """Unregister an endpoint; one that is already gone counts as deleted."""
        ...


class AppProxy(Protocol):
    """Hands out a client per resource group's proxy target (pooled by the adapter)."""

    def client_for(self, target: ScalingGroupProxyTarget) -> AppProxyClient: ...


class RequestActivity(Protocol):
    """When each deployment last saw a request, as the proxies and the metrics collector
    recorded it, by the clock of the store that keeps it."""

    def last_requests(self, deployment_ids: AbstractSet[UUID]) -> Mapping[UUID, float]:
        """Unix seconds of each deployment's latest request (absent: none recorded)."""
        ...

    def revision_traffic(
        self, since_s: Mapping[UUID, float]
    ) -> Mapping[UUID, Mapping[int, TrafficCounts]]:
        """What the proxies counted of each deployment's requests since the unix time given
        for it, by revision (what a rollout is judged by)."""
        ...

    def now_s(self) -> float:
        """Unix seconds by the same clock."""
        ...

    def load(self, windows_s: Mapping[UUID, tuple[float, float]]) -> Mapping[UUID, TrafficLoad]:
        """What the proxies saw of each deployment over its (stable, panic) windows: requests
        in flight on average, and arrived per second (what the traffic autoscaler tracks)."""
        ...

    def held(self, deployment_ids: AbstractSet[UUID]) -> Mapping[UUID, int]:
        """Requests the proxies hold now for each deployment at zero (0: none)."""
        ...


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
