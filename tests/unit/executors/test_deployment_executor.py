"""DeploymentExecutor against autospecced ports: seeds SC-DE-001 to SC-DE-018, then the edges."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from unittest.mock import MagicMock, call

import pytest

from tests.factories import make_deployment, make_route
from workers.domain import (
    AutoScalingMetricsData,
    AutoScalingRule,
    Comparator,
    DeploymentExecutionError,
    DeploymentExecutionResult,
    DeploymentLifecycle,
    MetricSource,
    RolloutSpec,
    RolloutState,
    RouteBatchUpdater,
    RouteCreator,
    RouteData,
    RouteStatus,
    ScalingGroupProxyTarget,
)
from workers.errors import InfrastructureUnavailable
from workers.executors import DeploymentExecutor

EMPTY = DeploymentExecutionResult(successes=[], errors=[], skipped=[])
TARGET = ScalingGroupProxyTarget(addr="proxy:8080", api_token="token")


def rule(**overrides: object) -> AutoScalingRule:
    fields: dict[str, object] = {
        "metric_source": MetricSource.INFERENCE_FRAMEWORK,
        "metric_name": "requests_in_flight",
        "threshold": 10.0,
        "comparator": Comparator.GREATER_THAN,
        "step_size": 1,
    }
    return AutoScalingRule(**(fields | overrides))  # type: ignore[arg-type]


# -- check_pending_deployments ----------------------------------------------------


def test_SC_DE_001_endpoint_registration_success(
    deployment_executor: DeploymentExecutor,
    repo: MagicMock,
    app_proxy: MagicMock,
    proxy_client: MagicMock,
) -> None:
    d1 = make_deployment(resource_group="sg1", open_to_public=True)
    repo.fetch_scaling_group_proxy_targets.return_value = {"sg1": TARGET}
    proxy_client.create_endpoint.return_value = {"endpoint": "https://endpoint1.example.com"}

    result = deployment_executor.check_pending_deployments([d1])

    assert result.successes == [d1]
    assert result.errors == []
    repo.fetch_scaling_group_proxy_targets.assert_called_once_with({"sg1"})
    app_proxy.client_for.assert_called_once_with(TARGET)
    proxy_client.create_endpoint.assert_called_once()
    endpoint_id, body = proxy_client.create_endpoint.call_args.args
    assert endpoint_id == d1.id
    assert (body["version"], body["service_name"], body["open_to_public"]) == ("v2", d1.name, True)
    repo.update_endpoint_urls_bulk.assert_called_once_with({d1.id: "https://endpoint1.example.com"})


def test_SC_DE_002_deployment_without_target_revision_skipped(
    deployment_executor: DeploymentExecutor,
    repo: MagicMock,
    proxy_client: MagicMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    d1 = make_deployment(target_revision=None)
    repo.fetch_scaling_group_proxy_targets.return_value = {"sg1": TARGET}

    with caplog.at_level(logging.WARNING):
        result = deployment_executor.check_pending_deployments([d1])

    assert (result.successes, result.errors) == ([], [])
    assert result.waiting == [d1]  # it is not done: the phase comes back to it
    assert f"deployment {d1.id}: has no target revision" in caplog.text
    proxy_client.create_endpoint.assert_not_called()
    repo.update_endpoint_urls_bulk.assert_not_called()


@pytest.mark.parametrize("targets", [{"sg1": None}, {}], ids=["target-none", "group-absent"])
def test_SC_DE_003_scaling_group_without_proxy_target_skipped(
    deployment_executor: DeploymentExecutor,
    repo: MagicMock,
    proxy_client: MagicMock,
    caplog: pytest.LogCaptureFixture,
    targets: dict[str, object],
) -> None:
    d1 = make_deployment(resource_group="sg1")
    repo.fetch_scaling_group_proxy_targets.return_value = targets

    with caplog.at_level(logging.WARNING):
        result = deployment_executor.check_pending_deployments([d1])

    assert (result.successes, result.errors) == ([], [])
    assert f"deployment {d1.id}: has no app proxy in its group" in caplog.text
    repo.fetch_scaling_group_proxy_targets.assert_called_once_with({"sg1"})
    proxy_client.create_endpoint.assert_not_called()


def test_SC_DE_004_endpoint_registration_failure_captured(
    deployment_executor: DeploymentExecutor, repo: MagicMock, proxy_client: MagicMock
) -> None:
    d1 = make_deployment()
    repo.fetch_scaling_group_proxy_targets.return_value = {"sg1": TARGET}
    proxy_client.create_endpoint.side_effect = Exception("Connection refused")

    result = deployment_executor.check_pending_deployments([d1])

    assert result.successes == []
    assert result.errors == [
        DeploymentExecutionError(d1, "Connection refused", "Failed to register endpoint")
    ]
    repo.update_endpoint_urls_bulk.assert_not_called()


def test_SC_DE_005_partial_success_some_deployments_fail(
    deployment_executor: DeploymentExecutor, repo: MagicMock, proxy_client: MagicMock
) -> None:
    d1, d2 = make_deployment(), make_deployment()
    repo.fetch_scaling_group_proxy_targets.return_value = {"sg1": TARGET}

    def create_endpoint(endpoint_id: object, body: object) -> dict[str, str]:
        if endpoint_id == d2.id:
            raise Exception("Timeout")
        return {"endpoint": "https://endpoint1.example.com"}

    proxy_client.create_endpoint.side_effect = create_endpoint

    result = deployment_executor.check_pending_deployments([d1, d2])

    assert result.successes == [d1]
    assert result.errors == [DeploymentExecutionError(d2, "Timeout", "Failed to register endpoint")]
    repo.update_endpoint_urls_bulk.assert_called_once_with({d1.id: "https://endpoint1.example.com"})


# -- check_ready_deployments_that_need_scaling ------------------------------------


def test_SC_DE_006_replica_count_matches_success(
    deployment_executor: DeploymentExecutor, repo: MagicMock
) -> None:
    d1 = make_deployment(replica_count=3)
    repo.fetch_active_routes_by_endpoint_ids.return_value = {
        d1.id: [make_route(d1), make_route(d1), make_route(d1)]
    }

    result = deployment_executor.check_ready_deployments_that_need_scaling([d1])

    assert (result.successes, result.errors) == ([d1], [])
    repo.fetch_active_routes_by_endpoint_ids.assert_called_once_with({d1.id})


def test_SC_DE_007_replica_count_mismatch_error(
    deployment_executor: DeploymentExecutor, repo: MagicMock
) -> None:
    d1 = make_deployment(replica_count=3)
    repo.fetch_active_routes_by_endpoint_ids.return_value = {
        d1.id: [make_route(d1), make_route(d1)]
    }

    result = deployment_executor.check_ready_deployments_that_need_scaling([d1])

    assert result.successes == []
    (error,) = result.errors
    assert (error.deployment_info, error.reason) == (d1, "Mismatched active routes")
    assert error.error_code == "replica_count_mismatch"
    assert error.error_detail == "Expected 3 active routes, found 2"


# -- scale_deployment -------------------------------------------------------------


def test_SC_DE_008_scale_out_creates_routes(
    deployment_executor: DeploymentExecutor, repo: MagicMock
) -> None:
    d1 = make_deployment(replica_count=3)
    repo.fetch_active_routes_by_endpoint_ids.return_value = {d1.id: [make_route(d1)]}

    result = deployment_executor.scale_deployment([d1])

    assert result.successes == [d1]
    repo.fetch_active_routes_by_endpoint_ids.assert_called_once_with({d1.id})
    repo.scale_routes.assert_called_once_with([RouteCreator(d1.id), RouteCreator(d1.id)], None)


def test_SC_DE_009_scale_in_terminates_routes(
    deployment_executor: DeploymentExecutor, repo: MagicMock
) -> None:
    d1 = make_deployment(replica_count=2)
    routes = [make_route(d1, status=RouteStatus.HEALTHY) for _ in range(4)]
    repo.fetch_active_routes_by_endpoint_ids.return_value = {d1.id: routes}

    result = deployment_executor.scale_deployment([d1])

    assert result.successes == [d1]
    repo.scale_routes.assert_called_once()
    creators, updater = repo.scale_routes.call_args.args
    assert creators == []
    assert isinstance(updater, RouteBatchUpdater)
    assert len(updater.route_ids) == 2
    assert set(updater.route_ids) <= {r.id for r in routes}
    assert updater.status is RouteStatus.TERMINATING


def test_SC_DE_010_no_scaling_needed_skipped(
    deployment_executor: DeploymentExecutor, repo: MagicMock
) -> None:
    d1 = make_deployment(replica_count=2)
    repo.fetch_active_routes_by_endpoint_ids.return_value = {
        d1.id: [make_route(d1), make_route(d1)]
    }

    result = deployment_executor.scale_deployment([d1])

    assert result.successes == []
    assert result.skipped == [d1]
    repo.scale_routes.assert_not_called()


# -- calculate_desired_replicas ---------------------------------------------------


def test_SC_DE_011_calculate_replicas_from_autoscaling_rules(
    deployment_executor: DeploymentExecutor, repo: MagicMock
) -> None:
    d1 = make_deployment(replica_count=2)
    rules = [rule()]
    metrics = AutoScalingMetricsData(endpoint_metrics={d1.id: {"requests_in_flight": 40.0}})
    repo.fetch_auto_scaling_rules_by_endpoint_ids.return_value = {d1.id: rules}
    repo.fetch_metrics_for_autoscaling.return_value = metrics
    repo.calculate_desired_replicas_for_deployment.return_value = 5

    result = deployment_executor.calculate_desired_replicas([d1])

    assert result.successes == [d1]
    repo.fetch_auto_scaling_rules_by_endpoint_ids.assert_called_once_with({d1.id})
    repo.fetch_metrics_for_autoscaling.assert_called_once_with([d1], {d1.id: rules})
    repo.calculate_desired_replicas_for_deployment.assert_called_once_with(d1, rules, metrics)
    repo.update_desired_replicas_bulk.assert_called_once_with({d1.id: 5})


def test_SC_DE_012_no_autoscaling_rules_manual_scaling(
    deployment_executor: DeploymentExecutor, repo: MagicMock
) -> None:
    d1 = make_deployment(replica_count=3)
    repo.fetch_auto_scaling_rules_by_endpoint_ids.return_value = {d1.id: []}
    repo.fetch_metrics_for_autoscaling.return_value = AutoScalingMetricsData(
        routes_by_endpoint={d1.id: [make_route(d1)]}
    )

    result = deployment_executor.calculate_desired_replicas([d1])

    assert result.successes == [d1]
    repo.update_desired_replicas_bulk.assert_called_once_with({d1.id: 3})
    repo.calculate_desired_replicas_for_deployment.assert_not_called()


def test_SC_DE_013_no_change_needed_skipped(
    deployment_executor: DeploymentExecutor, repo: MagicMock
) -> None:
    d1 = make_deployment()
    repo.fetch_auto_scaling_rules_by_endpoint_ids.return_value = {d1.id: [rule()]}
    repo.fetch_metrics_for_autoscaling.return_value = AutoScalingMetricsData()
    repo.calculate_desired_replicas_for_deployment.return_value = None

    result = deployment_executor.calculate_desired_replicas([d1])

    assert result.successes == []
    assert result.skipped == [d1]
    repo.update_desired_replicas_bulk.assert_not_called()


def test_SC_DE_014_replica_calculation_failure_error(
    deployment_executor: DeploymentExecutor, repo: MagicMock
) -> None:
    d1 = make_deployment()
    repo.fetch_auto_scaling_rules_by_endpoint_ids.return_value = {d1.id: [rule()]}
    repo.fetch_metrics_for_autoscaling.return_value = AutoScalingMetricsData()
    repo.calculate_desired_replicas_for_deployment.side_effect = Exception("Metrics unavailable")

    result = deployment_executor.calculate_desired_replicas([d1])

    assert result.successes == []
    assert result.errors == [
        DeploymentExecutionError(d1, "Metrics unavailable", "Failed to calculate desired replicas")
    ]
    repo.update_desired_replicas_bulk.assert_not_called()


# -- destroy_deployment -----------------------------------------------------------


def test_SC_DE_015_deployment_destruction_success(
    deployment_executor: DeploymentExecutor, repo: MagicMock, proxy_client: MagicMock
) -> None:
    d1 = make_deployment(resource_group="sg1")
    route1, route2 = make_route(d1), make_route(d1)
    repo.fetch_active_routes_by_endpoint_ids.return_value = {d1.id: [route1, route2]}
    repo.fetch_scaling_group_proxy_targets.return_value = {"sg1": TARGET}

    result = deployment_executor.destroy_deployment([d1])

    assert (result.successes, result.errors) == ([d1], [])
    repo.fetch_scaling_group_proxy_targets.assert_called_once_with({"sg1"})
    repo.mark_terminating_route_status_bulk.assert_called_once_with({route1.id, route2.id})
    proxy_client.delete_endpoint.assert_called_once_with(d1.id)


def test_SC_DE_016_endpoint_deletion_failure_error_captured(
    deployment_executor: DeploymentExecutor, repo: MagicMock, proxy_client: MagicMock
) -> None:
    d1 = make_deployment()
    route1 = make_route(d1)
    repo.fetch_active_routes_by_endpoint_ids.return_value = {d1.id: [route1]}
    repo.fetch_scaling_group_proxy_targets.return_value = {"sg1": TARGET}
    proxy_client.delete_endpoint.side_effect = Exception("Endpoint not found")
    order = MagicMock()
    order.attach_mock(repo.mark_terminating_route_status_bulk, "mark")
    order.attach_mock(proxy_client.delete_endpoint, "delete")

    result = deployment_executor.destroy_deployment([d1])

    assert result.successes == []
    (error,) = result.errors
    assert (error.deployment_info, error.reason) == (d1, "Failed to unregister endpoint")
    assert error.error_detail == "Endpoint not found"
    # the routes were marked terminating before the unregistration failed
    assert order.mock_calls == [call.mark({route1.id}), call.delete(d1.id)]


def test_SC_DE_017_no_proxy_target_log_and_continue(
    deployment_executor: DeploymentExecutor,
    repo: MagicMock,
    app_proxy: MagicMock,
    proxy_client: MagicMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    d1 = make_deployment(resource_group="sg1")
    route1 = make_route(d1)
    repo.fetch_active_routes_by_endpoint_ids.return_value = {d1.id: [route1]}
    repo.fetch_scaling_group_proxy_targets.return_value = {"sg1": None}

    with caplog.at_level(logging.WARNING):
        result = deployment_executor.destroy_deployment([d1])

    assert result.successes == [d1]
    assert f"deployment {d1.id}: resource group sg1 has no app proxy" in caplog.text
    repo.mark_terminating_route_status_bulk.assert_called_once_with({route1.id})
    proxy_client.delete_endpoint.assert_not_called()
    app_proxy.client_for.assert_not_called()


# -- empty input ------------------------------------------------------------------


@pytest.mark.parametrize(
    "method",
    [
        "check_pending_deployments",
        "check_ready_deployments_that_need_scaling",
        "scale_deployment",
        "calculate_desired_replicas",
        "destroy_deployment",
    ],
)
def test_SC_DE_018_empty_deployment_list_immediate_return(
    deployment_executor: DeploymentExecutor, repo: MagicMock, app_proxy: MagicMock, method: str
) -> None:
    result = getattr(deployment_executor, method)([])

    assert result == EMPTY
    assert repo.mock_calls == []
    assert app_proxy.mock_calls == []


# -- edges the seeds leave out ----------------------------------------------------


def test_registration_body_carries_tags_url_and_health_check(
    deployment_executor: DeploymentExecutor, repo: MagicMock, proxy_client: MagicMock
) -> None:
    d1 = make_deployment(url="https://kept.example.com", domain="research")
    repo.fetch_scaling_group_proxy_targets.return_value = {"sg1": TARGET}
    proxy_client.create_endpoint.return_value = {"endpoint": "https://kept.example.com"}

    deployment_executor.check_pending_deployments([d1])

    _, body = proxy_client.create_endpoint.call_args.args
    assert body["tags"] == {
        "session": {"user_uuid": "user-1", "group_id": "project-1", "domain_name": "research"},
        "endpoint": {
            "id": str(d1.id),
            "runtime_variant": "custom",
            "existing_url": "https://kept.example.com",
        },
    }
    assert body["health_check"] == {
        "path": "/health",
        "interval": 10.0,
        "max_retries": 10,
        "max_wait_time": 15.0,
        "expected_status_code": 200,
        "initial_delay": 30.0,
    }


@pytest.mark.parametrize("answer", [{}, {"endpoint": ""}, {"endpoint": None}])
def test_proxy_answer_without_url_is_an_error(
    deployment_executor: DeploymentExecutor,
    repo: MagicMock,
    proxy_client: MagicMock,
    answer: dict[str, object],
) -> None:
    d1 = make_deployment()
    repo.fetch_scaling_group_proxy_targets.return_value = {"sg1": TARGET}
    proxy_client.create_endpoint.return_value = answer

    result = deployment_executor.check_pending_deployments([d1])

    (error,) = result.errors
    assert error.error_code == "app_proxy_response_invalid"
    assert error.error_detail == "Failed to register endpoint"
    repo.update_endpoint_urls_bulk.assert_not_called()


def test_repeated_deployment_is_registered_once(
    deployment_executor: DeploymentExecutor, repo: MagicMock, proxy_client: MagicMock
) -> None:
    d1 = make_deployment()
    repo.fetch_scaling_group_proxy_targets.return_value = {"sg1": TARGET}
    proxy_client.create_endpoint.return_value = {"endpoint": "https://e.example.com"}

    result = deployment_executor.check_pending_deployments([d1, d1])

    assert result.successes == [d1]
    proxy_client.create_endpoint.assert_called_once()


def test_failing_proxy_target_read_propagates_before_any_registration(
    deployment_executor: DeploymentExecutor, repo: MagicMock, proxy_client: MagicMock
) -> None:
    repo.fetch_scaling_group_proxy_targets.side_effect = InfrastructureUnavailable("db down")

    with pytest.raises(InfrastructureUnavailable):
        deployment_executor.check_pending_deployments([make_deployment()])

    proxy_client.create_endpoint.assert_not_called()


def test_failing_route_marking_propagates_before_any_unregistration(
    deployment_executor: DeploymentExecutor, repo: MagicMock, proxy_client: MagicMock
) -> None:
    d1 = make_deployment()
    repo.fetch_active_routes_by_endpoint_ids.return_value = {d1.id: [make_route(d1)]}
    repo.fetch_scaling_group_proxy_targets.return_value = {"sg1": TARGET}
    repo.mark_terminating_route_status_bulk.side_effect = RuntimeError("deadlock detected")

    with pytest.raises(RuntimeError, match="deadlock"):
        deployment_executor.destroy_deployment([d1])

    proxy_client.delete_endpoint.assert_not_called()


def test_unavailable_store_during_calculation_propagates(
    deployment_executor: DeploymentExecutor, repo: MagicMock
) -> None:
    d1 = make_deployment()
    repo.fetch_auto_scaling_rules_by_endpoint_ids.return_value = {d1.id: [rule()]}
    repo.fetch_metrics_for_autoscaling.return_value = AutoScalingMetricsData()
    repo.calculate_desired_replicas_for_deployment.side_effect = InfrastructureUnavailable("x")

    with pytest.raises(InfrastructureUnavailable):
        deployment_executor.calculate_desired_replicas([d1])

    repo.update_desired_replicas_bulk.assert_not_called()


def test_scale_in_stops_unhealthy_then_degraded_then_provisioning_newest_first(
    deployment_executor: DeploymentExecutor, repo: MagicMock
) -> None:
    d1 = make_deployment(replica_count=1)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def at(minutes: int, status: RouteStatus) -> RouteData:
        return make_route(d1, status=status, created_at=t0 + timedelta(minutes=minutes))

    old_healthy, new_healthy = at(0, RouteStatus.HEALTHY), at(9, RouteStatus.HEALTHY)
    provisioning = at(5, RouteStatus.PROVISIONING)
    old_degraded, new_degraded = at(1, RouteStatus.DEGRADED), at(2, RouteStatus.DEGRADED)
    unhealthy = at(3, RouteStatus.UNHEALTHY)
    routes = [old_healthy, new_healthy, provisioning, old_degraded, new_degraded, unhealthy]
    repo.fetch_active_routes_by_endpoint_ids.return_value = {d1.id: routes}

    deployment_executor.scale_deployment([d1])

    _, updater = repo.scale_routes.call_args.args
    expected = [unhealthy, new_degraded, old_degraded, provisioning, new_healthy]
    assert list(updater.route_ids) == [r.id for r in expected]  # only old_healthy stays


def test_scale_of_several_deployments_is_one_write(
    deployment_executor: DeploymentExecutor, repo: MagicMock
) -> None:
    grow, shrink, steady = (
        make_deployment(replica_count=2),
        make_deployment(replica_count=0),
        make_deployment(replica_count=1),
    )
    doomed = make_route(shrink)
    repo.fetch_active_routes_by_endpoint_ids.return_value = {
        shrink.id: [doomed],
        steady.id: [make_route(steady)],
    }

    result = deployment_executor.scale_deployment([grow, shrink, steady])

    assert (result.successes, result.skipped) == ([grow, shrink], [steady])
    repo.scale_routes.assert_called_once_with(
        [RouteCreator(grow.id), RouteCreator(grow.id)],
        RouteBatchUpdater(route_ids=(doomed.id,)),
    )


def test_scale_uses_the_autoscaler_desired_count(
    deployment_executor: DeploymentExecutor, repo: MagicMock
) -> None:
    d1 = make_deployment(replica_count=1, desired_replica_count=3)
    repo.fetch_active_routes_by_endpoint_ids.return_value = {d1.id: [make_route(d1)]}

    deployment_executor.scale_deployment([d1])

    creators, updater = repo.scale_routes.call_args.args
    assert (len(creators), updater) == (2, None)


def test_negative_target_is_an_error_not_a_crash(
    deployment_executor: DeploymentExecutor, repo: MagicMock
) -> None:
    broken, fine = make_deployment(replica_count=-1), make_deployment(replica_count=1)
    repo.fetch_active_routes_by_endpoint_ids.return_value = {}

    result = deployment_executor.scale_deployment([broken, fine])

    (error,) = result.errors
    assert (error.deployment_info, error.error_code) == (broken, "invalid_replica_count")
    assert error.error_detail == "Failed to scale deployment"
    assert result.successes == [fine]
    repo.scale_routes.assert_called_once_with([RouteCreator(fine.id)], None)


def test_manual_count_replaces_a_desired_count_left_by_removed_rules(
    deployment_executor: DeploymentExecutor, repo: MagicMock
) -> None:
    d1 = make_deployment(replica_count=2, desired_replica_count=5)
    repo.fetch_auto_scaling_rules_by_endpoint_ids.return_value = {}
    repo.fetch_metrics_for_autoscaling.return_value = AutoScalingMetricsData(
        routes_by_endpoint={d1.id: [make_route(d1), make_route(d1)]}
    )

    result = deployment_executor.calculate_desired_replicas([d1])

    assert result.successes == [d1]
    repo.update_desired_replicas_bulk.assert_called_once_with({d1.id: 2})


def test_manual_count_already_met_is_skipped(
    deployment_executor: DeploymentExecutor, repo: MagicMock
) -> None:
    d1 = make_deployment(replica_count=2)
    repo.fetch_auto_scaling_rules_by_endpoint_ids.return_value = {}
    repo.fetch_metrics_for_autoscaling.return_value = AutoScalingMetricsData(
        routes_by_endpoint={d1.id: [make_route(d1), make_route(d1)]}
    )

    result = deployment_executor.calculate_desired_replicas([d1])

    assert result.skipped == [d1]
    repo.update_desired_replicas_bulk.assert_not_called()


def test_destroy_without_routes_still_unregisters(
    deployment_executor: DeploymentExecutor, repo: MagicMock, proxy_client: MagicMock
) -> None:
    d1 = make_deployment()
    repo.fetch_active_routes_by_endpoint_ids.return_value = {}
    repo.fetch_scaling_group_proxy_targets.return_value = {"sg1": TARGET}

    result = deployment_executor.destroy_deployment([d1])

    assert result.successes == [d1]
    repo.mark_terminating_route_status_bulk.assert_not_called()
    proxy_client.delete_endpoint.assert_called_once_with(d1.id)


def test_proxy_target_repr_hides_the_token() -> None:
    target = ScalingGroupProxyTarget(addr="proxy:8080", api_token="s3cr3t-t0ken")
    assert "s3cr3t-t0ken" not in repr(target)
    assert "proxy:8080" in repr(target)


# -- rollout_deployment (revisions and rollouts; not a seed scenario) --


def test_a_deployment_left_deploying_without_a_rollout_is_ready(
    deployment_executor: DeploymentExecutor, repo: MagicMock
) -> None:
    """Its last step committed but the lifecycle move was lost: it must not stay deploying."""
    stranded = make_deployment(lifecycle=DeploymentLifecycle.DEPLOYING)
    repo.fetch_rollout_states.return_value = {}
    result = deployment_executor.rollout_deployment([stranded])
    assert result.successes == [stranded]
    repo.apply_rollout_step.assert_not_called()


def test_a_rollout_step_is_planned_and_applied_once_per_deployment(
    deployment_executor: DeploymentExecutor, repo: MagicMock
) -> None:
    rolling = make_deployment(lifecycle=DeploymentLifecycle.DEPLOYING)
    state = RolloutState(desired=1, old_revision=1, new_revision=2, spec=RolloutSpec(), routes=[])
    repo.fetch_rollout_states.return_value = {rolling.id: state}
    result = deployment_executor.rollout_deployment([rolling, rolling])
    assert result.waiting == [rolling]  # in progress
    [call] = repo.apply_rollout_step.call_args_list
    deployment_id, applied_state, step = call.args
    # Nothing counts requests here (no activity): judged on health alone.
    assert (deployment_id, applied_state, step.create) == (
        rolling.id,
        replace(state, quiet=True),
        1,
    )
