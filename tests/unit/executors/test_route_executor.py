"""RouteExecutor against autospecced ports: seeds SC-RE-001 to SC-RE-022, then the edges."""

from __future__ import annotations

from unittest.mock import MagicMock

import pytest

from tests.factories import context_of, make_deployment, make_route, new_session_id, revision_of
from workers.domain import (
    CleanupConfig,
    DeploymentLifecycle,
    HealthCheckStatus,
    HealthStatus,
    ModelServiceMetadata,
    RouteDiscoveryData,
    RouteExecutionError,
    RouteExecutionResult,
    RouteStatus,
    SessionSpec,
    SessionStatus,
)
from workers.errors import InfrastructureUnavailable
from workers.executors import RouteExecutor

EMPTY = RouteExecutionResult(successes=[], errors=[], stale=[])


def enqueued_specs(scheduler: MagicMock) -> list[SessionSpec]:
    return [c.args[0] for c in scheduler.enqueue_session.call_args_list]


# -- provision_routes -------------------------------------------------------------


def test_SC_RE_001_route_provisioning_success(
    route_executor: RouteExecutor, repo: MagicMock, scheduler: MagicMock
) -> None:
    deployment = make_deployment()
    r1 = make_route(deployment, session_id=None)
    repo.get_endpoints_by_ids.return_value = [deployment]
    repo.fetch_deployment_context.return_value = context_of(deployment)
    session_1 = new_session_id()
    scheduler.enqueue_session.return_value = session_1

    result = route_executor.provision_routes([r1])

    assert result == RouteExecutionResult(successes=[r1], errors=[], stale=[])
    repo.get_endpoints_by_ids.assert_called_once_with({deployment.id})
    repo.fetch_deployment_context.assert_called_once_with(deployment)
    scheduler.enqueue_session.assert_called_once()
    (spec,) = enqueued_specs(scheduler)
    assert (spec.route_id, spec.deployment_id) == (r1.id, deployment.id)
    assert spec.image == revision_of(deployment).image
    repo.update_route_sessions.assert_called_once_with({r1.id: session_1})


def test_SC_RE_002_route_with_existing_session_skipped(
    route_executor: RouteExecutor, repo: MagicMock, scheduler: MagicMock
) -> None:
    deployment = make_deployment()
    repo.get_endpoints_by_ids.return_value = [deployment]
    r1 = make_route(deployment, session_id=new_session_id())

    result = route_executor.provision_routes([r1])

    assert result == RouteExecutionResult(successes=[r1], errors=[], stale=[])
    scheduler.enqueue_session.assert_not_called()
    repo.update_route_sessions.assert_not_called()


def test_SC_RE_003_endpoint_not_found_error(
    route_executor: RouteExecutor, repo: MagicMock, scheduler: MagicMock
) -> None:
    r1 = make_route()
    repo.get_endpoints_by_ids.return_value = []

    result = route_executor.provision_routes([r1])

    assert result.successes == []
    (error,) = result.errors
    assert error.route_info == r1
    assert error.reason == "Failed to provision"
    assert error.error_detail.startswith("Deployment not found")
    assert error.error_code == "endpoint_not_found"
    scheduler.enqueue_session.assert_not_called()
    repo.update_route_sessions.assert_not_called()


def test_SC_RE_004_session_creation_failure_captured(
    route_executor: RouteExecutor, repo: MagicMock, scheduler: MagicMock
) -> None:
    deployment = make_deployment()
    r1 = make_route(deployment)
    repo.get_endpoints_by_ids.return_value = [deployment]
    repo.fetch_deployment_context.return_value = context_of(deployment)
    scheduler.enqueue_session.side_effect = Exception("Resource limit exceeded")

    result = route_executor.provision_routes([r1])

    assert result.successes == []
    assert result.errors == [
        RouteExecutionError(r1, "Failed to provision", "Resource limit exceeded")
    ]
    repo.update_route_sessions.assert_not_called()


