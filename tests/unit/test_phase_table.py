"""The phase table (README, "Phases and statuses"), as the phase modules declare it.

Each phase's targets, and the transitions its chord callback derives from a
rebuilt seed result, checked row by row without any I/O.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

import tasks  # noqa: F401  # registers every phase
from beat_schedule import PHASE_INTERVALS_S
from tasks.phase_table import markdown, phase_rows
from tasks.runs import PHASES, _groups
from tests.factories import make_deployment, make_route
from workers.domain import (
    DeploymentExecutionError,
    DeploymentExecutionResult,
    DeploymentLifecycle,
    HostStatus,
    OutcomeBucket,
    RouteData,
    RouteExecutionError,
    RouteExecutionResult,
    RouteStatus,
    StatusTransition,
)
from workers.phase_names import PhaseName
from workers.phase_runs import task_count

R = RouteStatus
L = DeploymentLifecycle
H = HostStatus

DESIGN_TARGETS = {
    "deployments.check_pending": {L.PENDING},
    "deployments.check_replicas": {L.READY},
    "deployments.scale": {L.SCALING},
    "deployments.reconcile": {L.READY},
    "deployments.destroy": {L.DESTROYING},
    "deployments.rollout": {L.DEPLOYING},
    # This stage: idle deployments give their replicas back; a held request wakes them.
    "deployments.scale_to_zero": {L.READY},
    "deployments.autoscale": {L.READY, L.DEPLOYING},
    "deployments.wake": {L.READY},
    "routes.provision": {R.PROVISIONING},
    "routes.check_running": {R.DEGRADED, R.HEALTHY, R.UNHEALTHY, R.FAILED_TO_START},
    # A route never healthy within its health budget: drained, counted against its revision.
    "routes.check_startup": {R.DEGRADED, R.UNHEALTHY},
    "routes.health_check": {R.HEALTHY, R.UNHEALTHY, R.DEGRADED},
    # This stage: health_check on only the routes whose readiness was announced as changed.
    "routes.health_changed": {R.HEALTHY, R.UNHEALTHY, R.DEGRADED},
    "routes.evict": {R.UNHEALTHY, R.DEGRADED, R.HEALTHY},
    "routes.drain": {R.DRAINING},
    "routes.terminate": {R.TERMINATING},
    "routes.sync_service_discovery": {R.HEALTHY},
    "hosts.check": {H.READY, H.CORDONED, H.DRAINING, H.UNREACHABLE},
    "hosts.drain": {H.DRAINING},
    "hosts.rebalance": {H.READY},
}


def test_every_scheduled_phase_is_declared_with_the_design_targets() -> None:
    assert set(PHASES) == set(PHASE_INTERVALS_S)
    assert {name: set(phase.targets) for name, phase in PHASES.items()} == DESIGN_TARGETS


def _transitions(phase: str, result: Any, *entities: Any) -> list[StatusTransition[Any]]:
    """What the callback derives for `result`: outcome records made once, then the phase
    table's transitions for the entities as they are."""
    row = PHASES[phase]
    return row.transitions(row.outcomes(result), {entity.id: entity for entity in entities})


def _route_moves(
    phase: str, result: RouteExecutionResult, route: RouteData
) -> dict[str, tuple[str | None, str]]:
    changes = _transitions(phase, result, route)
    for change in changes:
        assert change.expected == PHASES[phase].targets
        assert change.phase == phase
    return {
        str(c.entity_id): (None if c.to_status is None else c.to_status.value, c.result.value)
        for c in changes
    }


@pytest.mark.parametrize(
    ("phase", "bucket", "status", "expected"),
    [
        ("routes.provision", "success", R.PROVISIONING, ("degraded", "success")),
        ("routes.provision", "error", R.PROVISIONING, ("failed_to_start", "error")),
        ("routes.check_running", "success", R.HEALTHY, None),
        ("routes.check_running", "error", R.HEALTHY, ("draining", "error")),
        ("routes.health_check", "success", R.DEGRADED, ("healthy", "success")),
        ("routes.health_check", "success", R.HEALTHY, None),  # no change, no history row
        ("routes.health_check", "error", R.HEALTHY, ("unhealthy", "error")),
        ("routes.health_check", "error", R.UNHEALTHY, ("unhealthy", "error")),  # counted again
        ("routes.health_check", "stale", R.HEALTHY, None),  # no data is not bad health
        ("routes.health_check", "stale", R.UNHEALTHY, None),
        ("routes.evict", "success", R.UNHEALTHY, ("draining", "success")),
        ("routes.drain", "success", R.DRAINING, ("terminating", "success")),
        ("routes.drain", "stale", R.DRAINING, None),  # still published: keeps draining
        ("routes.terminate", "success", R.TERMINATING, ("terminated", "success")),
        ("routes.sync_service_discovery", "success", R.HEALTHY, None),
    ],
)
def test_route_phase_transitions(
    phase: str, bucket: str, status: RouteStatus, expected: tuple[str, str] | None
) -> None:
    route = make_route(status=status)
    result = RouteExecutionResult()
    if bucket == "success":
        result.successes.append(route)
    elif bucket == "stale":
        result.stale.append(route)
    else:
        result.errors.append(RouteExecutionError(route, "Boom", "detail", "code"))
    moves = _route_moves(phase, result, route)
    assert moves.get(str(route.id)) == expected


