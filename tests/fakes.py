"""One consistent in-memory world behind every port, for flows that span several steps.

Each fake implements its port over the shared `World`, so what one step writes
the next one reads. Tests play the scheduler (`World.run_session`) and the
health checker (`World.report_readiness`); the phases' status transitions are
applied by the tests themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from workers.domain import (
    ACTIVE_ROUTE_STATUSES,
    AutoscaleDecision,
    AutoScalingMetricsData,
    AutoScalingRule,
    CleanupConfig,
    Condition,
    DeploymentContext,
    DeploymentInfo,
    DeploymentLifecycle,
    EndpointState,
    HealthCheckStatus,
    HealthStatus,
    ModelServiceMetadata,
    RolloutState,
    RolloutStep,
    RouteBatchUpdater,
    RouteCreator,
    RouteData,
    RouteDiscoveryData,
    RouteStatus,
    ScalingGroupProxyTarget,
    SessionId,
    SessionSpec,
    SessionStatus,
    StartupProgress,
)
from workers.ports import (
    AppProxy,
    AppProxyClient,
    DeploymentRepository,
    HealthStore,
    SchedulingController,
    ServiceDiscovery,
)


@dataclass
class Session:
    id: SessionId
    spec: SessionSpec
    status: SessionStatus = SessionStatus.PENDING
    host: str | None = None
    port: int | None = None


@dataclass
class World:
    deployments: dict[UUID, DeploymentInfo] = field(default_factory=dict)
    routes: dict[UUID, RouteData] = field(default_factory=dict)
    sessions: dict[SessionId, Session] = field(default_factory=dict)
    proxy_targets: dict[str, ScalingGroupProxyTarget | None] = field(default_factory=dict)
    cleanup_configs: dict[str, CleanupConfig] = field(default_factory=dict)
    readiness: dict[str, HealthStatus] = field(default_factory=dict)
    scrape_targets: list[ModelServiceMetadata] = field(default_factory=list)
    proxy_endpoints: dict[UUID, Mapping[str, Any]] = field(default_factory=dict)
    endpoint_modes: dict[UUID, EndpointState] = field(default_factory=dict)

    def add_deployment(self, deployment: DeploymentInfo) -> DeploymentInfo:
        self.deployments[deployment.id] = deployment
        return deployment

    def add_route(self, route: RouteData) -> RouteData:
        self.routes[route.id] = route
        return route

    def set_route_status(self, route_ids: Sequence[UUID], status: RouteStatus) -> None:
        for route_id in route_ids:
            self.routes[route_id] = replace(self.routes[route_id], status=status)

    def run_session(self, session_id: SessionId, host: str, port: int) -> None:
        """Play the scheduler: the session's model server is up."""
        session = self.sessions[session_id]
        session.status, session.host, session.port = SessionStatus.RUNNING, host, port

    def report_readiness(self, route_id: UUID, status: HealthCheckStatus) -> None:
        """Play the health checker."""
        self.readiness[str(route_id)] = HealthStatus(status=status)

    def session_of(self, route_id: UUID) -> Session:
        session_id = self.routes[route_id].session_id
        assert session_id is not None, f"route {route_id} has no session"
        return self.sessions[session_id]

    def active_routes(self, endpoint_id: UUID) -> list[RouteData]:
        return [
            r
            for r in self.routes.values()
            if r.endpoint_id == endpoint_id and r.status in ACTIVE_ROUTE_STATUSES
        ]


