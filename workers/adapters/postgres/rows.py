"""Rows to domain values and back: the one place that knows column names of both sides."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from workers.adapters.postgres.schema import deployments, routes
from workers.domain import (
    AutoscaleMode,
    AutoscaleState,
    AutoScalingRule,
    Comparator,
    DeploymentInfo,
    DeploymentLifecycle,
    HealthCheckConfig,
    MetricSource,
    ModelRevision,
    RouteData,
    RouteStatus,
    RoutingPolicy,
    SessionId,
    TargetTracking,
    TrafficStatus,
)

DEPLOYMENT_COLUMNS = tuple(deployments.c)
ROUTE_COLUMNS = (
    routes.c.id,
    routes.c.deployment_id,
    routes.c.session_id,
    routes.c.status,
    routes.c.traffic_ratio,
    routes.c.created_at,
    routes.c.status_changed_at,
    routes.c.revision,
    routes.c.traffic_status,
    routes.c.first_healthy_at,
)


def deployment_from_row(m: sa.RowMapping) -> DeploymentInfo:
    return DeploymentInfo(
        id=m["id"],
        name=m["name"],
        resource_group=m["resource_group"],
        replica_count=m["replica_count"],
        target_revision=revision_from_row(m),
        desired_replica_count=m["desired_replica_count"],
        lifecycle=DeploymentLifecycle(m["lifecycle"]),
        url=m["url"],
        open_to_public=m["open_to_public"],
        owner=m["owner"],
        project=m["project"],
        domain=m["domain"],
        retry_count=m["retry_count"],
        drain_s=m["drain_s"],
        current_revision=m["current_revision"],
        deploying_revision=m["deploying_revision"],
        scale_to_zero_after_s=m["scale_to_zero_after_s"],
        zeroed_from=m["zeroed_from"],
        idle_counts_from=m["idle_counts_from"],
        start_deadline_s=m["start_deadline_s"],
        autoscale=autoscale_from_row(m),
        autoscale_state=AutoscaleState.from_json(m["autoscale_state"]),
        routing=RoutingPolicy(m["routing"]),
    )


def autoscale_from_row(m: Mapping[Any, Any]) -> TargetTracking | None:
    """A deployment's traffic autoscaler as its row says; None when it is off."""
    mode = AutoscaleMode(m["autoscale_mode"])
    if mode is AutoscaleMode.OFF or m["autoscale_target"] is None:
        return None
    return TargetTracking(mode, m["autoscale_target"], m["autoscale_min_replicas"],
                          m["autoscale_max_replicas"], m["autoscale_stable_window_s"],
                          m["autoscale_panic_window_s"])  # fmt: skip


def autoscale_values(tracking: TargetTracking | None) -> dict[str, Any]:
    """The columns of a deployment's traffic autoscaler (off: its mode only)."""
    if tracking is None:
        return {"autoscale_mode": AutoscaleMode.OFF.value}
    return {
        "autoscale_mode": tracking.mode.value,
        "autoscale_target": tracking.target,
        "autoscale_min_replicas": tracking.min_replicas,
        "autoscale_max_replicas": tracking.max_replicas,
        "autoscale_stable_window_s": tracking.stable_window_s,
        "autoscale_panic_window_s": tracking.panic_window_s,
    }


def revision_from_row(m: Mapping[Any, Any]) -> ModelRevision | None:
    if m["image"] is None:
        return None
    return ModelRevision(
        image=m["image"],
        runtime_variant=m["runtime_variant"],
        model_path=m["model_path"],
        resources=dict(m["resources"]),
        environ=dict(m["environ"]),
        startup_command=m["startup_command"],
        health_check=health_check_of(m),
    )