def test_SC_RE_005_partial_success_among_routes(
    route_executor: RouteExecutor, repo: MagicMock, scheduler: MagicMock
) -> None:
    deployment = make_deployment()
    r1, r2 = make_route(deployment), make_route(deployment)
    repo.get_endpoints_by_ids.return_value = [deployment]
    repo.fetch_deployment_context.return_value = context_of(deployment)
    s1 = new_session_id()

    def enqueue(spec: SessionSpec) -> object:
        if spec.route_id == r2.id:
            raise Exception("Failed")
        return s1

    scheduler.enqueue_session.side_effect = enqueue

    result = route_executor.provision_routes([r1, r2])

    assert result.successes == [r1]
    assert result.errors == [RouteExecutionError(r2, "Failed to provision", "Failed")]
    repo.update_route_sessions.assert_called_once_with({r1.id: s1})


# -- terminate_routes -------------------------------------------------------------


def test_SC_RE_006_route_termination_success(
    route_executor: RouteExecutor, scheduler: MagicMock
) -> None:
    s1 = new_session_id()
    r1 = make_route(session_id=s1)

    result = route_executor.terminate_routes([r1])

    assert result == RouteExecutionResult(successes=[r1], errors=[], stale=[])
    scheduler.mark_sessions_for_termination.assert_called_once_with([s1])


def test_SC_RE_007_route_without_session_skipped(
    route_executor: RouteExecutor, scheduler: MagicMock
) -> None:
    r1 = make_route(session_id=None)

    result = route_executor.terminate_routes([r1])

    assert result == RouteExecutionResult(successes=[r1], errors=[], stale=[])
    scheduler.mark_sessions_for_termination.assert_not_called()


def test_SC_RE_008_multiple_routes_batch_terminated(
    route_executor: RouteExecutor, scheduler: MagicMock
) -> None:
    s1, s2, s3 = new_session_id(), new_session_id(), new_session_id()
    r1, r2, r3 = make_route(session_id=s1), make_route(session_id=s2), make_route(session_id=s3)

    result = route_executor.terminate_routes([r1, r2, r3])

    assert result.successes == [r1, r2, r3]
    scheduler.mark_sessions_for_termination.assert_called_once_with([s1, s2, s3])


# -- check_running_routes ---------------------------------------------------------


def test_SC_RE_009_running_session_check_success(
    route_executor: RouteExecutor, repo: MagicMock
) -> None:
    r1 = make_route(session_id=new_session_id(), status=RouteStatus.HEALTHY)
    repo.fetch_session_statuses_by_route_ids.return_value = {r1.id: SessionStatus.RUNNING}

    result = route_executor.check_running_routes([r1])

    assert result == RouteExecutionResult(successes=[r1], errors=[], stale=[])
    repo.fetch_session_statuses_by_route_ids.assert_called_once_with({r1.id})


def test_SC_RE_010_session_not_found_error(route_executor: RouteExecutor, repo: MagicMock) -> None:
    r1 = make_route(session_id=new_session_id())
    repo.fetch_session_statuses_by_route_ids.return_value = {}

    result = route_executor.check_running_routes([r1])

    assert result.successes == []
    (error,) = result.errors
    assert (error.route_info, error.reason) == (r1, "RouteSessionNotFound")
    assert error.error_code == "route_session_not_found"
    assert str(r1.id) in error.error_detail


def test_SC_RE_011_session_terminated_error(route_executor: RouteExecutor, repo: MagicMock) -> None:
    r1 = make_route(session_id=new_session_id())
    repo.fetch_session_statuses_by_route_ids.return_value = {r1.id: SessionStatus.TERMINATED}

    result = route_executor.check_running_routes([r1])

    assert result.successes == []
    (error,) = result.errors
    assert (error.route_info, error.reason) == (r1, "RouteSessionTerminated")
    assert error.error_code == "route_session_terminated"
    assert "TERMINATED" in error.error_detail


# -- check_route_health -----------------------------------------------------------


def health(status: HealthCheckStatus) -> HealthStatus:
    return HealthStatus(status=status)


def test_SC_RE_012_healthy_route_success(
    route_executor: RouteExecutor, health_store: MagicMock
) -> None:
    r1 = make_route(status=RouteStatus.DEGRADED)
    health_store.check_route_health_status.return_value = {
        str(r1.id): health(HealthCheckStatus.HEALTHY)
    }

    result = route_executor.check_route_health([r1])

    assert result == RouteExecutionResult(successes=[r1], errors=[], stale=[])
    health_store.check_route_health_status.assert_called_once_with([str(r1.id)])


