"""A new route that never passes its health check within its health budget fails its revision.

`RouteExecutor.check_startup` against autospecced ports, the budget arithmetic, the
phase row that counts the failure, and how a rollback then says why.
"""

from __future__ import annotations

from unittest.mock import MagicMock

import pytest

import tasks  # noqa: F401  # registers every phase
from tasks.phase import ROUTES
from tasks.runs import PHASES
from tests.factories import make_deployment, make_route
from workers.domain import (
    Condition,
    DeploymentLifecycle,
    HealthCheckConfig,
    HealthCheckStatus,
    HealthStatus,
    OutcomeBucket,
    RevisionFailures,
    RouteExecutionError,
    RouteExecutionResult,
    RouteStatus,
    StartupProgress,
)
from workers.errors import NeverHealthy, probe_saw
from workers.executors import RouteExecutor
from workers.policies.rollout_notes import describe_failures, never_healthy_note

SEVEN_S = HealthCheckConfig(path="/nowhere", interval_s=1, max_retries=2, initial_delay_s=5)


def test_the_budget_is_the_initial_delay_then_every_retry() -> None:
    assert SEVEN_S.budget_s == 7
    assert HealthCheckConfig().budget_s == 60 + 10 * 10  # Backend.AI's defaults: 160 s


@pytest.mark.parametrize(("started_for_s", "overdue"), [(0, False), (6.9, False), (7, True)])
def test_a_route_is_overdue_once_it_has_been_starting_for_its_budget(
    started_for_s: float, overdue: bool
) -> None:
    assert StartupProgress(started_for_s, SEVEN_S.budget_s, "/nowhere").overdue is overdue


def _starting(repo: MagicMock, started_for_s: float, *, deploying: bool = False) -> MagicMock:
    deployment = make_deployment(
        lifecycle=DeploymentLifecycle.DEPLOYING if deploying else DeploymentLifecycle.READY,
        deploying_revision=2 if deploying else None,
    )
    route = make_route(deployment, status=RouteStatus.DEGRADED, revision=2 if deploying else 1)
    repo.fetch_startup_progress.return_value = {
        route.id: StartupProgress(started_for_s, SEVEN_S.budget_s, "/nowhere")
    }
    repo.get_endpoints_by_ids.return_value = [deployment]
    repo.fetch_active_routes_by_endpoint_ids.return_value = {deployment.id: [route]}
    return MagicMock(route=route, deployment=deployment)


def test_a_route_past_its_budget_fails_saying_what_the_probe_saw(
    route_executor: RouteExecutor, repo: MagicMock, health_store: MagicMock
) -> None:
    world = _starting(repo, started_for_s=7.5, deploying=True)
    health_store.check_route_health_status.return_value = {
        str(world.route.id): HealthStatus(
            HealthCheckStatus.UNHEALTHY, detail="/nowhere answered 404"
        )
    }
    result = route_executor.check_startup([world.route])
    [error] = result.errors
    assert (error.route_info, error.error_code) == (world.route, NeverHealthy.error_code)
    assert error.error_detail.startswith("never became healthy within 7 s")
    assert probe_saw(error.error_detail) == "/nowhere answered 404"
    repo.note_conditions.assert_not_called()  # its rollout says why when it rolls back


def test_a_route_within_its_budget_is_left_alone(
    route_executor: RouteExecutor, repo: MagicMock, health_store: MagicMock
) -> None:
    world = _starting(repo, started_for_s=6.0)
    assert route_executor.check_startup([world.route]) == RouteExecutionResult()
    health_store.check_route_health_status.assert_not_called()


def test_a_route_that_turned_healthy_just_now_is_left_to_the_health_phases(
    route_executor: RouteExecutor, repo: MagicMock, health_store: MagicMock
) -> None:
    world = _starting(repo, started_for_s=30.0)
    health_store.check_route_health_status.return_value = {
        str(world.route.id): HealthStatus(HealthCheckStatus.HEALTHY)
    }
    assert route_executor.check_startup([world.route]) == RouteExecutionResult()


