"""The seeds' integration scenarios: whole flows through both executors over one in-memory world.

Between steps the test applies what the phase table (README) says the phase would
(e.g. a provisioned route becomes degraded) and re-reads every entity, as the
next phase would load it fresh.
"""

from __future__ import annotations

from dataclasses import replace
from uuid import UUID

import pytest

from tests.factories import make_deployment, make_route
from tests.fakes import World, fake_ports
from workers.domain import (
    CleanupConfig,
    DeploymentInfo,
    DeploymentLifecycle,
    HealthCheckStatus,
    RouteData,
    RouteStatus,
    ScalingGroupProxyTarget,
    SessionStatus,
)
from workers.executors import DeploymentExecutor, RouteExecutor

PROXY = ScalingGroupProxyTarget(addr="proxy.local:8080", api_token="t0ken")


@pytest.fixture
def world() -> World:
    world = World()
    world.proxy_targets["sg1"] = PROXY
    world.cleanup_configs["sg1"] = CleanupConfig(cleanup_target_statuses=[RouteStatus.UNHEALTHY])
    return world


@pytest.fixture
def routes(world: World) -> RouteExecutor:
    ports = fake_ports(world)
    return RouteExecutor(
        deployment_repo=ports.deployment_repo,
        scheduling_controller=ports.scheduling_controller,
        health_store=ports.health_store,
        service_discovery=ports.service_discovery,
    )


@pytest.fixture
def deployments(world: World) -> DeploymentExecutor:
    ports = fake_ports(world)
    return DeploymentExecutor(deployment_repo=ports.deployment_repo, app_proxy=ports.app_proxy)


def fresh(world: World, route_id: UUID) -> RouteData:
    return world.routes[route_id]


def set_lifecycle(world: World, deployment: DeploymentInfo, lifecycle: DeploymentLifecycle) -> None:
    world.deployments[deployment.id] = replace(
        world.deployments[deployment.id], lifecycle=lifecycle
    )


def test_SC_RE_INT_001_full_route_lifecycle(world: World, routes: RouteExecutor) -> None:
    d1 = world.add_deployment(make_deployment(lifecycle=DeploymentLifecycle.READY))
    r1 = world.add_route(make_route(d1))

    # 1. provision: a session is created and linked; the phase marks the route degraded
    assert routes.provision_routes([r1]).successes == [r1]
    session = world.session_of(r1.id)
    assert (session.status, session.spec.route_id) == (SessionStatus.PENDING, r1.id)
    world.set_route_status([r1.id], RouteStatus.DEGRADED)

    # 2. the scheduler starts it; the running check passes
    world.run_session(session.id, "10.0.0.5", 9000)
    assert routes.check_running_routes([fresh(world, r1.id)]).successes == [fresh(world, r1.id)]

    # 3. the health checker reports it ready; the route becomes healthy
    world.report_readiness(r1.id, HealthCheckStatus.HEALTHY)
    assert routes.check_route_health([fresh(world, r1.id)]).successes == [fresh(world, r1.id)]
    world.set_route_status([r1.id], RouteStatus.HEALTHY)

    # 4. it is published for scraping
    routes.sync_service_discovery([fresh(world, r1.id)])
    assert [(t.route_id, t.host, t.port) for t in world.scrape_targets] == [
        (r1.id, "10.0.0.5", 9000)
    ]

    # 5-6. later it turns unhealthy
    world.report_readiness(r1.id, HealthCheckStatus.UNHEALTHY)
    checked = routes.check_route_health([fresh(world, r1.id)])
    assert [(e.route_info.id, e.reason) for e in checked.errors] == [(r1.id, "RouteUnhealthy")]
    world.set_route_status([r1.id], RouteStatus.UNHEALTHY)

    # 7. its resource group's config makes it a cleanup target
    assert routes.cleanup_routes_by_config([fresh(world, r1.id)]).successes == [fresh(world, r1.id)]
    world.set_route_status([r1.id], RouteStatus.TERMINATING)

    # 8. termination stops its session; the route ends terminated
    assert routes.terminate_routes([fresh(world, r1.id)]).successes == [fresh(world, r1.id)]
    world.set_route_status([r1.id], RouteStatus.TERMINATED)
    assert world.session_of(r1.id).status is SessionStatus.TERMINATING
    assert fresh(world, r1.id).status is RouteStatus.TERMINATED


