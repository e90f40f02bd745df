"""Entities: deployments and the revision they run, routes, sessions, resource groups,
and what the health checker, the metrics and service discovery know of them."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NewType
from uuid import UUID

from workers.domain.autoscale import AutoscaleState, TargetTracking
from workers.domain.statuses import (
    DeploymentLifecycle,
    EndpointMode,
    HealthCheckStatus,
    RouteStatus,
    RoutingPolicy,
)

SessionId = NewType("SessionId", UUID)
# Every session learns which revision of its deployment it runs (the sessions contract).
REVISION_VARIABLE = "MODELFLEET_REVISION"


@dataclass(frozen=True)
class HealthStatus:
    """A route's readiness as the health store last saw it."""

    status: HealthCheckStatus
    last_readiness_at: float | None = None  # unix seconds of the last probe result
    detail: str | None = None  # what the last probe saw ("/health answered 404"), if told


@dataclass(frozen=True)
class HealthCheckConfig:
    """How a model server is probed; the defaults are Backend.AI's."""

    path: str = "/health"
    interval_s: float = 10.0
    max_retries: int = 10
    initial_delay_s: float = 60.0
    timeout_s: float = 15.0
    expected_status: int = 200

    @property
    def budget_s(self) -> float:
        """How long a new replica may take to pass its first probe: the initial delay,
        then `max_retries` probes `interval_s` apart."""
        return self.initial_delay_s + self.interval_s * self.max_retries


@dataclass(frozen=True)
class Condition:
    """Why a deployment is not simply serving, as the controller says it (REASON)."""

    reason: str  # a stable code: no_app_proxy, never_healthy, no_host_slot ...
    message: str


@dataclass(frozen=True)
class StartupProgress:
    """How long a replica that never passed its health check has been starting."""

    started_for_s: float  # since its session started running
    budget_s: float  # its revision's health budget (`HealthCheckConfig.budget_s`)
    health_path: str

    @property
    def overdue(self) -> bool:
        return self.started_for_s >= self.budget_s


@dataclass(frozen=True)
class ModelRevision:
    """What to run for a deployment: image, runtime and how to start and probe it."""

    image: str
    runtime_variant: str = "custom"
    model_path: str = "/models"
    resources: Mapping[str, str] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=dict)
    startup_command: str | None = None
    health_check: HealthCheckConfig | None = None


@dataclass(frozen=True)
class DeploymentInfo:
    """One model service and the replica count it asks for."""

    id: UUID
    name: str
    resource_group: str
    replica_count: int
    target_revision: ModelRevision | None
    desired_replica_count: int | None = None
    lifecycle: DeploymentLifecycle = DeploymentLifecycle.PENDING
    url: str | None = None
    open_to_public: bool = False
    owner: str | None = None
    project: str | None = None
    domain: str = "default"
    retry_count: int = 0  # failed attempts of the current lifecycle step
    # How long a route that left traffic keeps its session before it is told to stop.
    drain_s: float = 10.0
    current_revision: int = 1  # the revision number it serves
    deploying_revision: int | None = None  # the revision a rollout is moving to
    # Idle this long (no request), it scales to zero and wakes on request (None: never).
    scale_to_zero_after_s: float | None = None
    # While at zero by idleness: the replica count a wake restores (None otherwise).
    zeroed_from: int | None = None
    # A session not running this long after it was asked for is replaced (None: the
    # controller's MODELFLEET_SESSION_START_DEADLINE_S).
    start_deadline_s: float | None = None
    # Creation, the setting's change, its last wake (the database sets it: not compared).
    idle_counts_from: datetime | None = field(default=None, compare=False)
    # Its traffic autoscaler (None: off, and its count is the operator's or its rules'),
    # and what that remembers between decisions.
    autoscale: TargetTracking | None = None
    autoscale_state: AutoscaleState = field(default_factory=AutoscaleState, compare=False)
    routing: RoutingPolicy = RoutingPolicy.LEAST_REQUEST  # how proxies pick its replicas

    @property
    def target_replica_count(self) -> int:
        """The autoscaler's desired count when it has set one, else the manual count."""
        if self.desired_replica_count is not None:
            return self.desired_replica_count
        return self.replica_count


