"""Rule evaluation: first firing rule wins, signed steps, clamping, cooldown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.factories import make_deployment, make_route, new_session_id
from workers.domain import AutoScalingMetricsData, AutoScalingRule, Comparator, MetricSource
from workers.policies.autoscaling import decide_replicas

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def _rule(**overrides: Any) -> AutoScalingRule:
    fields: dict[str, Any] = {
        "metric_source": MetricSource.INFERENCE_FRAMEWORK,
        "metric_name": "requests_in_flight",
        "threshold": 10.0,
        "comparator": Comparator.GREATER_THAN,
        "step_size": 1,
    }
    return AutoScalingRule(**(fields | overrides))


def _decide(rules: list[AutoScalingRule], value: float | None, *, replicas: int = 2) -> int | None:
    deployment = make_deployment(replica_count=replicas)
    metrics = AutoScalingMetricsData(
        endpoint_metrics={} if value is None else {deployment.id: {"requests_in_flight": value}}
    )
    decision = decide_replicas(deployment, rules, metrics, NOW)
    return None if decision is None else decision.replicas


@pytest.mark.parametrize(
    ("comparator", "value", "fires"),
    [
        (Comparator.GREATER_THAN, 10.0, False),
        (Comparator.GREATER_THAN, 10.5, True),
        (Comparator.GREATER_THAN_OR_EQUAL, 10.0, True),
        (Comparator.LESS_THAN, 10.0, False),
        (Comparator.LESS_THAN, 9.5, True),
        (Comparator.LESS_THAN_OR_EQUAL, 10.0, True),
    ],
)
def test_comparators(comparator: Comparator, value: float, fires: bool) -> None:
    assert _decide([_rule(comparator=comparator)], value) == (3 if fires else None)


def test_negative_step_scales_in() -> None:
    assert _decide([_rule(comparator=Comparator.LESS_THAN, step_size=-1)], 1.0) == 1


def test_a_step_across_a_bound_lands_on_the_bound() -> None:
    assert _decide([_rule(step_size=5, max_replicas=4)], 50.0) == 4
    assert _decide([_rule(comparator=Comparator.LESS_THAN, step_size=-5, min_replicas=1)], 0.0) == 1


def test_never_below_zero_without_a_minimum() -> None:
    assert _decide([_rule(comparator=Comparator.LESS_THAN, step_size=-5)], 0.0) == 0


def test_at_the_bound_nothing_changes() -> None:
    assert _decide([_rule(max_replicas=2)], 50.0) is None


def test_first_firing_rule_wins_in_the_given_order() -> None:
    up = _rule(step_size=2)
    down = _rule(comparator=Comparator.GREATER_THAN, threshold=0.0, step_size=-1)
    assert _decide([up, down], 50.0) == 4
    assert _decide([down, up], 50.0) == 1


def test_a_rule_cooling_down_is_passed_over() -> None:
    cooling = _rule(step_size=2, cooldown_s=300, last_triggered_at=NOW - timedelta(seconds=299))
    cooled = _rule(step_size=2, cooldown_s=300, last_triggered_at=NOW - timedelta(seconds=300))
    fallback = _rule(step_size=1)
    assert _decide([cooling, fallback], 50.0) == 3
    assert _decide([cooled, fallback], 50.0) == 4


def test_no_metric_value_means_no_decision() -> None:
    assert _decide([_rule()], None) is None


def test_session_metrics_are_averaged_over_the_deployment_routes() -> None:
    deployment = make_deployment(replica_count=2)
    busy, idle, starting = new_session_id(), new_session_id(), None
    routes = [
        make_route(deployment, session_id=busy),
        make_route(deployment, session_id=idle),
        make_route(deployment, session_id=starting),
    ]
    metrics = AutoScalingMetricsData(
        routes_by_endpoint={deployment.id: routes},
        session_metrics={busy: {"cpu_util": 90.0}, idle: {"cpu_util": 20.0}},
    )
    rule = _rule(metric_source=MetricSource.SESSION, metric_name="cpu_util", threshold=50.0)
    decision = decide_replicas(deployment, [rule], metrics, NOW)
    assert decision is not None
    assert (decision.metric_value, decision.replicas) == (55.0, 3)


def test_the_step_applies_to_the_autoscaled_count_when_there_is_one() -> None:
    deployment = make_deployment(replica_count=2, desired_replica_count=5)
    metrics = AutoScalingMetricsData(endpoint_metrics={deployment.id: {"requests_in_flight": 50}})
    decision = decide_replicas(deployment, [_rule()], metrics, NOW)
    assert decision is not None
    assert decision.replicas == 6