def test_SC_RE_INT_002_health_based_auto_recovery(
    world: World, routes: RouteExecutor, deployments: DeploymentExecutor
) -> None:
    d1 = world.add_deployment(make_deployment(lifecycle=DeploymentLifecycle.READY))
    r1 = world.add_route(make_route(d1))
    routes.provision_routes([r1])
    world.run_session(world.session_of(r1.id).id, "10.0.0.7", 9000)
    world.set_route_status([r1.id], RouteStatus.UNHEALTHY)
    world.report_readiness(r1.id, HealthCheckStatus.UNHEALTHY)

    # 1. the health check still sees it failing
    assert [e.route_info.id for e in routes.check_route_health([fresh(world, r1.id)]).errors] == [
        r1.id
    ]
    # 2. it is a cleanup target
    assert routes.cleanup_routes_by_config([fresh(world, r1.id)]).successes == [fresh(world, r1.id)]
    world.set_route_status([r1.id], RouteStatus.TERMINATING)
    # 3. its session is stopped
    routes.terminate_routes([fresh(world, r1.id)])
    world.set_route_status([r1.id], RouteStatus.TERMINATED)
    assert world.session_of(r1.id).status is SessionStatus.TERMINATING

    # 4. the deployment is one replica short, so the upper handler creates a replacement
    assert world.active_routes(d1.id) == []
    assert deployments.check_ready_deployments_that_need_scaling([d1]).errors
    assert deployments.scale_deployment([d1]).successes == [d1]
    (replacement,) = world.active_routes(d1.id)
    assert replacement.id != r1.id
    assert (replacement.status, replacement.session_id) == (RouteStatus.PROVISIONING, None)


def test_SC_DE_INT_001_full_deployment_lifecycle(
    world: World, routes: RouteExecutor, deployments: DeploymentExecutor
) -> None:
    d1 = world.add_deployment(make_deployment(replica_count=3))

    def current() -> DeploymentInfo:
        return world.deployments[d1.id]

    # 1. pending: the endpoint is registered with the proxy and its URL saved
    pending = current()
    assert deployments.check_pending_deployments([pending]).successes == [pending]
    assert d1.id in world.proxy_endpoints
    assert current().url == f"http://proxy.local:8080/e/{d1.id.hex[:8]}"
    set_lifecycle(world, d1, DeploymentLifecycle.SCALING)

    # 2. with no rules the manual count becomes the desired count
    scaling = current()
    assert deployments.calculate_desired_replicas([scaling]).successes == [scaling]
    assert current().desired_replica_count == 3

    # 3. scaling creates the routes, which get sessions
    assert deployments.scale_deployment([current()]).successes == [current()]
    created = world.active_routes(d1.id)
    assert len(created) == 3
    assert len(routes.provision_routes(created).successes) == 3
    set_lifecycle(world, d1, DeploymentLifecycle.READY)

    # 4. the replica check passes
    assert deployments.check_ready_deployments_that_need_scaling([current()]).successes == [
        current()
    ]

    # 5. destroy: routes terminating, endpoint unregistered, then sessions stopped
    set_lifecycle(world, d1, DeploymentLifecycle.DESTROYING)
    assert deployments.destroy_deployment([current()]).successes == [current()]
    assert d1.id not in world.proxy_endpoints
    terminating = [world.routes[r.id] for r in created]
    assert {r.status for r in terminating} == {RouteStatus.TERMINATING}
    routes.terminate_routes(terminating)
    assert {world.session_of(r.id).status for r in created} == {SessionStatus.CANCELLED}
    assert world.active_routes(d1.id) == []