class FakeRepository:
    def __init__(self, world: World) -> None:
        self._w = world

    def fetch_rollout_states(
        self, deployments: Sequence[DeploymentInfo]
    ) -> Mapping[UUID, RolloutState]:
        return {}  # the fake world runs no rollouts (tests/unit/test_rollouts.py does)

    def apply_rollout_step(
        self, deployment_id: UUID, state: RolloutState, step: RolloutStep
    ) -> bool:
        raise AssertionError("the fake world runs no rollouts")

    def fetch_startup_progress(
        self, route_ids: AbstractSet[UUID]
    ) -> Mapping[UUID, StartupProgress]:
        return {}  # the fake world's sessions start at once (tests/unit/executors judge budgets)

    def note_conditions(self, notes: Mapping[UUID, Condition]) -> None:
        raise AssertionError("the fake world never times out a route")

    def get_endpoints_by_ids(self, endpoint_ids: AbstractSet[UUID]) -> list[DeploymentInfo]:
        return [self._w.deployments[i] for i in endpoint_ids if i in self._w.deployments]

    def fetch_deployment_context(
        self, deployment: DeploymentInfo, revision: int | None = None
    ) -> DeploymentContext:
        if deployment.target_revision is None:
            raise ValueError(f"deployment {deployment.id} has no revision")
        return DeploymentContext(deployment=deployment, revision=deployment.target_revision)

    def update_route_sessions(self, route_sessions: Mapping[UUID, SessionId]) -> None:
        for route_id, session_id in route_sessions.items():
            self._w.routes[route_id] = replace(self._w.routes[route_id], session_id=session_id)

    def fetch_session_statuses_by_route_ids(
        self, route_ids: AbstractSet[UUID]
    ) -> Mapping[UUID, SessionStatus]:
        linked = {i: self._w.routes[i].session_id for i in route_ids}
        return {i: self._w.sessions[s].status for i, s in linked.items() if s is not None}

    def fetch_overdue_starts(
        self, route_ids: AbstractSet[UUID], default_deadline_s: float
    ) -> dict[UUID, tuple[float, float]]:
        return {}

    def fetch_route_service_discovery_info(
        self, route_ids: AbstractSet[UUID]
    ) -> list[RouteDiscoveryData]:
        found = []
        for route_id in route_ids:
            route = self._w.routes[route_id]
            session = self._w.sessions.get(route.session_id) if route.session_id else None
            if session is None or session.host is None or session.port is None:
                continue
            deployment = self._w.deployments[route.endpoint_id]
            found.append(
                RouteDiscoveryData(
                    route_id=route_id,
                    endpoint_id=deployment.id,
                    endpoint_name=deployment.name,
                    host=session.host,
                    port=session.port,
                )
            )
        return found

    def get_scaling_group_cleanup_configs(
        self, scaling_group_names: Sequence[str]
    ) -> Mapping[str, CleanupConfig]:
        configs = self._w.cleanup_configs
        return {n: configs[n] for n in scaling_group_names if n in configs}

    def fetch_scaling_group_proxy_targets(
        self, scaling_group_names: AbstractSet[str]
    ) -> Mapping[str, ScalingGroupProxyTarget | None]:
        return {n: self._w.proxy_targets.get(n) for n in scaling_group_names}

    def update_endpoint_urls_bulk(self, endpoint_urls: Mapping[UUID, str]) -> None:
        for deployment_id, url in endpoint_urls.items():
            self._w.deployments[deployment_id] = replace(
                self._w.deployments[deployment_id], url=url
            )

    def fetch_active_routes_by_endpoint_ids(
        self, endpoint_ids: AbstractSet[UUID]
    ) -> Mapping[UUID, Sequence[RouteData]]:
        return {i: self._w.active_routes(i) for i in endpoint_ids}

    def scale_routes(
        self, creators: Sequence[RouteCreator], updater: RouteBatchUpdater | None
    ) -> None:
        for creator in creators:
            self._w.add_route(
                RouteData(id=uuid4(), endpoint_id=creator.endpoint_id, created_at=datetime.now(UTC))
            )
        if updater is not None:
            self._w.set_route_status(updater.route_ids, updater.status)

    def fetch_auto_scaling_rules_by_endpoint_ids(
        self, endpoint_ids: AbstractSet[UUID]
    ) -> Mapping[UUID, Sequence[AutoScalingRule]]:
        return {i: [] for i in endpoint_ids}  # this world scales by hand only

    def fetch_metrics_for_autoscaling(
        self,
        deployments: Sequence[DeploymentInfo],
        rules: Mapping[UUID, Sequence[AutoScalingRule]],
    ) -> AutoScalingMetricsData:
        return AutoScalingMetricsData(
            routes_by_endpoint={d.id: self._w.active_routes(d.id) for d in deployments}
        )

    def calculate_desired_replicas_for_deployment(
        self,
        deployment: DeploymentInfo,
        rules: Sequence[AutoScalingRule],
        metrics: AutoScalingMetricsData,
    ) -> int | None:
        raise NotImplementedError("the in-memory world has no autoscaling rules")

    def update_desired_replicas_bulk(self, desired_replicas: Mapping[UUID, int]) -> None:
        for deployment_id, count in desired_replicas.items():
            deployment = self._w.deployments[deployment_id]
            self._w.deployments[deployment_id] = replace(deployment, desired_replica_count=count)

    def mark_terminating_route_status_bulk(self, route_ids: AbstractSet[UUID]) -> None:
        self._w.set_route_status(list(route_ids), RouteStatus.TERMINATING)

    def scale_to_zero(self, counts: Mapping[UUID, int]) -> set[UUID]:
        went = set()
        for deployment_id, count in counts.items():
            deployment = self._w.deployments[deployment_id]
            if deployment.zeroed_from is None and deployment.lifecycle is DeploymentLifecycle.READY:
                self._w.deployments[deployment_id] = replace(
                    deployment, zeroed_from=count, replica_count=0, desired_replica_count=None
                )
                went.add(deployment_id)
        return went

    def restore_from_zero(self, counts: Mapping[UUID, int]) -> set[UUID]:
        woken = set()
        for deployment_id, count in counts.items():
            deployment = self._w.deployments[deployment_id]
            if deployment.zeroed_from is not None:
                self._w.deployments[deployment_id] = replace(
                    deployment, zeroed_from=None, replica_count=count
                )
                woken.add(deployment_id)
        return woken

    def fetch_endpoint_modes(self) -> dict[UUID, EndpointState]:
        return {}  # this world runs no proxy

    def fetch_engine_load(self, deployment_ids: AbstractSet[UUID]) -> dict[UUID, float]:
        return {}  # this world scrapes no engine

    def count_serving(self, deployment_ids: AbstractSet[UUID]) -> dict[UUID, int]:
        healthy = [r for r in self._w.routes.values() if r.status is RouteStatus.HEALTHY]
        return {i: sum(1 for r in healthy if r.endpoint_id == i) for i in deployment_ids}

    def save_autoscale(self, decisions: Mapping[UUID, AutoscaleDecision]) -> set[UUID]:
        changed = set()
        for deployment_id, decision in decisions.items():
            deployment = self._w.deployments[deployment_id]
            if decision.desired != deployment.target_replica_count:
                changed.add(deployment_id)
            self._w.deployments[deployment_id] = replace(
                deployment, desired_replica_count=decision.desired, autoscale_state=decision.state
            )
        return changed


