"""Phase-level reads: the routes and deployments a phase works on.

A phase task loads its targets by status; each header task loads its own items
again by id (the rows may have moved since), keeping only those still in one
of the phase's statuses.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from collections.abc import Set as AbstractSet
from uuid import UUID

import sqlalchemy as sa

from workers.adapters.postgres.bulk import any_of
from workers.adapters.postgres.rows import (
    DEPLOYMENT_COLUMNS,
    ROUTE_COLUMNS,
    deployment_from_row,
    route_from_row,
)
from workers.adapters.postgres.schema import deployments, routes, scaling_groups, sessions
from workers.crash_loop import WINDOW_S, start_allowed_at
from workers.domain import DeploymentInfo, DeploymentLifecycle, RouteData, RouteStatus

log = logging.getLogger(__name__)


def load_deployments(
    conn: sa.Connection,
    lifecycles: AbstractSet[DeploymentLifecycle],
    ids: Collection[UUID] | None = None,
) -> list[DeploymentInfo]:
    """Deployments in `lifecycles` (and among `ids`, when given), oldest first."""
    query = sa.select(*DEPLOYMENT_COLUMNS).where(
        deployments.c.lifecycle.in_([s.value for s in lifecycles])
    )
    if ids is not None:
        query = query.where(any_of(deployments.c.id, ids))
    query = query.order_by(deployments.c.created_at, deployments.c.id)
    return [deployment_from_row(row) for row in conn.execute(query).mappings()]


def load_routes(
    conn: sa.Connection, statuses: AbstractSet[RouteStatus], ids: Collection[UUID] | None = None
) -> list[RouteData]:
    """Routes in `statuses` (and among `ids`, when given), oldest first."""
    query = sa.select(*ROUTE_COLUMNS).where(routes.c.status.in_([s.value for s in statuses]))
    if ids is not None:
        query = query.where(any_of(routes.c.id, ids))
    query = query.order_by(routes.c.created_at, routes.c.id)
    return [route_from_row(row) for row in conn.execute(query).mappings()]


def load_eviction_candidates(conn: sa.Connection) -> list[RouteData]:
    """Unhealthy routes, plus healthy or degraded ones their group's cleanup config names.

    A degraded route counts only once it has been degraded for longer than its
    deployment's health-check initial delay: a model server still loading is
    not evicted for being slow to answer its first probe.
    """
    named = routes.c.status == sa.func.any(scaling_groups.c.route_cleanup_statuses)
    degraded_long_enough = routes.c.status_changed_at < sa.func.now() - sa.func.make_interval(
        0, 0, 0, 0, 0, 0, deployments.c.health_check_initial_delay_s
    )
    query = (
        sa.select(*ROUTE_COLUMNS)
        .join(deployments, deployments.c.id == routes.c.deployment_id)
        .join(scaling_groups, scaling_groups.c.name == deployments.c.resource_group)
        .where(
            sa.or_(
                routes.c.status == RouteStatus.UNHEALTHY.value,
                sa.and_(routes.c.status == RouteStatus.HEALTHY.value, named),
                sa.and_(routes.c.status == RouteStatus.DEGRADED.value, named, degraded_long_enough),
            )
        )
        .order_by(routes.c.created_at, routes.c.id)
    )
    return [route_from_row(row) for row in conn.execute(query).mappings()]


def load_drained_routes(conn: sa.Connection) -> list[RouteData]:
    """Draining routes that have been out of traffic for their deployment's `drain_s`."""
    drained = routes.c.status_changed_at <= sa.func.now() - sa.func.make_interval(
        0, 0, 0, 0, 0, 0, deployments.c.drain_s
    )
    query = (
        sa.select(*ROUTE_COLUMNS)
        .join(deployments, deployments.c.id == routes.c.deployment_id)
        .where(routes.c.status == RouteStatus.DRAINING.value, drained)
        .order_by(routes.c.created_at, routes.c.id)
    )
    return [route_from_row(row) for row in conn.execute(query).mappings()]


def load_routes_to_provision(conn: sa.Connection) -> list[RouteData]:
    """Provisioning routes, except those of deployments in crash-loop back-off.

    A deployment's recent exits are its sessions that ended in ERROR within the
    back-off window (`workers.crash_loop`); its routes wait until the back-off
    after the latest one has passed.
    """
    window = sa.func.make_interval(0, 0, 0, 0, 0, 0, WINDOW_S)
    exits = (
        sa.select(
            routes.c.deployment_id,
            sa.func.count().label("recent_exits"),
            sa.func.max(sessions.c.terminated_at).label("last_exit_at"),
        )
        .join(routes, routes.c.id == sessions.c.route_id)
        .where(sessions.c.status == "ERROR", sessions.c.terminated_at > sa.func.now() - window)
        .group_by(routes.c.deployment_id)
        .subquery()
    )
    query = (
        sa.select(
            *ROUTE_COLUMNS,
            exits.c.recent_exits,
            exits.c.last_exit_at,
            sa.func.now().label("db_now"),
        )
        .outerjoin(exits, exits.c.deployment_id == routes.c.deployment_id)
        .where(routes.c.status == RouteStatus.PROVISIONING.value)
        .order_by(routes.c.created_at, routes.c.id)
    )
    waiting: set[UUID] = set()
    ready = []
    for row in conn.execute(query).mappings():
        allowed_at = start_allowed_at(row["recent_exits"] or 0, row["last_exit_at"])
        if allowed_at is not None and allowed_at > row["db_now"]:
            waiting.add(row["deployment_id"])
        else:
            ready.append(route_from_row(row))
    if waiting:
        log.info("%d deployments in crash-loop back-off: their new sessions wait", len(waiting))
    return ready
