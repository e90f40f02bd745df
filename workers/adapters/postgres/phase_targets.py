"""Phase-level reads: the routes and deployments a phase works on.

A phase task loads its targets by status; each header task loads its own items
again by id (the rows may have moved since), keeping only those still in one
of the phase's statuses.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from collections.abc import Set as AbstractSet
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from workers.adapters.postgres.bulk import any_of
from workers.adapters.postgres.host_loads import host_columns, host_from_row
from workers.adapters.postgres.rows import (
    DEPLOYMENT_COLUMNS,
    ROUTE_COLUMNS,
    deployment_from_row,
    route_from_row,
)
from workers.adapters.postgres.schema import (
    deployment_revisions,
    deployments,
    hosts,
    routes,
    scaling_groups,
    sessions,
)
from workers.domain import (
    DeploymentInfo,
    DeploymentLifecycle,
    HostInfo,
    HostStatus,
    RouteData,
    RouteStatus,
)
from workers.policies.crash_loop import WINDOW_S, start_allowed_at

log = logging.getLogger(__name__)


def load_deployments(
    conn: sa.Connection,
    lifecycles: AbstractSet[DeploymentLifecycle],
    ids: Collection[UUID] | None = None,
) -> list[DeploymentInfo]:
    """Deployments in `lifecycles` (and among `ids`, when given), oldest first."""
    query = sa.select(*DEPLOYMENT_COLUMNS).where(_status_in(deployments.c.lifecycle, lifecycles))
    if ids is not None:
        query = query.where(any_of(deployments.c.id, ids))
    query = query.order_by(deployments.c.created_at, deployments.c.id)
    return [deployment_from_row(row) for row in conn.execute(query).mappings()]


def load_scale_to_zero_candidates(conn: sa.Connection) -> list[DeploymentInfo]:
    """Ready deployments with scale to zero on that still have replicas to give back."""
    query = (
        sa.select(*DEPLOYMENT_COLUMNS)
        .where(
            deployments.c.lifecycle == DeploymentLifecycle.READY.value,
            deployments.c.scale_to_zero_after_s.is_not(None),
            deployments.c.zeroed_from.is_(None),
        )
        .order_by(deployments.c.created_at, deployments.c.id)
    )
    return [deployment_from_row(row) for row in conn.execute(query).mappings()]


def count_in(conn: sa.Connection, status: sa.Column[Any], statuses: AbstractSet[Any]) -> int:
    """How many rows of a table are in `statuses`."""
    query = sa.select(sa.func.count()).where(_status_in(status, statuses))
    return int(conn.execute(query).scalar_one())


def target_ids(
    conn: sa.Connection, status: sa.Column[Any], statuses: AbstractSet[Any], *order: Any
) -> list[UUID]:
    """The ids of a table's rows in `statuses`, in `order`: all a run needs to fan out
    (each task loads its own rows), at a fraction of the cost of whole rows."""
    table = status.table
    query = sa.select(table.c.id).where(_status_in(status, statuses)).order_by(*order)
    return list(conn.execute(query).scalars())


def load_routes(
    conn: sa.Connection, statuses: AbstractSet[RouteStatus], ids: Collection[UUID] | None = None
) -> list[RouteData]:
    """Routes in `statuses` (and among `ids`, when given), oldest first."""
    query = sa.select(*ROUTE_COLUMNS).where(_status_in(routes.c.status, statuses))
    if ids is not None:
        query = query.where(any_of(routes.c.id, ids))
    query = query.order_by(routes.c.created_at, routes.c.id)
    return [route_from_row(row) for row in conn.execute(query).mappings()]


def load_eviction_candidates(conn: sa.Connection) -> list[RouteData]:
    """Unhealthy routes, plus healthy or degraded ones their group's cleanup config names.

    A degraded route counts only once it has been degraded for longer than its
    deployment's health-check initial delay: a model server still loading is
    not evicted for being slow to answer its first probe. An unhealthy route
    that never passed its health check is `routes.check_startup`'s to judge, at
    its health budget: not evicted on its first failed probe.
    """
    named = routes.c.status == sa.func.any(scaling_groups.c.route_cleanup_statuses)
    degraded_long_enough = routes.c.status_changed_at < sa.func.now() - sa.func.make_interval(
        0, 0, 0, 0, 0, 0, deployments.c.health_check_initial_delay_s
    )
    judged_at_startup = sa.and_(
        routes.c.first_healthy_at.is_(None), of_its_revision("health_check_path").is_not(None)
    )
    query = (
        with_its_revision(
            sa.select(*ROUTE_COLUMNS)
            .join(deployments, deployments.c.id == routes.c.deployment_id)
            .join(scaling_groups, scaling_groups.c.name == deployments.c.resource_group)
        )
        .where(
            sa.or_(
                sa.and_(routes.c.status == RouteStatus.UNHEALTHY.value, ~judged_at_startup),
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
    """Provisioning routes, except those of revisions in crash-loop back-off.

    A revision's recent exits are its sessions that ended in ERROR within the
    back-off window (`workers.policies.crash_loop`); its routes wait until the back-off
    after the latest one has passed. The routes of a revision being rolled out
    never wait: the back-off protects a steady fleet, and a rollout judges its new
    revision by how fast it fails (its exits do not hold back the old revision's
    replacements either).
    """
    window = sa.func.make_interval(0, 0, 0, 0, 0, 0, WINDOW_S)
    exits = (
        sa.select(
            routes.c.deployment_id,
            routes.c.revision,
            sa.func.count().label("recent_exits"),
            sa.func.max(sessions.c.terminated_at).label("last_exit_at"),
        )
        .join(routes, routes.c.id == sessions.c.route_id)
        .where(sessions.c.status == "ERROR", sessions.c.terminated_at > sa.func.now() - window)
        .group_by(routes.c.deployment_id, routes.c.revision)
        .subquery()
    )
    rolled_out = routes.c.revision == deployments.c.deploying_revision
    query = (
        sa.select(
            *ROUTE_COLUMNS,
            sa.case((rolled_out, 0), else_=exits.c.recent_exits).label("recent_exits"),
            exits.c.last_exit_at,
            sa.func.now().label("db_now"),
        )
        .join(deployments, deployments.c.id == routes.c.deployment_id)
        .outerjoin(
            exits,
            sa.and_(
                exits.c.deployment_id == routes.c.deployment_id,
                exits.c.revision.is_not_distinct_from(routes.c.revision),
            ),
        )
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


HEALTH_CHECK_COLUMNS = (
    "health_check_path",
    "health_check_interval_s",
    "health_check_timeout_s",
    "health_check_initial_delay_s",
    "health_check_max_retries",
    "health_check_expected_status",
)


def with_its_revision(query: sa.Select[Any]) -> sa.Select[Any]:
    """`query` (over routes joined with their deployment) joined with the revision each
    route runs, for `of_its_revision`."""
    revision = sa.func.coalesce(routes.c.revision, deployments.c.current_revision)
    return query.outerjoin(
        deployment_revisions,
        sa.and_(
            deployment_revisions.c.deployment_id == routes.c.deployment_id,
            deployment_revisions.c.number == revision,
        ),
    )


def of_its_revision(name: str) -> sa.ColumnElement[Any]:
    """A column of the revision a route runs, or the deployment's own copy when that
    revision is no longer kept (see `with_its_revision`)."""
    kept = deployment_revisions.c.number.is_not(None)
    return sa.case((kept, deployment_revisions.c[name]), else_=deployments.c[name]).label(name)


def load_routes_starting(conn: sa.Connection) -> list[RouteData]:
    """Degraded or unhealthy routes that never passed their health check, whose session
    runs and whose revision has a health check: what `routes.check_startup` judges."""
    query = (
        with_its_revision(
            sa.select(*ROUTE_COLUMNS)
            .join(sessions, sessions.c.id == routes.c.session_id)
            .join(deployments, deployments.c.id == routes.c.deployment_id)
        )
        .where(
            routes.c.status.in_([RouteStatus.DEGRADED.value, RouteStatus.UNHEALTHY.value]),
            routes.c.first_healthy_at.is_(None),
            sessions.c.status == "RUNNING",
            sessions.c.started_at.is_not(None),
            of_its_revision("health_check_path").is_not(None),
        )
        .order_by(routes.c.created_at, routes.c.id)
    )
    return [route_from_row(row) for row in conn.execute(query).mappings()]


def load_hosts(
    conn: sa.Connection, statuses: AbstractSet[HostStatus], ids: Collection[UUID] | None = None
) -> list[HostInfo]:
    """Hosts in `statuses` (and among `ids`, when given), by name."""
    query = sa.select(*host_columns()).where(_status_in(hosts.c.status, statuses))
    if ids is not None:
        query = query.where(any_of(hosts.c.id, ids))
    return [host_from_row(row) for row in conn.execute(query.order_by(hosts.c.name)).mappings()]


def _status_in(status: sa.ColumnElement[Any], statuses: AbstractSet[Any]) -> sa.ColumnElement[bool]:
    """`status IN (...)`, the statuses' values."""
    return status.in_([s.value for s in statuses])