def test_SC_RE_013_unhealthy_route_error(
    route_executor: RouteExecutor, health_store: MagicMock
) -> None:
    r1 = make_route(status=RouteStatus.HEALTHY)
    health_store.check_route_health_status.return_value = {
        str(r1.id): health(HealthCheckStatus.UNHEALTHY)
    }

    result = route_executor.check_route_health([r1])

    assert (result.successes, result.stale) == ([], [])
    (error,) = result.errors
    assert (error.route_info, error.reason) == (r1, "RouteUnhealthy")
    assert error.error_code == "route_unhealthy"
    health_store.check_route_health_status.assert_called_once_with([str(r1.id)])


def test_SC_RE_014_stale_route_added_to_stale(
    route_executor: RouteExecutor, health_store: MagicMock
) -> None:
    r1 = make_route(status=RouteStatus.HEALTHY)
    health_store.check_route_health_status.return_value = {
        str(r1.id): health(HealthCheckStatus.STALE)
    }

    result = route_executor.check_route_health([r1])

    assert result == RouteExecutionResult(successes=[], errors=[], stale=[r1])
    health_store.check_route_health_status.assert_called_once_with([str(r1.id)])


def test_SC_RE_015_no_health_data_treated_as_stale(
    route_executor: RouteExecutor, health_store: MagicMock
) -> None:
    r1 = make_route(status=RouteStatus.HEALTHY)
    health_store.check_route_health_status.return_value = {}

    result = route_executor.check_route_health([r1])

    assert result == RouteExecutionResult(successes=[], errors=[], stale=[r1])
    health_store.check_route_health_status.assert_called_once_with([str(r1.id)])


def test_SC_RE_016_mixed_results_classified(
    route_executor: RouteExecutor, health_store: MagicMock
) -> None:
    r1, r2, r3 = make_route(), make_route(), make_route()
    health_store.check_route_health_status.return_value = {
        str(r1.id): health(HealthCheckStatus.HEALTHY),
        str(r2.id): health(HealthCheckStatus.UNHEALTHY),
        str(r3.id): health(HealthCheckStatus.STALE),
    }

    result = route_executor.check_route_health([r1, r2, r3])

    assert result.successes == [r1]
    assert [(e.route_info, e.reason) for e in result.errors] == [(r2, "RouteUnhealthy")]
    assert result.stale == [r3]
    health_store.check_route_health_status.assert_called_once_with(
        [str(r1.id), str(r2.id), str(r3.id)]
    )


# -- sync_service_discovery -------------------------------------------------------


def test_SC_RE_017_service_discovery_sync_success(
    route_executor: RouteExecutor, repo: MagicMock, service_discovery: MagicMock
) -> None:
    deployment = make_deployment(name="llama")
    r1 = make_route(deployment, session_id=new_session_id(), status=RouteStatus.HEALTHY)
    repo.fetch_route_service_discovery_info.return_value = [
        RouteDiscoveryData(
            route_id=r1.id,
            endpoint_id=deployment.id,
            endpoint_name="llama",
            host="192.168.1.1",
            port=8080,
            runtime_variant="vllm",
        )
    ]

    result = route_executor.sync_service_discovery([r1])

    assert result == EMPTY
    repo.fetch_route_service_discovery_info.assert_called_once_with({r1.id})
    service_discovery.sync_model_service_routes.assert_called_once_with(
        [
            ModelServiceMetadata(
                route_id=r1.id,
                model_service_name="llama",
                host="192.168.1.1",
                port=8080,
                metrics_path="/metrics",
                labels={
                    "route_id": str(r1.id),
                    "endpoint_id": str(deployment.id),
                    "model_service_name": "llama",
                    "runtime_variant": "vllm",
                },
            )
        ]
    )


def test_SC_RE_018_route_without_session_skipped(
    route_executor: RouteExecutor, repo: MagicMock, service_discovery: MagicMock
) -> None:
    r1 = make_route(session_id=None, status=RouteStatus.HEALTHY)

    result = route_executor.sync_service_discovery([r1])

    assert result == EMPTY
    repo.fetch_route_service_discovery_info.assert_not_called()
    service_discovery.sync_model_service_routes.assert_not_called()


