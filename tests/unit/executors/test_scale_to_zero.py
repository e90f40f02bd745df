"""DeploymentExecutor.scale_idle_to_zero and .wake against their ports (autospecced)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from unittest.mock import MagicMock, create_autospec

import pytest

from tests.factories import make_deployment
from workers.domain import DeploymentInfo, DeploymentLifecycle
from workers.executors import DeploymentExecutor
from workers.phase_runs import deployment_outcomes
from workers.ports import RequestActivity

NOW_S = datetime(2026, 12, 4, 12, 0, tzinfo=UTC).timestamp()
LONG_AGO = datetime.fromtimestamp(NOW_S - 3600, UTC)


@pytest.fixture
def activity() -> MagicMock:
    found: MagicMock = create_autospec(RequestActivity, instance=True)
    found.now_s.return_value = NOW_S
    found.last_requests.return_value = {}
    return found


@pytest.fixture
def executor(repo: MagicMock, app_proxy: MagicMock, activity: MagicMock) -> DeploymentExecutor:
    return DeploymentExecutor(deployment_repo=repo, app_proxy=app_proxy, activity=activity)


def _ready(**overrides: Any) -> DeploymentInfo:
    fields: dict[str, Any] = {
        "lifecycle": DeploymentLifecycle.READY,
        "replica_count": 2,
        "scale_to_zero_after_s": 300.0,
        "idle_counts_from": LONG_AGO,
    }
    return make_deployment(**(fields | overrides))  # fmt: skip


def test_an_idle_deployment_goes_to_zero_remembering_its_count_and_says_how_long_it_idled(
    executor: DeploymentExecutor, repo: MagicMock, activity: MagicMock
) -> None:
    idle, busy = _ready(), _ready(desired_replica_count=3)
    activity.last_requests.return_value = {idle.id: NOW_S - 400, busy.id: NOW_S - 5}
    repo.scale_to_zero.return_value = {idle.id}
    result = executor.scale_idle_to_zero([idle, busy])
    repo.scale_to_zero.assert_called_once_with({idle.id: 2})
    assert (result.successes, result.skipped) == ([idle], [busy])
    [zeroed, _] = deployment_outcomes(result)
    assert zeroed.message == (
        "scaled to zero: after 400 s idle (2 replicas before); wakes on request"
    )


def test_nothing_due_writes_nothing_and_one_already_gone_is_skipped(
    executor: DeploymentExecutor, repo: MagicMock, activity: MagicMock
) -> None:
    fresh = _ready(idle_counts_from=datetime.fromtimestamp(NOW_S - 10, UTC))
    assert executor.scale_idle_to_zero([fresh]).skipped == [fresh]
    repo.scale_to_zero.assert_not_called()
    raced = _ready()
    repo.scale_to_zero.return_value = set()  # a rollout started meanwhile: not ready any more
    assert executor.scale_idle_to_zero([raced]).skipped == [raced]


def test_a_wake_restores_the_remembered_count_within_the_rules_and_one_wake_wins(
    executor: DeploymentExecutor, repo: MagicMock
) -> None:
    at_zero = _ready(replica_count=0, zeroed_from=2,
                     idle_counts_from=datetime.fromtimestamp(NOW_S - 41, UTC))  # fmt: skip
    already = _ready(replica_count=2)  # woken by an earlier run
    repo.fetch_auto_scaling_rules_by_endpoint_ids.return_value = {}
    repo.restore_from_zero.return_value = {at_zero.id}
    result = executor.wake([at_zero, already])
    repo.restore_from_zero.assert_called_once_with({at_zero.id: 2})
    assert (result.successes, result.skipped) == ([at_zero], [already])
    [woken, _] = deployment_outcomes(result)
    assert woken.message == "woken by a request: 2 replicas after 41 s at zero"


def test_the_autoscaler_leaves_a_deployment_at_zero_alone(
    executor: DeploymentExecutor, repo: MagicMock
) -> None:
    at_zero = _ready(replica_count=0, zeroed_from=2)
    repo.fetch_auto_scaling_rules_by_endpoint_ids.return_value = {}
    result = executor.calculate_desired_replicas([at_zero])
    assert result.skipped == [at_zero]
    repo.update_desired_replicas_bulk.assert_not_called()