def health_check_of(m: Mapping[Any, Any]) -> HealthCheckConfig | None:
    """The health check in a row's `health_check_*` columns; None when it has no path."""
    if m["health_check_path"] is None:
        return None
    return HealthCheckConfig(
        path=m["health_check_path"],
        interval_s=m["health_check_interval_s"],
        max_retries=m["health_check_max_retries"],
        initial_delay_s=m["health_check_initial_delay_s"],
        timeout_s=m["health_check_timeout_s"],
        expected_status=m["health_check_expected_status"],
    )


def revision_values(revision: ModelRevision | None) -> dict[str, Any]:
    """Column values for a deployment's target revision (all empty for None)."""
    if revision is None:
        return {"image": None}
    values: dict[str, Any] = {
        "image": revision.image,
        "runtime_variant": revision.runtime_variant,
        "model_path": revision.model_path,
        "resources": dict(revision.resources),
        "environ": dict(revision.environ),
        "startup_command": revision.startup_command,
        "health_check_path": None,
    }
    check = revision.health_check
    if check is not None:
        values |= {
            "health_check_path": check.path,
            "health_check_interval_s": check.interval_s,
            "health_check_max_retries": check.max_retries,
            "health_check_initial_delay_s": check.initial_delay_s,
            "health_check_timeout_s": check.timeout_s,
            "health_check_expected_status": check.expected_status,
        }
    return values


def deployment_values(deployment: DeploymentInfo) -> dict[str, Any]:
    """Column values to insert `deployment` as it is."""
    return {
        "id": deployment.id,
        "name": deployment.name,
        "resource_group": deployment.resource_group,
        "lifecycle": deployment.lifecycle.value,
        "replica_count": deployment.replica_count,
        "desired_replica_count": deployment.desired_replica_count,
        "url": deployment.url,
        "open_to_public": deployment.open_to_public,
        "owner": deployment.owner,
        "project": deployment.project,
        "domain": deployment.domain,
        "retry_count": deployment.retry_count,
        "drain_s": deployment.drain_s,
        "current_revision": deployment.current_revision,
        "deploying_revision": deployment.deploying_revision,
        "scale_to_zero_after_s": deployment.scale_to_zero_after_s,
        "zeroed_from": deployment.zeroed_from,
        "start_deadline_s": deployment.start_deadline_s,
        **autoscale_values(deployment.autoscale),
        "routing": deployment.routing.value,
        **revision_values(deployment.target_revision),
    }


def route_from_row(m: sa.RowMapping) -> RouteData:
    session_id = m["session_id"]
    return RouteData(
        id=m["id"],
        endpoint_id=m["deployment_id"],
        session_id=SessionId(session_id) if session_id is not None else None,
        status=RouteStatus(m["status"]),
        traffic_ratio=m["traffic_ratio"],
        created_at=m["created_at"],
        status_changed_at=m["status_changed_at"],
        revision=m["revision"],
        in_traffic=m["traffic_status"] != TrafficStatus.STANDBY.value,
        ever_healthy=m["first_healthy_at"] is not None,
        host_leaving=bool(m.get("host_leaving", False)),
    )


def rule_from_row(m: sa.RowMapping) -> AutoScalingRule:
    return AutoScalingRule(
        id=m["id"],
        metric_source=MetricSource(m["metric_source"]),
        metric_name=m["metric_name"],
        threshold=m["threshold"],
        comparator=Comparator(m["comparator"]),
        step_size=m["step_size"],
        cooldown_s=m["cooldown_s"],
        min_replicas=m["min_replicas"],
        max_replicas=m["max_replicas"],
        last_triggered_at=m["last_triggered_at"],
    )


def rule_values(deployment_id: Any, rule: AutoScalingRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "deployment_id": deployment_id,
        "metric_source": rule.metric_source.value,
        "metric_name": rule.metric_name,
        "threshold": rule.threshold,
        "comparator": rule.comparator.value,
        "step_size": rule.step_size,
        "cooldown_s": rule.cooldown_s,
        "min_replicas": rule.min_replicas,
        "max_replicas": rule.max_replicas,
        "last_triggered_at": rule.last_triggered_at,
    }
