"""Routes coming into service and going out of it (scale, rollouts, drains, destroy).

New routes start `provisioning`; a route leaves through a guarded transition to
`draining` (with its history row, the path every phase's transitions take), out of
traffic at once.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from uuid import UUID, uuid4

import sqlalchemy as sa

from workers.adapters.postgres.bulk import any_of
from workers.adapters.postgres.schema import deployments, routes
from workers.adapters.postgres.terms import traffic_status
from workers.adapters.postgres.transitions import apply_route_transitions
from workers.domain import (
    ACTIVE_ROUTE_STATUSES,
    OutcomeBucket,
    RouteCreator,
    RouteStatus,
    RouteTransition,
    TrafficStatus,
)


def take_out_of_service(
    conn: sa.Connection, route_ids: Collection[UUID], why: tuple[str, str]
) -> list[UUID]:
    """Active routes leave traffic: they move to `draining` with a history row.

    Traffic first, then the process: `routes.drain` tells a route's session to
    stop (terminating) only once the route has been out of traffic for its
    deployment's `drain_s`. Returns the routes that left service now.
    """
    phase, message = why
    changes = [
        RouteTransition(
            entity_id=route_id,
            expected=ACTIVE_ROUTE_STATUSES,
            to_status=RouteStatus.DRAINING,
            phase=phase,
            result=OutcomeBucket.SUCCESS,
            message=message,
        )
        for route_id in route_ids
    ]
    applied = apply_route_transitions(conn, changes)
    if applied:
        conn.execute(
            routes.update()
            .where(any_of(routes.c.id, applied))
            .values(traffic_ratio=0.0, traffic_status=TrafficStatus.INACTIVE.value)
        )
    return applied


def insert_routes(conn: sa.Connection, creators: Sequence[RouteCreator]) -> list[UUID]:
    """New routes (provisioning); one with no revision runs its deployment's current one."""
    current = dict(
        conn.execute(
            sa.select(deployments.c.id, deployments.c.current_revision).where(
                any_of(deployments.c.id, {c.endpoint_id for c in creators})
            )
        ).all()
    )
    ids = [uuid4() for _ in creators]
    rows = [
        {
            "id": route_id,
            "deployment_id": creator.endpoint_id,
            "traffic_ratio": creator.traffic_ratio,
            "revision": creator.revision or current.get(creator.endpoint_id),
            "traffic_status": traffic_status(creator.in_traffic),
        }
        for route_id, creator in zip(ids, creators, strict=True)
    ]
    conn.execute(routes.insert(), rows)
    return ids
