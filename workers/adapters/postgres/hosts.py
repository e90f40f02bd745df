"""Hosts in PostgreSQL: their load (for placement), giving up a lost host's sessions, and
the routes on a host being drained.

A session is on the host the controller placed it on (`placed_on`), or, unplaced, on
the one whose agent claimed it (`runner`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping
from collections.abc import Set as AbstractSet
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from workers.adapters.postgres.autoscaling import LEAVING_HOST_STATUSES
from workers.adapters.postgres.engine import transaction
from workers.adapters.postgres.route_moves import take_out_of_service
from workers.adapters.postgres.schema import (
    TERMINAL_SESSION_STATUSES,
    deployments,
    hosts,
    routes,
    sessions,
)
from workers.adapters.postgres.transitions import apply_route_transitions
from workers.domain import (
    ACTIVE_ROUTE_STATUSES,
    HostInfo,
    HostRoute,
    HostStatus,
    OutcomeBucket,
    RouteStatus,
    RouteTransition,
    SessionStatus,
)
from workers.phase_names import PhaseName

SESSION_HOST = sa.func.coalesce(sessions.c.placed_on, sessions.c.runner)
_LIVE = sessions.c.status.not_in(TERMINAL_SESSION_STATUSES)
_ACTIVE = [s.value for s in ACTIVE_ROUTE_STATUSES]
LEAVING = LEAVING_HOST_STATUSES
_GIVEN_UP = [*_ACTIVE, RouteStatus.DRAINING.value, RouteStatus.TERMINATING.value]


def host_columns() -> list[sa.ColumnElement[Any]]:
    """A host's row, with its heartbeat's age by the database clock."""
    age = sa.func.extract("epoch", sa.func.now() - hosts.c.last_heartbeat_at)
    return [*hosts.c, age.label("heartbeat_age_s")]


def host_from_row(row: sa.RowMapping, load: dict[UUID, int] | None = None) -> HostInfo:
    load = load or {}
    return HostInfo(
        id=row["id"],
        name=row["name"],
        address=row["address"],
        status=HostStatus(row["status"]),
        slots=row["slots"],
        heartbeat_age_s=float(row["heartbeat_age_s"]),
        sessions=sum(load.values()),
        per_deployment=load,
        changed_at=row["changed_at"],
    )


def host_loads(conn: sa.Connection, *, lock: bool = False) -> list[HostInfo]:
    """Every host with its live sessions per deployment; `lock` holds the host rows for
    this transaction, so that placements made at the same time see each other."""
    query = sa.select(*host_columns()).order_by(hosts.c.name)
    if lock:
        query = query.with_for_update(of=hosts)
    found = list(conn.execute(query).mappings())
    if not found:
        return []
    per_host: dict[str, dict[UUID, int]] = defaultdict(dict)
    counted = (
        sa.select(SESSION_HOST.label("host"), routes.c.deployment_id, sa.func.count())
        .join(routes, routes.c.id == sessions.c.route_id)
        .where(_LIVE, SESSION_HOST.is_not(None))
        .group_by(SESSION_HOST, routes.c.deployment_id)
    )
    for host, deployment_id, count in conn.execute(counted):
        per_host[host][deployment_id] = count
    return [host_from_row(row, per_host.get(row["name"])) for row in found]


def give_up_sessions_of(conn: sa.Connection, names: Collection[str], why: str) -> int:
    """A lost host's live sessions become LOST and their routes terminated at once (out of
    service discovery at the next sync, no drain: nothing on it is trusted; the route's
    deployment gets a replacement). Returns how many routes were given up."""
    on_them = sa.and_(SESSION_HOST.in_(list(names)), _LIVE)
    given_up = conn.execute(
        sessions.update()
        .where(on_them)
        .values(status=SessionStatus.LOST.value, terminated_at=sa.func.now(),
                updated_at=sa.func.now())
        .returning(sessions.c.route_id)
    ).scalars().all()  # fmt: skip
    changes = [
        RouteTransition(
            entity_id=route_id,
            expected=frozenset(RouteStatus(s) for s in _GIVEN_UP),
            to_status=RouteStatus.TERMINATED,
            phase=PhaseName.CHECK_HOSTS,
            result=OutcomeBucket.ERROR,
            error_code="host_lost",
            message=why,
        )
        for route_id in given_up
    ]
    return len(apply_route_transitions(conn, changes)) if changes else 0


def routes_on(conn: sa.Connection, names: AbstractSet[str]) -> list[HostRoute]:
    """Active routes with a live session on the named hosts, each with how many healthy
    routes its deployment has on hosts that are not leaving."""
    healthy_elsewhere = (
        sa.select(sa.func.count())
        .select_from(routes.join(sessions, sessions.c.id == routes.c.session_id))
        .outerjoin(hosts, hosts.c.name == SESSION_HOST)
        .where(
            routes.c.deployment_id == deployments.c.id,
            routes.c.status == RouteStatus.HEALTHY.value,
            sa.or_(hosts.c.status.is_(None), hosts.c.status.not_in(LEAVING)),
        )
        .scalar_subquery()
    )
    target = sa.func.coalesce(deployments.c.desired_replica_count, deployments.c.replica_count)
    query = (
        sa.select(routes.c.id, routes.c.deployment_id, SESSION_HOST.label("host"),
                  healthy_elsewhere.label("healthy_elsewhere"), target.label("target"))
        .join(sessions, sessions.c.id == routes.c.session_id)
        .join(deployments, deployments.c.id == routes.c.deployment_id)
        .where(SESSION_HOST.in_(list(names)), _LIVE, routes.c.status.in_(_ACTIVE))
        .order_by(routes.c.created_at, routes.c.id)
    )  # fmt: skip
    return [HostRoute(row.id, row.deployment_id, row.host, row.healthy_elsewhere, row.target)
            for row in conn.execute(query)]  # fmt: skip


def live_sessions_on(conn: sa.Connection, names: AbstractSet[str]) -> dict[str, int]:
    query = (
        sa.select(SESSION_HOST, sa.func.count())
        .where(SESSION_HOST.in_(list(names)), _LIVE)
        .group_by(SESSION_HOST)
    )
    return {host: count for host, count in conn.execute(query)}


class PostgresHostRegistry:
    """`HostRegistry` on PostgreSQL: what the host phases read and do."""

    def __init__(self, *, engine: sa.Engine) -> None:
        self._engine = engine

    def give_up_lost_hosts(self, reasons: Mapping[str, str]) -> dict[str, int]:
        """For each lost host: its sessions LOST, its routes terminated (see
        `give_up_sessions_of`); how many routes each gave up."""
        with transaction(self._engine) as conn:
            return {name: give_up_sessions_of(conn, [name], why) for name, why in reasons.items()}

    def fetch_routes_on(self, names: AbstractSet[str]) -> list[HostRoute]:
        with transaction(self._engine) as conn:
            return routes_on(conn, names)

    def count_live_sessions(self, names: AbstractSet[str]) -> dict[str, int]:
        with transaction(self._engine) as conn:
            return live_sessions_on(conn, names)

    def fetch_hosts(self, names: AbstractSet[str] | None = None) -> list[HostInfo]:
        with transaction(self._engine) as conn:
            loads = host_loads(conn)
        return [h for h in loads if names is None or h.name in names]

    def move_off(self, route_ids: AbstractSet[UUID], why: str) -> None:
        with transaction(self._engine) as conn:
            take_out_of_service(conn, route_ids, (PhaseName.DRAIN_HOSTS, why))
