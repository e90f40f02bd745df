"""The contract docs/design.md promises other code: names, enum values, defaults."""

from __future__ import annotations

from uuid import uuid4

import pytest

from workers.domain import (
    ACTIVE_ROUTE_STATUSES,
    CleanupConfig,
    DeploymentExecutionError,
    DeploymentExecutionResult,
    DeploymentInfo,
    DeploymentLifecycle,
    HealthCheckStatus,
    HealthStatus,
    ModelRevision,
    RouteData,
    RouteExecutionError,
    RouteExecutionResult,
    RouteStatus,
    ScalingGroupProxyTarget,
    SessionStatus,
)


def test_enum_values_are_the_contract_spelling() -> None:
    assert [s.value for s in RouteStatus] == [
        "provisioning",
        "healthy",
        "unhealthy",
        "degraded",
        "draining",
        "terminating",
        "terminated",
        "failed_to_start",
    ]
    assert [s.value for s in DeploymentLifecycle] == [
        "pending",
        "scaling",
        "ready",
        "deploying",
        "destroying",
        "destroyed",
    ]
    assert [s.value for s in HealthCheckStatus] == ["healthy", "unhealthy", "stale"]
    assert all(s.value == s.value.upper() for s in SessionStatus)


def test_terminal_sessions_are_terminated_error_cancelled_and_lost() -> None:
    """LOST: its host was lost and the controller gave it up (a replacement runs)."""
    assert {s for s in SessionStatus if s.is_terminal} == {
        SessionStatus.TERMINATED,
        SessionStatus.ERROR,
        SessionStatus.CANCELLED,
        SessionStatus.LOST,
    }


def test_active_routes_are_those_that_count_as_replicas() -> None:
    assert {
        RouteStatus.PROVISIONING,
        RouteStatus.HEALTHY,
        RouteStatus.UNHEALTHY,
        RouteStatus.DEGRADED,
    } == ACTIVE_ROUTE_STATUSES


def test_minimum_constructors_and_defaults() -> None:
    route = RouteData(uuid4(), uuid4())
    assert (route.session_id, route.status) == (None, RouteStatus.PROVISIONING)

    deployment = DeploymentInfo(uuid4(), "svc", "sg1", 2, ModelRevision("img:1"))
    assert deployment.desired_replica_count is None
    assert deployment.lifecycle is DeploymentLifecycle.PENDING
    assert deployment.url is None

    assert HealthStatus(HealthCheckStatus.STALE).status is HealthCheckStatus.STALE
    assert ScalingGroupProxyTarget("proxy:80", "tok").addr == "proxy:80"
    assert list(CleanupConfig([RouteStatus.UNHEALTHY]).cleanup_target_statuses) == ["unhealthy"]
    assert RouteExecutionError(route, "r", "d").error_code is None
    assert DeploymentExecutionError(deployment, "r", "d").error_code is None
    assert RouteExecutionResult() == RouteExecutionResult(successes=[], errors=[], stale=[])
    assert DeploymentExecutionResult() == DeploymentExecutionResult(
        successes=[], errors=[], skipped=[]
    )


@pytest.mark.parametrize(("replicas", "desired", "target"), [(2, None, 2), (2, 5, 5), (2, 0, 0)])
def test_target_replica_count_prefers_the_desired_count(
    replicas: int, desired: int | None, target: int
) -> None:
    deployment = DeploymentInfo(
        uuid4(), "svc", "sg1", replicas, None, desired_replica_count=desired
    )
    assert deployment.target_replica_count == target
