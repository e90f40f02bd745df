"""Scale to zero's arithmetic: idle time, who is due, what a wake restores, what REASON says."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.factories import make_deployment
from workers.domain import (
    AutoScalingRule,
    Comparator,
    DeploymentInfo,
    DeploymentLifecycle,
    MetricSource,
)
from workers.policies.idleness import at_zero_reason, due_for_zero, idle_for_s, wake_count

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC).timestamp()


def _deployment(**overrides: Any) -> DeploymentInfo:
    fields: dict[str, Any] = {
        "lifecycle": DeploymentLifecycle.READY,
        "replica_count": 2,
        "scale_to_zero_after_s": 300.0,
        "idle_counts_from": datetime.fromtimestamp(T0, UTC),
    }
    return make_deployment(**(fields | overrides))  # fmt: skip


def test_idle_time_counts_from_the_later_of_the_last_request_and_its_start() -> None:
    deployment = _deployment()
    assert idle_for_s(deployment, None, T0 + 50) == 50  # never asked: since it counts
    assert idle_for_s(deployment, T0 + 40, T0 + 50) == 10
    assert idle_for_s(deployment, T0 - 999, T0 + 50) == 50  # a request before the setting
    assert idle_for_s(deployment, T0 + 60, T0 + 50) == 0  # a proxy's clock ahead of Redis


def test_only_a_ready_deployment_with_replicas_idle_past_its_setting_is_due() -> None:
    assert due_for_zero(_deployment(), 300)
    assert not due_for_zero(_deployment(), 299.9)
    assert not due_for_zero(_deployment(scale_to_zero_after_s=None), 10_000)
    assert not due_for_zero(_deployment(lifecycle=DeploymentLifecycle.DEPLOYING), 10_000)
    assert not due_for_zero(_deployment(zeroed_from=2, replica_count=0), 10_000)
    assert not due_for_zero(_deployment(replica_count=0), 10_000)  # an operator's zero


def _rule(max_replicas: int | None, min_replicas: int | None = 3) -> AutoScalingRule:
    return AutoScalingRule(metric_source=MetricSource.INFERENCE_FRAMEWORK, metric_name="m",
                           threshold=1.0, comparator=Comparator.GREATER_THAN, step_size=1,
                           cooldown_s=60, min_replicas=min_replicas,
                           max_replicas=max_replicas)  # fmt: skip


def test_a_wake_restores_the_count_within_the_rules_maximum_and_never_zero() -> None:
    assert wake_count(4, []) == 4
    assert wake_count(4, [_rule(None), _rule(3)]) == 3
    assert wake_count(4, [_rule(0)]) == 1


def test_reason_tells_an_idle_zero_from_an_operators() -> None:
    assert at_zero_reason(2, None, 300) == ""
    assert at_zero_reason(0, 2, 300) == "scaled to zero after 300 s idle; wakes on request"
    assert at_zero_reason(0, None, 300) == "scaled to 0 by an operator"
