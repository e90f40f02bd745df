"""`modelfleet deployment show`: why a deployment is not serving, in one screen."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import click
import redis

from workers.adapters.redis.activity import RedisRequestActivity
from workers.adapters.redis.client import server_time_s
from workers.adapters.redis.health import RedisHealthStore
from workers.cli.deployments import deployment, with_rollout
from workers.cli.output import (
    emit_json,
    emit_records,
    emit_table,
    json_option,
)
from workers.cli.root import CliContext, find_deployment, reported_failures
from workers.domain import (
    HealthStatus,
)
from workers.errors import InfrastructureUnavailable


@deployment.command("show")
@click.argument("ref", metavar="DEPLOYMENT")
@click.option("--history", "limit", type=click.IntRange(min=1), default=8, show_default=True)
@json_option
@click.pass_obj
def show(cli: CliContext, ref: str, limit: int, as_json: bool) -> None:
    """Why isn't it serving? Lifecycle, revision, replicas by status with their health age,
    the last history rows, route errors and sessions that exited."""
    with reported_failures("deployment show"):
        found = with_rollout(find_deployment(cli, ref))
        history = cli.reports.deployment_history(found["id"], limit)
        routes = [r for r in cli.reports.routes(found["id"]) if r["status"] != "terminated"]
        errors = cli.reports.route_errors(found["id"], limit)
        exited = cli.reports.exited_sessions(found["id"], limit)
    routes = with_health(cli, routes)
    found["idle_s"] = _idle_s(cli, found["id"])
    found["autoscale"] = autoscale_of(found)
    found["routes"] = ", ".join(
        f"{n} {status}" for status, n in Counter(r["status"] for r in routes).most_common()
    )
    if as_json:
        emit_json({**found, "history": history, "routes": routes, "route_errors": errors,
                   "exited_sessions": exited})  # fmt: skip
        return
    emit_records(f"deployment {found['name']}", [{**found, "autoscale": _said(found)}],
                 SHOW_FIELDS)  # fmt: skip
    emit_table(
        "routes", routes, ["id", "revision", "status", "host_name", "health", "health_age_s"]
    )
    emit_table("history (newest first)", history,
               ["updated_at", "phase", "to_status", "result", "message"])  # fmt: skip
    if errors:
        emit_table("route errors (newest first)", errors,
                   ["updated_at", "route_id", "error_code", "message"])  # fmt: skip
    if exited:
        emit_table("sessions that exited on their own (newest first)", exited,
                   ["terminated_at", "route_id", "exit_code", "last_output"])  # fmt: skip


SHOW_FIELDS = [
    "name",
    "id",
    "lifecycle",
    "ready",
    "reason",
    "routes",
    "scale_to_zero_after_s",
    "idle_s",
    "current_revision",
    "deploying_revision",
    "rollout",
    "autoscale",
    "routing",
    "resource_group",
    "replica_count",
    "desired_replica_count",
    "url",
    "created_at",
]


def _idle_s(cli: CliContext, deployment_id: uuid.UUID) -> float | None:
    """Seconds since its latest request by the Redis clock (None: none recorded, or Redis
    unavailable)."""
    try:
        with cli.redis() as (client, keys):
            activity = RedisRequestActivity(client=client, keys=keys)
            last = activity.last_requests({deployment_id}).get(deployment_id)
            return None if last is None else round(max(0.0, activity.now_s() - last), 1)
    except (InfrastructureUnavailable, redis.RedisError, OSError):
        return None


def with_health(cli: CliContext, routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each route with what the health store says of it and how old that is (seconds by the
    Redis clock); "unknown" when Redis cannot be read, so the rest still shows."""
    try:
        with cli.redis() as (client, keys):
            health = RedisHealthStore(client=client, keys=keys).check_route_health_status(
                [str(r["id"]) for r in routes]
            )
            now_s = server_time_s(client.time())
    except (InfrastructureUnavailable, redis.RedisError, OSError):
        return [
            {**r, "health": "unknown (Redis unavailable)", "health_age_s": None} for r in routes
        ]
    return [{**r, **_health_of(health.get(str(r["id"])), now_s)} for r in routes]


def _health_of(status: HealthStatus | None, now_s: float) -> dict[str, Any]:
    if status is None:
        return {"health": "missing", "health_age_s": None}
    last = status.last_readiness_at
    age = None if last is None else round(max(now_s - last, 0.0), 1)
    return {"health": status.status.value.lower(), "health_age_s": age}


def autoscale_of(row: dict[str, Any]) -> dict[str, Any] | None:
    """The traffic autoscaler's settings, and its current view (inputs and decision, as
    its last run saw them); None when it is off."""
    if row.get("autoscale_mode", "off") == "off":
        return None
    return {
        "mode": row["autoscale_mode"],
        "target": row["autoscale_target"],
        "min_replicas": row["autoscale_min_replicas"],
        "max_replicas": row["autoscale_max_replicas"],
        "stable_window_s": row["autoscale_stable_window_s"],
        "panic_window_s": row["autoscale_panic_window_s"],
        "view": row.get("autoscale_view"),
    }


def _said(row: dict[str, Any]) -> str:
    """For people: 'concurrency, target 2 per replica (1-10): <its last view>'."""
    autoscale = row["autoscale"]
    if autoscale is None:
        return "off"
    view = autoscale["view"] or {}
    bounds = f"{autoscale['min_replicas']}-{autoscale['max_replicas']}"
    said = f"{autoscale['mode']}, target {autoscale['target']:g} per replica ({bounds})"
    if view.get("panicking"):
        said += ", panicking"
    return f"{said}: {view['said']}" if view.get("said") else said
