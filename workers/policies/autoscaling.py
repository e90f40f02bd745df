"""Autoscaling rule evaluation: which replica count a deployment's rules ask for now.

Pure arithmetic on values already loaded (rules, metrics, the clock's reading),
shared by the repository that saves the decision and by anything that wants to
explain it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import fmean

from workers.domain import (
    AutoScalingMetricsData,
    AutoScalingRule,
    Comparator,
    DeploymentInfo,
    MetricSource,
)

_COMPARE: dict[Comparator, Callable[[float, float], bool]] = {
    Comparator.LESS_THAN: operator.lt,
    Comparator.LESS_THAN_OR_EQUAL: operator.le,
    Comparator.GREATER_THAN: operator.gt,
    Comparator.GREATER_THAN_OR_EQUAL: operator.ge,
}


_SYMBOL = {
    Comparator.LESS_THAN: "<",
    Comparator.LESS_THAN_OR_EQUAL: "<=",
    Comparator.GREATER_THAN: ">",
    Comparator.GREATER_THAN_OR_EQUAL: ">=",
}


@dataclass(frozen=True)
class ScalingDecision:
    rule: AutoScalingRule
    metric_value: float
    replicas: int


def decide_replicas(
    deployment: DeploymentInfo,
    rules: Sequence[AutoScalingRule],
    metrics: AutoScalingMetricsData,
    now: datetime,
) -> ScalingDecision | None:
    """The first rule (in the given order) whose metric crosses its threshold decides.

    Rules still cooling down since they last fired, and rules whose metric has
    no value, are passed over. The step is applied to the current target and
    clamped to the rule's bounds, so a step that would cross a bound lands on
    it. None when no rule fires or the deciding rule changes nothing.
    """
    current = deployment.target_replica_count
    for rule in rules:
        if is_cooling_down(rule, now):
            continue
        value = metric_value(rule, deployment, metrics)
        if value is None or not _COMPARE[rule.comparator](value, rule.threshold):
            continue
        replicas = clamp_replicas(current + rule.step_size, rule)
        if replicas == current:
            return None
        return ScalingDecision(rule=rule, metric_value=value, replicas=replicas)
    return None


def describe_decision(deployment: DeploymentInfo, decision: ScalingDecision) -> str:
    """'scaled 1 -> 3: model_requests_in_flight 2.7 >= 2 (rule <id>)', for history and logs."""
    rule = decision.rule
    return (
        f"scaled {deployment.target_replica_count} -> {decision.replicas}: "
        f"{rule.metric_name} {decision.metric_value:g} {_SYMBOL[rule.comparator]} "
        f"{rule.threshold:g}" + (f" (rule {rule.id})" if rule.id is not None else "")
    )


def direction(deployment: DeploymentInfo, decision: ScalingDecision) -> str:
    return "up" if decision.replicas > deployment.target_replica_count else "down"


def is_cooling_down(rule: AutoScalingRule, now: datetime) -> bool:
    if rule.last_triggered_at is None:
        return False
    return now < rule.last_triggered_at + timedelta(seconds=rule.cooldown_s)


def clamp_replicas(replicas: int, rule: AutoScalingRule) -> int:
    lowest = max(rule.min_replicas or 0, 0)
    if rule.max_replicas is not None:
        replicas = min(replicas, rule.max_replicas)
    return max(replicas, lowest)


def metric_value(
    rule: AutoScalingRule, deployment: DeploymentInfo, metrics: AutoScalingMetricsData
) -> float | None:
    """The deployment's value of the rule's metric; session metrics are averaged over routes."""
    if rule.metric_source is MetricSource.INFERENCE_FRAMEWORK:
        return metrics.endpoint_metrics.get(deployment.id, {}).get(rule.metric_name)
    values: list[float] = []
    for route in metrics.routes_by_endpoint.get(deployment.id, ()):
        if route.session_id is None:
            continue
        value = metrics.session_metrics.get(route.session_id, {}).get(rule.metric_name)
        if value is not None:
            values.append(value)
    return fmean(values) if values else None