# -- cleanup_routes_by_config -----------------------------------------------------


def test_SC_RE_019_cleanup_target_routes_filtered(
    route_executor: RouteExecutor, repo: MagicMock
) -> None:
    deployment = make_deployment(resource_group="sg1")
    r1 = make_route(deployment, status=RouteStatus.UNHEALTHY)
    repo.get_endpoints_by_ids.return_value = [deployment]
    repo.get_scaling_group_cleanup_configs.return_value = {
        "sg1": CleanupConfig(cleanup_target_statuses=[RouteStatus.UNHEALTHY, RouteStatus.DEGRADED])
    }

    result = route_executor.cleanup_routes_by_config([r1])

    assert result.successes == [r1]
    repo.get_endpoints_by_ids.assert_called_once_with({deployment.id})
    repo.get_scaling_group_cleanup_configs.assert_called_once_with(["sg1"])


def test_SC_RE_020_route_not_cleanup_target(route_executor: RouteExecutor, repo: MagicMock) -> None:
    deployment = make_deployment(resource_group="sg1")
    r1 = make_route(deployment, status=RouteStatus.HEALTHY)
    repo.get_endpoints_by_ids.return_value = [deployment]
    repo.get_scaling_group_cleanup_configs.return_value = {
        "sg1": CleanupConfig(cleanup_target_statuses=[RouteStatus.UNHEALTHY])
    }

    result = route_executor.cleanup_routes_by_config([r1])

    assert result.successes == []
    repo.get_scaling_group_cleanup_configs.assert_called_once_with(["sg1"])


def test_SC_RE_021_no_cleanup_config_all_excluded(
    route_executor: RouteExecutor, repo: MagicMock
) -> None:
    deployment = make_deployment(resource_group="sg1")
    r1 = make_route(deployment, status=RouteStatus.UNHEALTHY)
    repo.get_endpoints_by_ids.return_value = [deployment]
    repo.get_scaling_group_cleanup_configs.return_value = {}

    result = route_executor.cleanup_routes_by_config([r1])

    assert result.successes == []
    repo.get_scaling_group_cleanup_configs.assert_called_once_with(["sg1"])


# -- empty input ------------------------------------------------------------------


@pytest.mark.parametrize(
    "method",
    [
        "provision_routes",
        "terminate_routes",
        "check_running_routes",
        "check_route_health",
        "sync_service_discovery",
        "cleanup_routes_by_config",
    ],
)
def test_SC_RE_022_empty_route_list_immediate_return(
    route_executor: RouteExecutor,
    repo: MagicMock,
    scheduler: MagicMock,
    health_store: MagicMock,
    service_discovery: MagicMock,
    method: str,
) -> None:
    result = getattr(route_executor, method)([])

    assert result == EMPTY
    for dependency in (repo, scheduler, health_store, service_discovery):
        assert dependency.mock_calls == []


# -- edges the seeds leave out ----------------------------------------------------


def test_provision_of_a_repeated_route_starts_one_session(
    route_executor: RouteExecutor, repo: MagicMock, scheduler: MagicMock
) -> None:
    deployment = make_deployment()
    r1 = make_route(deployment)
    repo.get_endpoints_by_ids.return_value = [deployment]
    repo.fetch_deployment_context.return_value = context_of(deployment)
    s1 = new_session_id()
    scheduler.enqueue_session.return_value = s1

    result = route_executor.provision_routes([r1, r1])

    assert result == RouteExecutionResult(successes=[r1])
    assert scheduler.enqueue_session.call_count == 1
    repo.update_route_sessions.assert_called_once_with({r1.id: s1})


def test_repeated_routes_are_terminated_and_checked_once(
    route_executor: RouteExecutor, scheduler: MagicMock, health_store: MagicMock
) -> None:
    s1 = new_session_id()
    r1 = make_route(session_id=s1)
    health_store.check_route_health_status.return_value = {}

    assert route_executor.terminate_routes([r1, r1]).successes == [r1]
    assert route_executor.check_route_health([r1, r1]).stale == [r1]
    scheduler.mark_sessions_for_termination.assert_called_once_with([s1])
    health_store.check_route_health_status.assert_called_once_with([str(r1.id)])


