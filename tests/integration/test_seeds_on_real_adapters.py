"""Seed scenarios run with the executors wired to the real adapters.

Where a scenario's point is what reaches the outside world (a session row, a
route link, Redis health data, the scrape set, an HTTP call), it runs here
against PostgreSQL, Redis and a local HTTP server instead of mocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import pytest
import redis
import sqlalchemy as sa

from tests.factories import make_deployment, make_route
from tests.integration.fake_app_proxy_server import Reply, ScriptedServer
from tests.integration.session_runner_side import report_session, session_row
from workers.adapters.app_proxy_http import HttpAppProxy
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.deployment_repository import PostgresDeploymentRepository
from workers.adapters.postgres.scheduler import SessionTableScheduler
from workers.adapters.redis.client import server_time_s
from workers.adapters.redis.discovery import RedisServiceDiscovery
from workers.adapters.redis.health import RedisHealthStore
from workers.adapters.redis.keys import RedisKeys
from workers.config import AppProxySettings
from workers.domain import (
    DeploymentInfo,
    DeploymentLifecycle,
    RouteData,
    RouteStatus,
    SessionId,
    SessionStatus,
)
from workers.executors import DeploymentExecutor, RouteExecutor

TOKEN = "proxy-token"


@pytest.fixture
def proxy_server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def deployment(catalog: Catalog, proxy_server: ScriptedServer) -> DeploymentInfo:
    catalog.create_scaling_group("sg1", app_proxy_addr=proxy_server.addr, app_proxy_api_token=TOKEN)
    return catalog.create_deployment(make_deployment(lifecycle=DeploymentLifecycle.READY))


@pytest.fixture
def route_executor(
    repository: PostgresDeploymentRepository,
    scheduler: SessionTableScheduler,
    health_store: RedisHealthStore,
    service_discovery: RedisServiceDiscovery,
) -> RouteExecutor:
    return RouteExecutor(
        deployment_repo=repository,
        scheduling_controller=scheduler,
        health_store=health_store,
        service_discovery=service_discovery,
    )


@pytest.fixture
def deployment_executor(repository: PostgresDeploymentRepository) -> Iterator[DeploymentExecutor]:
    proxy = HttpAppProxy(settings=AppProxySettings(retries=0, read_timeout_s=2.0))
    yield DeploymentExecutor(deployment_repo=repository, app_proxy=proxy)
    proxy.close()


def _provisioned(
    route_executor: RouteExecutor,
    repository: PostgresDeploymentRepository,
    catalog: Catalog,
    deployment: DeploymentInfo,
) -> tuple[RouteData, SessionId]:
    """A route of `deployment` whose session the route executor has requested."""
    fresh = make_route(deployment)
    catalog.add_routes([fresh])
    assert route_executor.provision_routes([fresh]).successes == [fresh]
    linked = {r.id: r for r in _active(repository, deployment)}[fresh.id]
    assert linked.session_id is not None
    return linked, linked.session_id


def _active(
    repository: PostgresDeploymentRepository, deployment: DeploymentInfo
) -> list[RouteData]:
    return list(
        repository.fetch_active_routes_by_endpoint_ids({deployment.id}).get(deployment.id, [])
    )


def test_SC_RE_001_provision_writes_a_pending_session_and_links_the_route(
    route_executor: RouteExecutor,
    catalog: Catalog,
    engine: sa.Engine,
    deployment: DeploymentInfo,
    repository: PostgresDeploymentRepository,
) -> None:
    route, session_id = _provisioned(route_executor, repository, catalog, deployment)
    row = session_row(engine, session_id)
    assert (row["route_id"], row["status"]) == (route.id, "PENDING")
    assert row["spec"]["image"] == "registry.local/echo-model:1.0"


def test_SC_RE_002_a_redelivered_provision_starts_no_second_session(
    route_executor: RouteExecutor,
    catalog: Catalog,
    engine: sa.Engine,
    deployment: DeploymentInfo,
    repository: PostgresDeploymentRepository,
) -> None:
    route, session_id = _provisioned(route_executor, repository, catalog, deployment)
    stale_copy = make_route(deployment, id=route.id)  # as a redelivered task still sees it
    assert route_executor.provision_routes([stale_copy]).successes == [stale_copy]
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM sessions")).scalar_one()
    assert count == 1
    assert _active(repository, deployment)[0].session_id == session_id


def test_SC_RE_006_terminate_cancels_an_unstarted_session_and_stops_a_running_one(
    route_executor: RouteExecutor,
    catalog: Catalog,
    engine: sa.Engine,
    deployment: DeploymentInfo,
    repository: PostgresDeploymentRepository,
) -> None:
    waiting, waiting_session = _provisioned(route_executor, repository, catalog, deployment)
    running, running_session = _provisioned(route_executor, repository, catalog, deployment)
    report_session(engine, running_session, SessionStatus.RUNNING, host="10.0.0.1", port=8000)
    result = route_executor.terminate_routes([waiting, running])
    assert {r.id for r in result.successes} == {waiting.id, running.id}
    assert session_row(engine, waiting_session)["status"] == "CANCELLED"
    assert session_row(engine, running_session)["status"] == "TERMINATING"


def test_SC_RE_009_SC_RE_011_running_checks_read_real_session_statuses(
    route_executor: RouteExecutor,
    catalog: Catalog,
    engine: sa.Engine,
    deployment: DeploymentInfo,
    repository: PostgresDeploymentRepository,
) -> None:
    alive, alive_session = _provisioned(route_executor, repository, catalog, deployment)
    crashed, crashed_session = _provisioned(route_executor, repository, catalog, deployment)
    report_session(engine, alive_session, SessionStatus.RUNNING, host="h", port=1)
    report_session(engine, crashed_session, SessionStatus.ERROR)
    result = route_executor.check_running_routes([alive, crashed])
    assert result.successes == [alive]
    assert [(e.route_info.id, e.reason) for e in result.errors] == [
        (crashed.id, "RouteSessionTerminated")
    ]


def test_SC_RE_016_health_is_classified_from_real_redis_data(
    route_executor: RouteExecutor,
    health_store: RedisHealthStore,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
    deployment: DeploymentInfo,
) -> None:
    healthy, unhealthy, stale, unknown, malformed = (
        make_route(deployment, status=RouteStatus.DEGRADED) for _ in range(5)
    )
    health_store.update_readiness({str(healthy.id): True, str(unhealthy.id): False})
    long_ago = server_time_s(redis_client.time()) - 301
    redis_client.hset(
        redis_keys.route_health(stale.id), mapping={"readiness": "1", "last_readiness": long_ago}
    )
    redis_client.hset(redis_keys.route_health(malformed.id), mapping={"readiness": "maybe"})
    result = route_executor.check_route_health([healthy, unhealthy, stale, unknown, malformed])
    assert result.successes == [healthy]
    assert [e.route_info for e in result.errors] == [unhealthy]
    assert result.stale == [stale, unknown, malformed]


def test_SC_RE_017_healthy_running_routes_are_published_for_scraping(
    route_executor: RouteExecutor,
    service_discovery: RedisServiceDiscovery,
    catalog: Catalog,
    engine: sa.Engine,
    deployment: DeploymentInfo,
    repository: PostgresDeploymentRepository,
) -> None:
    route, session_id = _provisioned(route_executor, repository, catalog, deployment)
    report_session(engine, session_id, SessionStatus.RUNNING, host="10.0.0.9", port=8001)
    route_executor.sync_service_discovery([route])
    [target] = service_discovery.registered_targets()
    assert (target.route_id, target.host, target.port) == (route.id, "10.0.0.9", 8001)
    assert target.labels["endpoint_id"] == str(deployment.id)


def test_SC_RE_017_routes_that_lost_their_address_are_purged(
    route_executor: RouteExecutor,
    service_discovery: RedisServiceDiscovery,
    catalog: Catalog,
    engine: sa.Engine,
    deployment: DeploymentInfo,
    repository: PostgresDeploymentRepository,
) -> None:
    route, session_id = _provisioned(route_executor, repository, catalog, deployment)
    report_session(engine, session_id, SessionStatus.RUNNING, host="10.0.0.9", port=8001)
    route_executor.sync_service_discovery([route])
    report_session(engine, session_id, SessionStatus.TERMINATING)
    route_executor.sync_service_discovery([route])
    assert service_discovery.registered_targets() == []


def test_SC_RE_018_no_session_no_call_leaves_the_set_as_it_was(
    route_executor: RouteExecutor,
    service_discovery: RedisServiceDiscovery,
    catalog: Catalog,
    engine: sa.Engine,
    deployment: DeploymentInfo,
    repository: PostgresDeploymentRepository,
) -> None:
    route, session_id = _provisioned(route_executor, repository, catalog, deployment)
    report_session(engine, session_id, SessionStatus.RUNNING, host="10.0.0.9", port=8001)
    route_executor.sync_service_discovery([route])
    route_executor.sync_service_discovery([make_route(deployment)])  # no session: no call
    assert [t.route_id for t in service_discovery.registered_targets()] == [route.id]


@pytest.mark.usefixtures("deployment")
def test_SC_DE_001_registration_over_http_saves_the_url(
    deployment_executor: DeploymentExecutor,
    repository: PostgresDeploymentRepository,
    proxy_server: ScriptedServer,
    catalog: Catalog,
) -> None:
    pending = catalog.create_deployment(make_deployment())
    proxy_server.script.then(Reply.json({"endpoint": "http://proxy.local/echo"}))
    assert deployment_executor.check_pending_deployments([pending]).successes == [pending]
    assert repository.get_endpoints_by_ids({pending.id})[0].url == "http://proxy.local/echo"
    [seen] = proxy_server.script.seen
    assert seen.headers["X-BackendAI-Token"] == TOKEN


@pytest.mark.usefixtures("deployment")
def test_SC_DE_004_a_proxy_error_over_http_is_an_error_record(
    deployment_executor: DeploymentExecutor, proxy_server: ScriptedServer, catalog: Catalog
) -> None:
    pending = catalog.create_deployment(make_deployment())
    proxy_server.script.then(Reply(status=500, body="boom"))
    [error] = deployment_executor.check_pending_deployments([pending]).errors
    assert error.error_code == "app_proxy_request_failed"
    assert "HTTP 500" in error.reason


def test_SC_DE_008_scale_out_inserts_routes(
    deployment_executor: DeploymentExecutor,
    catalog: Catalog,
    repository: PostgresDeploymentRepository,
) -> None:
    catalog.create_scaling_group("sg2")
    scaling = catalog.create_deployment(
        make_deployment(
            resource_group="sg2", replica_count=3, lifecycle=DeploymentLifecycle.SCALING
        )
    )
    assert deployment_executor.scale_deployment([scaling]).successes == [scaling]
    assert len(_active(repository, scaling)) == 3


def test_SC_DE_015_destroy_marks_routes_terminating_and_deletes_the_endpoint(
    deployment_executor: DeploymentExecutor,
    proxy_server: ScriptedServer,
    catalog: Catalog,
    deployment: DeploymentInfo,
    repository: PostgresDeploymentRepository,
) -> None:
    catalog.add_routes([make_route(deployment, status=RouteStatus.HEALTHY)])
    proxy_server.script.then(Reply(status=404))  # already gone counts as deleted
    assert deployment_executor.destroy_deployment([deployment]).successes == [deployment]
    assert _active(repository, deployment) == []
    assert [(s.method, s.path) for s in proxy_server.script.seen] == [
        ("DELETE", f"/v2/endpoints/{deployment.id}")
    ]


def test_SC_DE_016_a_failed_delete_is_an_error_and_routes_stay_terminating(
    deployment_executor: DeploymentExecutor,
    proxy_server: ScriptedServer,
    catalog: Catalog,
    deployment: DeploymentInfo,
    repository: PostgresDeploymentRepository,
) -> None:
    catalog.add_routes([make_route(deployment, status=RouteStatus.HEALTHY)])
    proxy_server.script.then(Reply(status=500))
    result = deployment_executor.destroy_deployment([deployment])
    assert [e.reason for e in result.errors] == ["Failed to unregister endpoint"]
    assert _active(repository, deployment) == []


def test_unknown_route_ids_are_simply_absent(repository: PostgresDeploymentRepository) -> None:
    assert repository.fetch_session_statuses_by_route_ids({uuid4()}) == {}
