"""Rebalancing in PostgreSQL: the fleet as a move is planned from, starting a move, and
finishing it once the replacement serves.

A moving route (`routes.moving_since`) stops counting as a replica of its deployment
(its replacement starts, and placement keeps it off the host it leaves); once its
deployment has as many healthy replicas that are not leaving as it asks for, it leaves
service (traffic first, then drain). A move whose replacement never served is abandoned
after a while: the route counts again.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import sqlalchemy as sa

from workers.adapters.postgres.bulk import any_of
from workers.adapters.postgres.host_loads import host_loads
from workers.adapters.postgres.route_moves import take_out_of_service
from workers.adapters.postgres.schema import (
    deployment_revisions,
    deployments,
    routes,
    scaling_groups,
    sessions,
)
from workers.adapters.postgres.terms import (
    LEAVING_ROUTE,
    LIVE_SESSION,
    SESSION_HOST,
    TARGET_REPLICAS,
)
from workers.adapters.postgres.transitions import apply_route_transitions
from workers.domain import (
    ACTIVE_ROUTE_STATUSES,
    Allocation,
    DeploymentLifecycle,
    FleetView,
    OutcomeBucket,
    PlacedReplica,
    PlacementMode,
    ReplicaMove,
    ResourceRequest,
    RouteStatus,
    RouteTransition,
    WaitingReplica,
)
from workers.phase_names import PhaseName

PHASE = PhaseName.REBALANCE
_ACTIVE = [s.value for s in ACTIVE_ROUTE_STATUSES]


def fleet_view(conn: sa.Connection) -> FleetView:
    """Every host's load, the active replicas on them, the routes waiting for a session
    (oldest first), and how many replicas are moving now."""
    moving_now = sa.and_(routes.c.moving_since.is_not(None), routes.c.status.in_(_ACTIVE))
    moving = conn.execute(sa.select(sa.func.count()).where(moving_now)).scalar_one()
    return FleetView(tuple(host_loads(conn)), tuple(_placed(conn)), tuple(_waiting(conn)),
                     moving)  # fmt: skip


def start_move(conn: sa.Connection, move: ReplicaMove) -> bool:
    """Mark the route moving (if it still is an active one that is not moving), with a
    history row saying where and why; False when it no longer could move."""
    marked = conn.execute(
        routes.update()
        .where(routes.c.id == move.route_id, routes.c.moving_since.is_(None),
               routes.c.status.in_(_ACTIVE))
        .values(moving_since=sa.func.now())
    ).rowcount  # fmt: skip
    if marked:
        said = f"moving from {move.from_host} to {move.to_host} {move.why}"
        apply_route_transitions(conn, [_history(move.route_id, said)])
    return bool(marked)


def finish_moves(conn: sa.Connection, abandon_after_s: float) -> list[tuple[str, str]]:
    """Moving routes whose deployment is served without them leave service; those moving
    longer than `abandon_after_s` count again. (host, what happened) for each."""
    rows = conn.execute(
        sa.select(routes.c.id, SESSION_HOST.label("host"), _served().label("served"),
                  sa.func.extract("epoch", sa.func.now() - routes.c.moving_since).label("for_s"))
        .join(deployments, deployments.c.id == routes.c.deployment_id)
        .outerjoin(sessions, sa.and_(sessions.c.id == routes.c.session_id, LIVE_SESSION))
        .where(routes.c.moving_since.is_not(None), routes.c.status.in_(_ACTIVE))
    ).all()  # fmt: skip
    done, said = [r for r in rows if r.served], []
    if done:
        take_out_of_service(conn, [r.id for r in done], (PHASE, "moved: its replacement serves"))
        said += [(r.host, f"route {r.id} moved off: its replacement serves") for r in done]
    stuck = [r for r in rows if not r.served and r.for_s > abandon_after_s]
    if stuck:
        conn.execute(routes.update().where(any_of(routes.c.id, [r.id for r in stuck]))
                     .values(moving_since=None))  # fmt: skip
        why = f"move abandoned: no replacement served within {abandon_after_s:g} s"
        apply_route_transitions(conn, [_history(r.id, why) for r in stuck])
        said += [(r.host, f"route {r.id}: {why}") for r in stuck]
    return [(host or "", message) for host, message in said]


def _served() -> sa.ColumnElement[bool]:
    """Whether the route's deployment has as many healthy replicas that are not leaving
    as it asks for (correlated with the outer `routes` row)."""
    other = routes.alias("other")
    healthy = (
        sa.select(sa.func.count())
        .select_from(other)
        .where(other.c.deployment_id == routes.c.deployment_id,
               other.c.status == RouteStatus.HEALTHY.value, other.c.moving_since.is_(None))
        .scalar_subquery()
    )  # fmt: skip
    return healthy >= TARGET_REPLICAS


def _placed(conn: sa.Connection) -> list[PlacedReplica]:
    query = (
        sa.select(
            routes.c.id, routes.c.deployment_id, SESSION_HOST.label("host"),
            sessions.c.spec["resources"].label("resources"), sessions.c.gpu_devices,
            sessions.c.gpu_gib, sessions.c.cpus, sessions.c.memory_gib,
            scaling_groups.c.placement, scaling_groups.c.rebalance, deployments.c.lifecycle,
        )
        .join(sessions, sessions.c.id == routes.c.session_id)
        .join(deployments, deployments.c.id == routes.c.deployment_id)
        .join(scaling_groups, scaling_groups.c.name == deployments.c.resource_group)
        .where(routes.c.status.in_(_ACTIVE), LIVE_SESSION, SESSION_HOST.is_not(None),
               sa.not_(LEAVING_ROUTE))
        .order_by(routes.c.created_at, routes.c.id)
    )  # fmt: skip
    return [_replica(row) for row in conn.execute(query)]


def _replica(row: Any) -> PlacedReplica:
    request = ResourceRequest.from_resources(row.resources or {})
    held = Allocation(row.host, tuple(row.gpu_devices or ()), row.gpu_gib,
                      whole=request.gpus > 0, cpus=row.cpus, memory_gib=row.memory_gib)  # fmt: skip
    movable = row.rebalance and row.lifecycle != DeploymentLifecycle.DEPLOYING.value
    return PlacedReplica(row.id, row.deployment_id, request, held, PlacementMode(row.placement),
                         movable)  # fmt: skip


def _waiting(conn: sa.Connection) -> list[WaitingReplica]:
    """Provisioning routes with no live session, each with what its revision asks for."""
    revision = sa.func.coalesce(routes.c.revision, deployments.c.current_revision)
    has_session = sa.exists(sa.select(1).where(sessions.c.route_id == routes.c.id, LIVE_SESSION))
    query = (
        sa.select(routes.c.id, routes.c.deployment_id, deployments.c.name,
                  sa.func.coalesce(deployment_revisions.c.resources,
                                   deployments.c.resources).label("resources"),
                  scaling_groups.c.rebalance)
        .join(deployments, deployments.c.id == routes.c.deployment_id)
        .join(scaling_groups, scaling_groups.c.name == deployments.c.resource_group)
        .outerjoin(deployment_revisions, sa.and_(
            deployment_revisions.c.deployment_id == routes.c.deployment_id,
            deployment_revisions.c.number == revision))
        .where(routes.c.status == RouteStatus.PROVISIONING.value, sa.not_(has_session))
        .order_by(routes.c.created_at, routes.c.id)
    )  # fmt: skip
    return [
        WaitingReplica(row.id, row.deployment_id, row.name,
                       ResourceRequest.from_resources(row.resources or {}), row.rebalance)
        for row in conn.execute(query)
    ]  # fmt: skip


def _history(route_id: UUID, message: str) -> RouteTransition:
    """A history row on the route, its status unchanged."""
    return RouteTransition(
        entity_id=route_id,
        expected=frozenset(ACTIVE_ROUTE_STATUSES),
        to_status=None,
        phase=PHASE,
        result=OutcomeBucket.SUCCESS,
        message=message,
    )