@pytest.mark.parametrize(
    "lifecycle", [DeploymentLifecycle.DESTROYING, DeploymentLifecycle.DESTROYED]
)
def test_route_of_a_deployment_being_destroyed_gets_no_session(
    route_executor: RouteExecutor,
    repo: MagicMock,
    scheduler: MagicMock,
    lifecycle: DeploymentLifecycle,
) -> None:
    deployment = make_deployment(lifecycle=lifecycle)
    r1 = make_route(deployment)
    repo.get_endpoints_by_ids.return_value = [deployment]

    result = route_executor.provision_routes([r1])

    (error,) = result.errors
    assert (error.route_info, error.reason) == (r1, "Failed to provision")
    assert error.error_code == "deployment_not_active"
    assert lifecycle.value in error.error_detail
    scheduler.enqueue_session.assert_not_called()
    repo.fetch_deployment_context.assert_not_called()
    repo.update_route_sessions.assert_not_called()


def test_deployment_context_is_loaded_once_per_deployment(
    route_executor: RouteExecutor, repo: MagicMock, scheduler: MagicMock
) -> None:
    deployment = make_deployment()
    r1, r2 = make_route(deployment), make_route(deployment)
    repo.get_endpoints_by_ids.return_value = [deployment]
    repo.fetch_deployment_context.return_value = context_of(deployment)
    scheduler.enqueue_session.side_effect = lambda spec: new_session_id()

    result = route_executor.provision_routes([r1, r2])

    assert result.successes == [r1, r2]
    repo.fetch_deployment_context.assert_called_once_with(deployment)


def test_failed_deployment_context_fails_each_of_its_routes(
    route_executor: RouteExecutor, repo: MagicMock, scheduler: MagicMock
) -> None:
    deployment = make_deployment()
    r1, r2 = make_route(deployment), make_route(deployment)
    repo.get_endpoints_by_ids.return_value = [deployment]
    repo.fetch_deployment_context.side_effect = ValueError("image not in registry")

    result = route_executor.provision_routes([r1, r2])

    assert result.errors == [
        RouteExecutionError(r1, "Failed to provision", "image not in registry"),
        RouteExecutionError(r2, "Failed to provision", "image not in registry"),
    ]
    repo.fetch_deployment_context.assert_called_once_with(deployment)
    scheduler.enqueue_session.assert_not_called()


def test_session_spec_carries_the_revision_and_merged_environment(
    route_executor: RouteExecutor, repo: MagicMock, scheduler: MagicMock
) -> None:
    deployment = make_deployment(name="llama", resource_group="gpu")
    r1 = make_route(deployment)
    repo.get_endpoints_by_ids.return_value = [deployment]
    repo.fetch_deployment_context.return_value = context_of(
        deployment, MODEL_NAME="from-group", HF_HOME="/cache"
    )
    scheduler.enqueue_session.return_value = new_session_id()

    route_executor.provision_routes([r1])

    (spec,) = enqueued_specs(scheduler)
    revision = revision_of(deployment)
    assert spec.name == f"llama-{r1.id.hex[:8]}"
    assert spec.resource_group == "gpu"
    assert spec.startup_command == revision.startup_command
    assert spec.environ == {"MODEL_NAME": "echo", "HF_HOME": "/cache"}  # the revision wins
    assert (spec.owner, spec.project, spec.domain) == ("user-1", "project-1", "default")


def test_provision_lets_a_failing_batch_read_propagate(
    route_executor: RouteExecutor, repo: MagicMock, scheduler: MagicMock
) -> None:
    repo.get_endpoints_by_ids.side_effect = InfrastructureUnavailable("database unreachable")

    with pytest.raises(InfrastructureUnavailable):
        route_executor.provision_routes([make_route()])

    scheduler.enqueue_session.assert_not_called()
    repo.update_route_sessions.assert_not_called()