@pytest.mark.parametrize(
    ("phase", "bucket", "lifecycle", "expected"),
    [
        ("deployments.check_pending", "success", L.PENDING, ("scaling", "success")),
        ("deployments.check_pending", "error", L.PENDING, (None, "error")),
        ("deployments.check_pending", "waiting", L.PENDING, (None, "waiting")),
        ("deployments.check_replicas", "success", L.READY, ("scaling", "success")),
        ("deployments.check_replicas", "skipped", L.READY, None),
        ("deployments.scale", "success", L.SCALING, ("ready", "success")),
        ("deployments.scale", "error", L.SCALING, (None, "error")),
        ("deployments.scale", "skipped", L.SCALING, ("ready", "skipped")),
        ("deployments.reconcile", "success", L.READY, None),
        ("deployments.reconcile", "error", L.READY, ("scaling", "error")),
        ("deployments.destroy", "success", L.DESTROYING, ("destroyed", "success")),
        ("deployments.destroy", "error", L.DESTROYING, (None, "error")),
        ("deployments.rollout", "success", L.DEPLOYING, ("ready", "success")),  # finished
        ("deployments.rollout", "error", L.DEPLOYING, ("ready", "error")),  # rolled back
        ("deployments.rollout", "waiting", L.DEPLOYING, None),  # in progress
        ("deployments.scale_to_zero", "success", L.READY, ("scaling", "success")),  # drains
        ("deployments.scale_to_zero", "skipped", L.READY, None),  # not idle long enough
        ("deployments.wake", "success", L.READY, ("scaling", "success")),  # provisions
        ("deployments.wake", "skipped", L.READY, None),  # another wake won
    ],
)
def test_deployment_phase_transitions(
    phase: str, bucket: str, lifecycle: DeploymentLifecycle, expected: tuple[str, str] | None
) -> None:
    deployment = make_deployment(lifecycle=lifecycle)
    result = DeploymentExecutionResult()
    if bucket == "success":
        result.successes.append(deployment)
    elif bucket == "skipped":
        result.skipped.append(deployment)
    elif bucket == "waiting":
        result.waiting.append(deployment)
        result.reasons[deployment.id] = DeploymentExecutionError(deployment, "Waits", "for x")
    else:
        result.errors.append(DeploymentExecutionError(deployment, "Boom", "detail", "code"))
    changes = _transitions(phase, result, deployment)
    found = {
        c.entity_id: (None if c.to_status is None else c.to_status.value, c.result.value)
        for c in changes
    }
    assert found.get(deployment.id) == expected


@pytest.mark.parametrize(("retry_count", "to_status"), [(3, None), (4, L.DESTROYED)])
def test_destroy_gives_up_on_the_fifth_failed_try_and_keeps_the_error(
    retry_count: int, to_status: DeploymentLifecycle | None
) -> None:
    deployment = make_deployment(lifecycle=L.DESTROYING, retry_count=retry_count)
    error = DeploymentExecutionError(deployment, "Failed to unregister", "HTTP 500", "app_proxy")
    [change] = _transitions("deployments.destroy", DeploymentExecutionResult(errors=[error]),
                            deployment)  # fmt: skip
    assert change.to_status == to_status
    assert change.result is OutcomeBucket.ERROR
    assert (change.error_code, change.message) == ("app_proxy", "Failed to unregister: HTTP 500")