class FakeScheduler:
    def __init__(self, world: World) -> None:
        self._w = world

    def enqueue_session(self, spec: SessionSpec) -> SessionId:
        for session in self._w.sessions.values():
            if session.spec.route_id == spec.route_id and not session.status.is_terminal:
                return session.id  # a route never gets a second live session
        session = Session(id=SessionId(uuid4()), spec=spec)
        self._w.sessions[session.id] = session
        return session.id

    def mark_sessions_for_termination(self, session_ids: Sequence[SessionId]) -> None:
        for session_id in session_ids:
            session = self._w.sessions[session_id]
            never_started = session.status is SessionStatus.PENDING
            session.status = SessionStatus.CANCELLED if never_started else SessionStatus.TERMINATING


class FakeHealthStore:
    def __init__(self, world: World) -> None:
        self._w = world

    def check_route_health_status(self, route_ids: Sequence[str]) -> Mapping[str, HealthStatus]:
        return {i: self._w.readiness[i] for i in route_ids if i in self._w.readiness}


class FakeServiceDiscovery:
    def __init__(self, world: World) -> None:
        self._w = world

    def sync_model_service_routes(self, routes: Sequence[ModelServiceMetadata]) -> None:
        self._w.scrape_targets = list(routes)

    def published_route_ids(self) -> set[UUID]:
        return {target.route_id for target in self._w.scrape_targets}

    def publish_endpoint_modes(self, modes: Mapping[UUID, EndpointState]) -> None:
        self._w.endpoint_modes = dict(modes)


class FakeAppProxyClient:
    def __init__(self, world: World, target: ScalingGroupProxyTarget) -> None:
        self._w, self._target = world, target

    def create_endpoint(self, endpoint_id: UUID, body: Mapping[str, Any]) -> Mapping[str, Any]:
        self._w.proxy_endpoints[endpoint_id] = body
        existing = body["tags"]["endpoint"]["existing_url"]
        return {"endpoint": existing or f"http://{self._target.addr}/e/{endpoint_id.hex[:8]}"}

    def delete_endpoint(self, endpoint_id: UUID) -> None:
        self._w.proxy_endpoints.pop(endpoint_id, None)


class FakeAppProxy:
    def __init__(self, world: World) -> None:
        self._w = world

    def client_for(self, target: ScalingGroupProxyTarget) -> AppProxyClient:
        return FakeAppProxyClient(self._w, target)


@dataclass
class Ports:
    """The fakes, typed as the ports they stand for (mypy checks they conform)."""

    deployment_repo: DeploymentRepository
    scheduling_controller: SchedulingController
    health_store: HealthStore
    service_discovery: ServiceDiscovery
    app_proxy: AppProxy


def fake_ports(world: World) -> Ports:
    return Ports(
        deployment_repo=FakeRepository(world),
        scheduling_controller=FakeScheduler(world),
        health_store=FakeHealthStore(world),
        service_discovery=FakeServiceDiscovery(world),
        app_proxy=FakeAppProxy(world),
    )