def test_provision_retries_the_batch_when_the_scheduler_store_is_down(
    route_executor: RouteExecutor, repo: MagicMock, scheduler: MagicMock
) -> None:
    deployment = make_deployment()
    repo.get_endpoints_by_ids.return_value = [deployment]
    repo.fetch_deployment_context.return_value = context_of(deployment)
    scheduler.enqueue_session.side_effect = InfrastructureUnavailable("sessions table unreachable")

    with pytest.raises(InfrastructureUnavailable):
        route_executor.provision_routes([make_route(deployment)])

    repo.update_route_sessions.assert_not_called()


def test_health_check_lets_a_failing_store_propagate(
    route_executor: RouteExecutor, health_store: MagicMock
) -> None:
    health_store.check_route_health_status.side_effect = ConnectionError("redis down")

    with pytest.raises(ConnectionError):
        route_executor.check_route_health([make_route()])


@pytest.mark.parametrize(
    ("session_status", "ok"),
    [
        (SessionStatus.PENDING, True),
        (SessionStatus.RUNNING, True),
        (SessionStatus.TERMINATING, True),
        (SessionStatus.ERROR, False),
        (SessionStatus.CANCELLED, False),
    ],
)
def test_only_terminal_sessions_fail_the_running_check(
    route_executor: RouteExecutor, repo: MagicMock, session_status: SessionStatus, ok: bool
) -> None:
    r1 = make_route(session_id=new_session_id())
    repo.fetch_session_statuses_by_route_ids.return_value = {r1.id: session_status}

    result = route_executor.check_running_routes([r1])

    assert (result.successes == [r1]) is ok
    assert [e.reason for e in result.errors] == ([] if ok else ["RouteSessionTerminated"])


def test_sync_with_sessions_but_no_address_publishes_the_empty_set(
    route_executor: RouteExecutor, repo: MagicMock, service_discovery: MagicMock
) -> None:
    r1 = make_route(session_id=new_session_id(), status=RouteStatus.HEALTHY)
    repo.fetch_route_service_discovery_info.return_value = []

    result = route_executor.sync_service_discovery([r1])

    assert result == EMPTY
    service_discovery.sync_model_service_routes.assert_called_once_with([])


def test_cleanup_honours_every_status_a_config_names(
    route_executor: RouteExecutor, repo: MagicMock
) -> None:
    in_sg1, in_sg2 = make_deployment(resource_group="sg1"), make_deployment(resource_group="sg2")
    degraded = make_route(in_sg1, status=RouteStatus.DEGRADED)
    healthy_sg1 = make_route(in_sg1, status=RouteStatus.HEALTHY)
    healthy_sg2 = make_route(in_sg2, status=RouteStatus.HEALTHY)
    unhealthy_sg2 = make_route(in_sg2, status=RouteStatus.UNHEALTHY)
    orphan = make_route(status=RouteStatus.UNHEALTHY)  # its deployment is gone
    repo.get_endpoints_by_ids.return_value = [in_sg1, in_sg2]
    repo.get_scaling_group_cleanup_configs.return_value = {
        "sg1": CleanupConfig(cleanup_target_statuses=[RouteStatus.DEGRADED]),
        "sg2": CleanupConfig(cleanup_target_statuses=[RouteStatus.HEALTHY, RouteStatus.UNHEALTHY]),
    }

    result = route_executor.cleanup_routes_by_config(
        [degraded, healthy_sg1, healthy_sg2, unhealthy_sg2, orphan]
    )

    assert result.successes == [degraded, healthy_sg2, unhealthy_sg2]
    repo.get_scaling_group_cleanup_configs.assert_called_once_with(["sg1", "sg2"])


# -- finish_draining (drain before terminate; not a seed scenario) --


def test_drained_routes_no_longer_published_may_stop(
    route_executor: RouteExecutor, service_discovery: MagicMock
) -> None:
    gone, still_published = make_route(), make_route()
    service_discovery.published_route_ids.return_value = {still_published.id}
    result = route_executor.finish_draining([gone, still_published, gone])
    assert result.successes == [gone]
    assert result.stale == [still_published]  # keeps draining until a sync drops it
    assert result.errors == []


def test_finish_draining_with_no_routes_reads_nothing(
    route_executor: RouteExecutor, service_discovery: MagicMock
) -> None:
    assert route_executor.finish_draining([]) == RouteExecutionResult()
    service_discovery.published_route_ids.assert_not_called()