def test_cheap_items_are_split_evenly_over_as_many_tasks_as_the_work_needs() -> None:
    ids = [uuid4() for _ in range(10_000)]
    groups = _groups(PHASES["routes.health_check"], ids, max_tasks=256, processes=4)
    assert [len(g) for g in groups] == [2_500] * 4
    assert sorted(i for g in groups for i in g) == sorted(ids)
    assert len(_groups(PHASES["routes.health_check"], ids[:300], max_tasks=256, processes=4)) == 1
    assert _groups(PHASES["routes.health_check"], [], max_tasks=256, processes=4) == []


@pytest.mark.parametrize(
    ("items", "processes", "max_tasks", "expected"),
    [
        (100, 2, 256, 1),  # one cheap group: no chord at all
        (1_000, 2, 256, 1),
        (10_000, 2, 256, 2),  # every process busy, each task large against its own cost
        (10_000, 8, 256, 8),
        (10_000, 32, 256, 10),  # never under MIN_ITEMS_PER_TASK each
        (100_000, 2, 256, 5),  # never over MAX_ITEMS_PER_TASK each
        (100_000, 2, 3, 3),  # never over MODELFLEET_FANOUT_MAX_TASKS
    ],
)
def test_cheap_items_get_tasks_for_every_process_within_bounds(
    items: int, processes: int, max_tasks: int, expected: int
) -> None:
    assert task_count(items, whole_set=False, remote=False, processes=processes,
                      max_tasks=max_tasks) == expected  # fmt: skip


def test_remote_items_get_a_task_each_up_to_the_limit() -> None:
    assert PHASES["deployments.check_pending"].remote_items
    assert PHASES["deployments.destroy"].remote_items
    assert task_count(50, whole_set=False, remote=True, processes=2, max_tasks=256) == 50
    assert task_count(500, whole_set=False, remote=True, processes=2, max_tasks=256) == 256


def test_a_whole_set_phase_gets_one_task_even_when_nothing_is_healthy() -> None:
    phase = PHASES["routes.sync_service_discovery"]
    assert len(_groups(phase, [uuid4() for _ in range(30_000)], max_tasks=4, processes=2)) == 1
    assert _groups(phase, [], max_tasks=4, processes=2) == [[]]


@pytest.mark.parametrize(
    ("phase", "bucket"),
    [
        ("deployments.scale", OutcomeBucket.SUCCESS),
        ("deployments.destroy", OutcomeBucket.SUCCESS),
        ("deployments.destroy", OutcomeBucket.ERROR),
        ("routes.evict", OutcomeBucket.SUCCESS),
        ("routes.check_running", OutcomeBucket.ERROR),
    ],
)
def test_every_phase_that_takes_routes_out_of_service_republishes_at_once(
    phase: str, bucket: OutcomeBucket
) -> None:
    """Traffic first: the route leaves service discovery in the run's immediate follow-up."""
    follow_ups = PHASES[phase].follow_ups[bucket]
    assert "routes.sync_service_discovery" in follow_ups
    assert "routes.drain" in follow_ups
    assert "routes.terminate" not in follow_ups  # a session is stopped only after draining


@pytest.mark.parametrize(
    "bucket", [OutcomeBucket.SUCCESS, OutcomeBucket.ERROR, OutcomeBucket.WAITING]
)
def test_every_rollout_step_announces_its_route_changes_at_once(bucket: OutcomeBucket) -> None:
    """A step starts and drains routes while the deployment stays deploying."""
    follow_ups = PHASES["deployments.rollout"].follow_ups_after(set(), {bucket})
    assert {"routes.provision", "routes.sync_service_discovery", "routes.drain"} <= follow_ups


def test_every_follow_up_names_a_registered_phase() -> None:
    """A follow-up is started by name: one naming no phase would be sent and never run."""
    named = {
        (phase.name, follow_up)
        for phase in PHASES.values()
        for follow_ups in (*phase.follow_ups.values(), *phase.follow_ups_on_outcome.values())
        for follow_up in follow_ups
    }
    assert named
    assert {follow_up for _, follow_up in named} <= set(PHASES)
    assert set(PHASES) == set(PhaseName)


def test_the_readmes_phase_table_is_the_one_the_phase_rows_print() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    printed = markdown(phase_rows(PHASES.values()))
    assert printed.splitlines()[0] in readme, "the README has no phase table"
    start = readme.index(printed.splitlines()[0])
    in_readme = readme[start : readme.index("\n\n", start)] + "\n"
    assert in_readme == printed, "run `modelfleet phase list --markdown` into the README"
    assert len(printed.splitlines()) == len(PhaseName) + 2  # every phase, one row each
