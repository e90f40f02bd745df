"""PostgresDeploymentRepository against a real, migrated PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa

from tests.factories import make_deployment, make_revision, make_route
from tests.integration.session_runner_side import report_session
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.deployment_repository import PostgresDeploymentRepository
from workers.adapters.postgres.engine import create_database_engine
from workers.adapters.postgres.scheduler import SessionTableScheduler
from workers.adapters.postgres.schema import route_history, routes
from workers.adapters.redis.metrics import RedisMetricsStore
from workers.domain import (
    DeploymentInfo,
    RouteBatchUpdater,
    RouteCreator,
    RouteData,
    RouteStatus,
    ScalingGroupProxyTarget,
    SessionId,
    SessionStatus,
)
from workers.errors import EndpointNotFound, InfrastructureUnavailable, RevisionMissing
from workers.executors.payloads import session_spec


@pytest.fixture
def group(catalog: Catalog) -> str:
    catalog.create_scaling_group(
        "sg1",
        app_proxy_addr="http://127.0.0.1:1",
        app_proxy_api_token="token-1",
        cleanup_statuses=(RouteStatus.UNHEALTHY, RouteStatus.DEGRADED),
        environ={"GROUP_ONLY": "g", "MODEL_NAME": "from-group"},
    )
    return "sg1"


@pytest.fixture
def deployment(catalog: Catalog, group: str) -> DeploymentInfo:
    return catalog.create_deployment(make_deployment(resource_group=group))


def _route_status(engine: sa.Engine, route_id: object) -> tuple[str, float]:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(routes.c.status, routes.c.traffic_ratio).where(routes.c.id == route_id)
        ).one()
    return row.status, row.traffic_ratio


def _start_session(
    scheduler: SessionTableScheduler,
    repository: PostgresDeploymentRepository,
    route: RouteData,
    deployment: DeploymentInfo,
) -> SessionId:
    context = repository.fetch_deployment_context(deployment)
    session_id = scheduler.enqueue_session(session_spec(route, context))
    repository.update_route_sessions({route.id: session_id})
    return session_id


def test_deployments_round_trip_with_their_revision(
    repository: PostgresDeploymentRepository, deployment: DeploymentInfo
) -> None:
    found = repository.get_endpoints_by_ids({deployment.id, uuid4()})
    assert found == [deployment]


def test_a_deployment_without_revision_reads_back_as_none(
    repository: PostgresDeploymentRepository, catalog: Catalog, group: str
) -> None:
    bare = catalog.create_deployment(make_deployment(target_revision=None))
    assert repository.get_endpoints_by_ids({bare.id})[0].target_revision is None
    with pytest.raises(RevisionMissing):
        repository.fetch_deployment_context(bare)


def test_deployment_context_adds_the_group_environment(
    repository: PostgresDeploymentRepository, deployment: DeploymentInfo
) -> None:
    context = repository.fetch_deployment_context(deployment)
    assert context.revision == deployment.target_revision
    assert context.environ == {"GROUP_ONLY": "g", "MODEL_NAME": "from-group"}


def test_deployment_context_of_a_missing_deployment_is_endpoint_not_found(
    repository: PostgresDeploymentRepository,
) -> None:
    with pytest.raises(EndpointNotFound):
        repository.fetch_deployment_context(make_deployment())


def test_route_sessions_and_their_statuses(
    repository: PostgresDeploymentRepository,
    scheduler: SessionTableScheduler,
    catalog: Catalog,
    deployment: DeploymentInfo,
) -> None:
    linked, bare = make_route(deployment), make_route(deployment)
    catalog.add_routes([linked, bare])
    session_id = _start_session(scheduler, repository, linked, deployment)
    statuses = repository.fetch_session_statuses_by_route_ids({linked.id, bare.id})
    assert statuses == {linked.id: SessionStatus.PENDING}
    active = repository.fetch_active_routes_by_endpoint_ids({deployment.id})[deployment.id]
    assert {r.id: r.session_id for r in active} == {linked.id: session_id, bare.id: None}


def test_service_discovery_info_only_for_running_sessions_with_an_address(
    repository: PostgresDeploymentRepository,
    scheduler: SessionTableScheduler,
    catalog: Catalog,
    engine: sa.Engine,
    deployment: DeploymentInfo,
) -> None:
    running, starting = make_route(deployment), make_route(deployment)
    catalog.add_routes([running, starting])
    report_session(
        engine,
        _start_session(scheduler, repository, running, deployment),
        SessionStatus.RUNNING,
        host="10.0.0.7",
        port=8000,
    )
    _start_session(scheduler, repository, starting, deployment)
    info = repository.fetch_route_service_discovery_info({running.id, starting.id})
    assert [(i.route_id, i.endpoint_name, i.host, i.port) for i in info] == [
        (running.id, deployment.name, "10.0.0.7", 8000)
    ]


def test_scaling_group_settings(
    repository: PostgresDeploymentRepository, catalog: Catalog, group: str
) -> None:
    catalog.create_scaling_group("bare")
    targets = repository.fetch_scaling_group_proxy_targets({group, "bare", "unknown"})
    assert targets == {
        group: ScalingGroupProxyTarget(addr="http://127.0.0.1:1", api_token="token-1"),
        "bare": None,
        "unknown": None,
    }
    configs = repository.get_scaling_group_cleanup_configs([group, "bare"])
    assert set(configs[group].cleanup_target_statuses) == {
        RouteStatus.UNHEALTHY,
        RouteStatus.DEGRADED,
    }
    assert set(configs["bare"].cleanup_target_statuses) == {RouteStatus.UNHEALTHY}


def test_endpoint_urls_are_saved(
    repository: PostgresDeploymentRepository, deployment: DeploymentInfo
) -> None:
    repository.update_endpoint_urls_bulk({deployment.id: "http://proxy.local/svc"})
    assert repository.get_endpoints_by_ids({deployment.id})[0].url == "http://proxy.local/svc"


def test_active_routes_leave_out_finished_ones_in_creation_order(
    repository: PostgresDeploymentRepository, catalog: Catalog, deployment: DeploymentInfo
) -> None:
    now = datetime.now(UTC)
    newer = make_route(deployment, status=RouteStatus.HEALTHY, created_at=now)
    older = make_route(deployment, status=RouteStatus.UNHEALTHY, created_at=now - timedelta(1))
    gone = make_route(deployment, status=RouteStatus.TERMINATED)
    leaving = make_route(deployment, status=RouteStatus.TERMINATING)
    catalog.add_routes([newer, older, gone, leaving])
    active = repository.fetch_active_routes_by_endpoint_ids({deployment.id, uuid4()})
    assert [r.id for r in active[deployment.id]] == [older.id, newer.id]
    assert list(active) == [deployment.id]


def test_scale_routes_inserts_and_retires_in_one_go(
    repository: PostgresDeploymentRepository,
    catalog: Catalog,
    engine: sa.Engine,
    deployment: DeploymentInfo,
) -> None:
    retired, finished = (
        make_route(deployment),
        make_route(deployment, status=RouteStatus.TERMINATED),
    )
    catalog.add_routes([retired, finished])
    repository.scale_routes(
        [RouteCreator(endpoint_id=deployment.id), RouteCreator(endpoint_id=deployment.id)],
        RouteBatchUpdater(route_ids=(retired.id, finished.id)),
    )
    active = repository.fetch_active_routes_by_endpoint_ids({deployment.id})[deployment.id]
    assert len(active) == 2
    assert {r.status for r in active} == {RouteStatus.PROVISIONING}
    # Scaled-in routes leave traffic first: draining, then routes.drain stops them.
    assert _route_status(engine, retired.id) == ("draining", 0.0)
    assert _route_status(engine, finished.id) == ("terminated", 1.0)
    assert _history(engine, retired.id) == [
        ("deployments.scale", "provisioning", "draining", "scaled in")
    ]
    assert _history(engine, finished.id) == []


def test_scale_routes_is_all_or_nothing(
    repository: PostgresDeploymentRepository, catalog: Catalog, deployment: DeploymentInfo
) -> None:
    retired = make_route(deployment)
    catalog.add_routes([retired])
    with pytest.raises(sa.exc.IntegrityError):
        repository.scale_routes(
            [RouteCreator(endpoint_id=uuid4())],  # no such deployment
            RouteBatchUpdater(route_ids=(retired.id,)),
        )
    active = repository.fetch_active_routes_by_endpoint_ids({deployment.id})[deployment.id]
    assert [(r.id, r.status) for r in active] == [(retired.id, RouteStatus.PROVISIONING)]


def test_mark_terminating_drains_active_routes_and_leaves_finished_ones_alone(
    repository: PostgresDeploymentRepository,
    catalog: Catalog,
    engine: sa.Engine,
    deployment: DeploymentInfo,
) -> None:
    healthy = make_route(deployment, status=RouteStatus.HEALTHY)
    failed = make_route(deployment, status=RouteStatus.FAILED_TO_START)
    catalog.add_routes([healthy, failed])
    repository.mark_terminating_route_status_bulk({healthy.id, failed.id})
    assert _route_status(engine, healthy.id)[0] == "draining"
    assert _route_status(engine, failed.id)[0] == "failed_to_start"
    assert _history(engine, healthy.id) == [
        ("deployments.destroy", "healthy", "draining", "its deployment is being destroyed")
    ]


def _history(engine: sa.Engine, route_id: UUID) -> list[tuple[str, str, str, str]]:
    columns = (route_history.c.phase, route_history.c.from_status, route_history.c.to_status)
    query = (
        sa.select(*columns, route_history.c.message)
        .where(route_history.c.route_id == route_id)
        .order_by(route_history.c.id)
    )
    with engine.connect() as conn:
        return [(r.phase, r.from_status, r.to_status, r.message) for r in conn.execute(query)]


def test_desired_replicas_are_saved(
    repository: PostgresDeploymentRepository, deployment: DeploymentInfo
) -> None:
    repository.update_desired_replicas_bulk({deployment.id: 4})
    assert repository.get_endpoints_by_ids({deployment.id})[0].desired_replica_count == 4


def test_revision_without_health_check_round_trips(
    repository: PostgresDeploymentRepository, catalog: Catalog, group: str
) -> None:
    plain = catalog.create_deployment(
        make_deployment(target_revision=make_revision(health_check=None, startup_command=None))
    )
    assert repository.get_endpoints_by_ids({plain.id}) == [plain]


def test_an_unreachable_database_is_infrastructure_unavailable(
    metrics_store: RedisMetricsStore,
) -> None:
    engine = create_database_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")
    unreachable = PostgresDeploymentRepository(engine=engine, metrics=metrics_store)
    with pytest.raises(InfrastructureUnavailable, match="database unavailable"):
        unreachable.get_endpoints_by_ids({uuid4()})
    engine.dispose()
