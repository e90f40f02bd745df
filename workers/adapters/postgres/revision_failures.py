"""A rollout's new revision's failures, read from PostgreSQL.

Failures of the new revision are its routes that have a history row since the
rollout began that counts against their revision (`revision_failure`, set by
the phases whose errors say a revision is bad: a session that did not start or
ended, a route that went unhealthy or never became healthy in time). A route
counts once, however many phases saw it fail.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import distinct_on

from workers.adapters.postgres.bulk import any_of
from workers.adapters.postgres.schema import (
    deployment_revisions,
    deployments,
    route_history,
    routes,
    sessions,
)
from workers.domain import HealthCheckConfig, RevisionFailures
from workers.errors import NeverHealthy, RouteUnhealthy, probe_saw

# A route that never passed its health check failed with one of these.
_NEVER_HEALTHY_CODES = (NeverHealthy.error_code, RouteUnhealthy.error_code)


def _new_revision_routes(found: dict[UUID, Any]) -> sa.ColumnElement[bool]:
    return sa.and_(
        routes.c.deployment_id == deployments.c.id,
        routes.c.revision == deployments.c.deploying_revision,
        any_of(deployments.c.id, found),
    )


def revision_failures(conn: sa.Connection, found: dict[UUID, Any]) -> dict[UUID, RevisionFailures]:
    """Per deployment: the routes of the new revision that failed since the rollout began
    (history rows that count against a revision), how its sessions exited, and what its
    health checks saw."""
    failed = _failed_routes(conn, found)
    exits = _exits(conn, found)
    health = _deploying_health(conn, found)
    return {
        deployment_id: _failures_of(failed.get(deployment_id, []),
                                    exits.get(deployment_id, []), health.get(deployment_id))
        for deployment_id in found
    }  # fmt: skip


def _failed_routes(conn: sa.Connection, found: dict[UUID, Any]) -> dict[UUID, list[Any]]:
    """The routes that failed, each once (a session that could not start fails in two
    phases; an unhealthy route in the fast path and the full pass): deployment, its
    latest failure's error code and message, whether the route was ever healthy."""
    query = (
        sa.select(
            routes.c.deployment_id,
            route_history.c.error_code,
            route_history.c.message,
            routes.c.first_healthy_at.is_not(None).label("ever_healthy"),
        )
        .select_from(route_history)
        .join(routes, routes.c.id == route_history.c.route_id)
        .join(deployments, _new_revision_routes(found))
        .where(
            route_history.c.revision_failure.is_(True),
            route_history.c.created_at >= deployments.c.rollout_started_at,
        )
        .ext(distinct_on(route_history.c.route_id))
        .order_by(route_history.c.route_id, route_history.c.id.desc())
    )
    grouped: dict[UUID, list[Any]] = {}
    for row in conn.execute(query):
        grouped.setdefault(row.deployment_id, []).append(row)
    return grouped


def _exits(conn: sa.Connection, found: dict[UUID, Any]) -> dict[UUID, list[Any]]:
    """Per deployment: the new revision's sessions that exited on their own, oldest first."""
    query = (
        sa.select(routes.c.deployment_id, sessions.c.exit_code, sessions.c.last_output)
        .select_from(sessions)
        .join(routes, routes.c.id == sessions.c.route_id)
        .join(deployments, _new_revision_routes(found))
        .where(
            sessions.c.status == "ERROR",
            sessions.c.terminated_at >= deployments.c.rollout_started_at,
        )
        .order_by(sessions.c.terminated_at)
    )
    grouped: dict[UUID, list[Any]] = {}
    for row in conn.execute(query):
        grouped.setdefault(row.deployment_id, []).append(row)
    return grouped


def _deploying_health(conn: sa.Connection, found: dict[UUID, Any]) -> dict[UUID, Any]:
    """The health check of each deployment's deploying revision."""
    query = sa.select(
        deployment_revisions.c.deployment_id,
        deployment_revisions.c.health_check_path,
        deployment_revisions.c.health_check_interval_s,
        deployment_revisions.c.health_check_max_retries,
        deployment_revisions.c.health_check_initial_delay_s,
    ).where(
        any_of(deployment_revisions.c.deployment_id, found),
        deployment_revisions.c.deployment_id == deployments.c.id,
        deployment_revisions.c.number == deployments.c.deploying_revision,
    )
    return {row.deployment_id: row for row in conn.execute(query)}


def _failures_of(failed: list[Any], exits: list[Any], health: Any) -> RevisionFailures:
    never = [r for r in failed if not r.ever_healthy and r.error_code in _NEVER_HEALTHY_CODES]
    seen = next((saw for r in reversed(never) if (saw := probe_saw(r.message))), None)
    outputs = [out for _, _, out in exits if out and out.strip()]
    checked = health is not None and health.health_check_path is not None
    return RevisionFailures(
        count=len(failed),
        exit_codes=Counter(code for _, code, _ in exits),
        last_output=outputs[-1].strip().splitlines()[-1] if outputs else "",
        never_healthy=len(never),
        budget_s=_budget_s(health) if checked else None,
        health_path=health.health_check_path if checked else None,
        probe_saw=seen,
    )


def _budget_s(health: Any) -> float:
    return HealthCheckConfig(
        interval_s=health.health_check_interval_s,
        max_retries=health.health_check_max_retries,
        initial_delay_s=health.health_check_initial_delay_s,
    ).budget_s
