"""What the route executor reads of routes in PostgreSQL: what to publish for each, and
how far into its start each one is."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from uuid import UUID

import sqlalchemy as sa

from workers.adapters.postgres.bulk import any_of
from workers.adapters.postgres.phase_targets import (
    HEALTH_CHECK_COLUMNS,
    of_its_revision,
    with_its_revision,
)
from workers.adapters.postgres.rows import health_check_of
from workers.adapters.postgres.schema import deployments, routes, sessions
from workers.adapters.postgres.terms import SESSION_HOST
from workers.domain import (
    RouteDiscoveryData,
    RoutingPolicy,
    SessionStatus,
    StartupProgress,
    TrafficStatus,
)


def discovery_info(conn: sa.Connection, route_ids: AbstractSet[UUID]) -> list[RouteDiscoveryData]:
    """Routes whose session runs and has an address; the others have nothing to scrape."""
    query = (
        sa.select(
            routes.c.id,
            routes.c.deployment_id,
            deployments.c.name,
            deployments.c.runtime_variant,
            sessions.c.host,
            sessions.c.port,
            routes.c.revision,
            SESSION_HOST.label("host_name"),
            routes.c.traffic_ratio,
            deployments.c.routing,
        )
        .join(sessions, sessions.c.id == routes.c.session_id)
        .join(deployments, deployments.c.id == routes.c.deployment_id)
        .where(
            any_of(routes.c.id, route_ids),
            routes.c.traffic_status == TrafficStatus.ACTIVE.value,  # standby routes wait
            sessions.c.status == SessionStatus.RUNNING.value,
            sessions.c.host.is_not(None),
            sessions.c.port.is_not(None),
        )
        .order_by(routes.c.id)
    )
    return [
        RouteDiscoveryData(
            route_id=row.id,
            endpoint_id=row.deployment_id,
            endpoint_name=row.name,
            host=row.host,
            port=row.port,
            runtime_variant=row.runtime_variant,
            revision=row.revision,
            host_name=row.host_name,
            traffic_ratio=row.traffic_ratio,
            routing=RoutingPolicy(row.routing),
        )
        for row in conn.execute(query)
    ]


def startup_progress(
    conn: sa.Connection, route_ids: AbstractSet[UUID]
) -> dict[UUID, StartupProgress]:
    """Seconds since each route's session started running (PostgreSQL's clock), and
    the health budget of the revision it runs; routes without either are absent."""
    started_for_s = sa.func.extract("epoch", sa.func.now() - sessions.c.started_at)
    query = with_its_revision(
        sa.select(
            routes.c.id,
            started_for_s.label("started_for_s"),
            *(of_its_revision(name) for name in HEALTH_CHECK_COLUMNS),
        )
        .join(sessions, sessions.c.id == routes.c.session_id)
        .join(deployments, deployments.c.id == routes.c.deployment_id)
    ).where(
        any_of(routes.c.id, route_ids),
        sessions.c.status == SessionStatus.RUNNING.value,
        sessions.c.started_at.is_not(None),
    )
    rows = conn.execute(query).mappings().all()
    return {
        row["id"]: StartupProgress(
            started_for_s=float(row["started_for_s"]),
            budget_s=check.budget_s,
            health_path=check.path,
        )
        for row in rows
        if (check := health_check_of(row)) is not None
    }