def test_a_deployment_no_rollout_can_save_says_why_in_its_history(
    route_executor: RouteExecutor, repo: MagicMock, health_store: MagicMock
) -> None:
    world = _starting(repo, started_for_s=9.0)
    health_store.check_route_health_status.return_value = {
        str(world.route.id): HealthStatus(
            HealthCheckStatus.UNHEALTHY, detail="/nowhere answered 404"
        )
    }
    assert len(route_executor.check_startup([world.route]).errors) == 1
    note = "no route of revision 1 became healthy within 7 s: /nowhere answered 404"
    repo.note_conditions.assert_called_once_with(
        {world.deployment.id: Condition("never_healthy", note)}
    )


def test_with_nothing_written_by_the_health_checker_the_route_is_left_alone(
    route_executor: RouteExecutor, repo: MagicMock, health_store: MagicMock
) -> None:
    """No record: the prober never probed it (dead, frozen, cut off). No data is not bad
    health: draining it would only start another replica no prober looks at either."""
    world = _starting(repo, started_for_s=9.0, deploying=True)
    health_store.check_route_health_status.return_value = {}
    assert route_executor.check_startup([world.route]).errors == []
    never_probed = HealthStatus(HealthCheckStatus.STALE)  # a record nobody probed yet
    health_store.check_route_health_status.return_value = {str(world.route.id): never_probed}
    assert route_executor.check_startup([world.route]).errors == []


def test_a_probe_that_saw_something_is_evidence_before_the_prober_decides(
    route_executor: RouteExecutor, repo: MagicMock, health_store: MagicMock
) -> None:
    world = _starting(repo, started_for_s=9.0, deploying=True)
    seen = HealthStatus(HealthCheckStatus.STALE, detail="/nowhere: connection refused")
    health_store.check_route_health_status.return_value = {str(world.route.id): seen}
    [error] = route_executor.check_startup([world.route]).errors
    assert (
        error.error_detail
        == "never became healthy within 7 s; the probe saw: /nowhere: connection refused"
    )


def test_check_startup_with_no_routes_reads_nothing(
    route_executor: RouteExecutor, repo: MagicMock
) -> None:
    assert route_executor.check_startup([]) == RouteExecutionResult()
    repo.fetch_startup_progress.assert_not_called()


# -- what counts against a revision: declared by the phase rows --

JUDGING = {
    "routes.provision",
    "routes.check_running",
    "routes.check_startup",
    "routes.health_check",
    "routes.health_changed",  # the feed's fast path judges like the full pass
}


ROUTE_PHASES = sorted(name for name, phase in PHASES.items() if phase.kind is ROUTES)


@pytest.mark.parametrize("phase", ROUTE_PHASES)
def test_errors_count_against_the_revision_only_where_the_phase_row_says(phase: str) -> None:
    route = make_route(status=next(iter(PHASES[phase].targets)))
    error = RouteExecutionError(route, "Failed", "detail", "code")
    row = PHASES[phase]
    changes = row.transitions(row.outcomes(RouteExecutionResult(errors=[error])), {route.id: route})
    assert [c.revision_failure for c in changes] == ([True] if phase in JUDGING else
                                                     [False] * len(changes))  # fmt: skip
    assert set(ROUTE_PHASES) >= JUDGING


def test_successes_never_count_against_a_revision() -> None:
    route = make_route(status=RouteStatus.DEGRADED)
    row = PHASES["routes.health_check"]
    [change] = row.transitions(row.outcomes(RouteExecutionResult(successes=[route])),
                               {route.id: route})  # fmt: skip
    assert (change.result, change.revision_failure) == (OutcomeBucket.SUCCESS, False)


# -- why a revision failed, in words --


def test_a_never_healthy_revision_is_described_with_its_budget_and_what_the_probe_saw() -> None:
    failures = RevisionFailures(
        count=3, never_healthy=3, budget_s=7, health_path="/nowhere",
        probe_saw="/nowhere answered 404",
    )  # fmt: skip
    assert describe_failures(failures) == (
        "3 routes never became healthy within 7 s (health path /nowhere answered 404)"
    )


def test_session_exits_are_described_with_their_codes_and_last_words() -> None:
    failures = RevisionFailures(count=3, exit_codes={1: 2, 3: 1}, last_output="no weights")
    assert describe_failures(failures) == (
        "2 sessions exited with code 1 and 1 session exited with code 3: no weights"
    )


def test_the_note_of_a_deployment_that_cannot_roll_back() -> None:
    assert never_healthy_note(1, 7.0, None) == "no route of revision 1 became healthy within 7 s"