@dataclass(frozen=True)
class RouteData:
    """One replica of a deployment, backed by at most one session."""

    id: UUID
    endpoint_id: UUID
    session_id: SessionId | None = None
    status: RouteStatus = RouteStatus.PROVISIONING
    traffic_ratio: float = 1.0
    created_at: datetime | None = None
    status_changed_at: datetime | None = None
    revision: int | None = None  # the deployment revision its session runs
    in_traffic: bool = True  # False: a blue-green route waiting for its promotion
    ever_healthy: bool = False  # it passed its health check at least once
    # Its session's host is draining or lost: the route no longer counts as a replica
    # (its replacement starts elsewhere; set where the reader knows hosts).
    host_leaving: bool = False


@dataclass(frozen=True)
class ScalingGroupProxyTarget:
    """Where a resource group's app proxy listens, and the token it expects."""

    addr: str
    api_token: str = field(repr=False)


@dataclass(frozen=True)
class CleanupConfig:
    """Route statuses a resource group evicts."""

    cleanup_target_statuses: Collection[RouteStatus]


@dataclass(frozen=True)
class DeploymentContext:
    """What starting a session for a deployment needs beyond the deployment row.

    The repository pins the revision the session runs and adds the resource
    group's environment, which the revision's own environment overrides.
    """

    deployment: DeploymentInfo
    revision: ModelRevision
    environ: Mapping[str, str] = field(default_factory=dict)
    revision_number: int | None = None  # given to the session as MODELFLEET_REVISION


@dataclass(frozen=True)
class SessionSpec:
    """The request a scheduler gets to start one route's model server."""

    route_id: UUID
    deployment_id: UUID
    name: str
    resource_group: str
    image: str
    runtime_variant: str
    model_path: str
    startup_command: str | None
    resources: Mapping[str, str]
    environ: Mapping[str, str]
    owner: str | None = None
    project: str | None = None
    domain: str = "default"


@dataclass(frozen=True)
class RouteCreator:
    """A new route to insert when a deployment scales out (or a rollout adds one)."""

    endpoint_id: UUID
    traffic_ratio: float = 1.0
    revision: int | None = None  # None: the deployment's current revision
    in_traffic: bool = True


@dataclass(frozen=True)
class RouteBatchUpdater:
    """A change applied to a set of routes at once (scale-in marks them terminating)."""

    route_ids: tuple[UUID, ...]
    status: RouteStatus = RouteStatus.TERMINATING
    traffic_ratio: float = 0.0


class MetricSource(StrEnum):
    SESSION = "session"  # per-session resource metrics, averaged over a deployment's routes
    INFERENCE_FRAMEWORK = "inference_framework"  # metrics the model server itself exports


class Comparator(StrEnum):
    LESS_THAN = "lt"
    LESS_THAN_OR_EQUAL = "le"
    GREATER_THAN = "gt"
    GREATER_THAN_OR_EQUAL = "ge"


@dataclass(frozen=True)
class AutoScalingRule:
    """Scale a deployment by `step_size` replicas while a metric crosses a threshold."""

    metric_source: MetricSource
    metric_name: str
    threshold: float
    comparator: Comparator
    step_size: int
    cooldown_s: int = 300
    min_replicas: int | None = None
    max_replicas: int | None = None
    last_triggered_at: datetime | None = None
    id: UUID | None = None


@dataclass(frozen=True)
class AutoScalingMetricsData:
    """Everything the autoscaler reads, loaded once for a batch of deployments."""

    routes_by_endpoint: Mapping[UUID, Sequence[RouteData]] = field(default_factory=dict)
    endpoint_metrics: Mapping[UUID, Mapping[str, float]] = field(default_factory=dict)
    session_metrics: Mapping[SessionId, Mapping[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class RouteDiscoveryData:
    """Where a route's model server can be scraped, as the repository knows it."""

    route_id: UUID
    endpoint_id: UUID
    endpoint_name: str
    host: str
    port: int
    runtime_variant: str = "custom"
    revision: int | None = None
    host_name: str | None = None  # the host its session runs on, when hosts are registered
    traffic_ratio: float = 1.0  # its share of requests relative to its deployment's others
    routing: RoutingPolicy = RoutingPolicy.ROUND_ROBIN  # its deployment's (label absent)


@dataclass(frozen=True)
class EndpointState:
    """What a proxy does for a live deployment with no replica to send a request to."""

    mode: EndpointMode
    reason: str = ""  # why (UNAVAILABLE): told to the client in its 503


@dataclass(frozen=True)
class ModelServiceMetadata:
    """One scrape target handed to service discovery."""

    route_id: UUID
    model_service_name: str
    host: str
    port: int
    metrics_path: str = "/metrics"
    labels: Mapping[str, str] = field(default_factory=dict)
