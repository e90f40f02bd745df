"""Hosts in PostgreSQL: their load (for placement), giving up a lost host's sessions, and
the routes on a host being drained; what the controller itself could see (`observe`).

A session is on the host the controller placed it on (`placed_on`), or, unplaced, on
the one whose agent claimed it (`runner`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from collections.abc import Set as AbstractSet
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from workers.adapters.postgres import rebalance
from workers.adapters.postgres.engine import transaction
from workers.adapters.postgres.host_loads import host_loads
from workers.adapters.postgres.route_moves import take_out_of_service
from workers.adapters.postgres.schema import (
    controller_watch,
    deployments,
    hosts,
    routes,
    sessions,
)
from workers.adapters.postgres.terms import (
    LEAVING_HOST_STATUSES,
    LIVE_SESSION,
    SESSION_HOST,
    TARGET_REPLICAS,
)
from workers.adapters.postgres.transitions import apply_host_transitions, apply_route_transitions
from workers.domain import (
    ACTIVE_ROUTE_STATUSES,
    HOST_INTENTS,
    ControllerView,
    FleetView,
    HostInfo,
    HostRoute,
    HostStatus,
    HostTransition,
    OutcomeBucket,
    ReplicaMove,
    RouteStatus,
    RouteTransition,
    SessionStatus,
)
from workers.errors import HostLost
from workers.phase_names import PhaseName

_LIVE = LIVE_SESSION
_ACTIVE = [s.value for s in ACTIVE_ROUTE_STATUSES]
_GIVEN_UP = [*_ACTIVE, RouteStatus.DRAINING.value, RouteStatus.TERMINATING.value]


def give_up_sessions_of(conn: sa.Connection, names: Collection[str], why: str) -> int:
    """A lost host's live sessions become LOST and their routes terminated at once (out of
    service discovery at the next sync, no drain: nothing on it is trusted; the route's
    deployment gets a replacement). Returns how many routes were given up."""
    return give_up_sessions(conn, SESSION_HOST.in_(list(names)), why, PhaseName.CHECK_HOSTS)


def give_up_sessions(
    conn: sa.Connection, which: sa.ColumnElement[bool], why: str, phase: str,
    error_code: str = "host_lost",
) -> int:  # fmt: skip
    """The live sessions `which` selects become LOST and their routes terminated at once
    (a replacement starts elsewhere; not a failure of their revision)."""
    given_up = conn.execute(
        sessions.update()
        .where(which, _LIVE)
        .values(status=SessionStatus.LOST.value, terminated_at=sa.func.now(),
                updated_at=sa.func.now())
        .returning(sessions.c.route_id)
    ).scalars().all()  # fmt: skip
    changes = [
        RouteTransition(
            entity_id=route_id,
            expected=frozenset(RouteStatus(s) for s in _GIVEN_UP),
            to_status=RouteStatus.TERMINATED,
            phase=phase,
            result=OutcomeBucket.ERROR,
            error_code=error_code,
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
            sa.or_(hosts.c.status.is_(None), hosts.c.status.not_in(LEAVING_HOST_STATUSES)),
        )
        .scalar_subquery()
    )
    target = TARGET_REPLICAS
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


_HOSTS_WATCH = "hosts"  # the controller_watch row of `hosts.check`
_NOT_LOST = frozenset(HostStatus) - {HostStatus.LOST}


def _seconds_since(at: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.func.extract("epoch", sa.func.now() - at)


class PostgresHostRegistry:
    """`HostRegistry` on PostgreSQL: what the host phases read and do."""

    def __init__(self, *, engine: sa.Engine) -> None:
        self._engine = engine

    def observe(self, blind_after_s: float) -> ControllerView:
        """The controller looks now; a look later than `blind_after_s` after the one before
        ends a blind spell (its database or its runs were gone), and its watch restarts."""
        now, watch = sa.func.now(), controller_watch.c
        gap = sa.func.make_interval(0, 0, 0, 0, 0, 0, blind_after_s)
        statement = (
            insert(controller_watch)
            .values(name=_HOSTS_WATCH, last_seen_at=now, seeing_since=now)
            .on_conflict_do_update(
                index_elements=[watch.name],
                set_={"last_seen_at": now, "seeing_since": sa.case(
                    (now - watch.last_seen_at > gap, now), else_=watch.seeing_since)},
            )
            .returning(_seconds_since(watch.seeing_since), _seconds_since(watch.last_given_up_at))
        )  # fmt: skip
        with transaction(self._engine) as conn:
            seeing_for_s, since_give_up_s = conn.execute(statement).one()
        return ControllerView(
            seeing_for_s=float(seeing_for_s),
            since_last_give_up_s=None if since_give_up_s is None else float(since_give_up_s),
        )

    def give_up_hosts(self, silent_s: Mapping[str, float]) -> dict[str, int]:
        """Each named host lost, in one transaction with everything that follows from it:
        its sessions LOST, its routes out of service, its row `lost` with a history row,
        and the time of the give-up (the next waits `give_up_interval_s`). A failure
        anywhere leaves the host as it was: never given-up sessions on a host the
        placer still fills. How many routes each host gave up."""
        given_up: dict[str, int] = {}
        with transaction(self._engine) as conn:
            for name, silent in silent_s.items():
                row = conn.execute(
                    sa.select(hosts.c.id, hosts.c.status)
                    .where(hosts.c.name == name).with_for_update()
                ).one_or_none()  # fmt: skip
                if row is None or row.status == HostStatus.LOST.value:
                    continue
                why = HostLost(name, silent)
                given_up[name] = give_up_sessions_of(conn, [name], str(why))
                apply_host_transitions(conn, [HostTransition(
                    entity_id=row.id, expected=_NOT_LOST, to_status=HostStatus.LOST,
                    phase=PhaseName.CHECK_HOSTS, result=OutcomeBucket.ERROR,
                    error_code=why.error_code, message=f"{type(why).__name__}: {why}",
                )])  # fmt: skip
            if given_up:
                conn.execute(
                    controller_watch.update()
                    .where(controller_watch.c.name == _HOSTS_WATCH)
                    .values(last_given_up_at=sa.func.now())
                )
        return given_up

    def restore_hosts(self, names: AbstractSet[str], why: str) -> list[str]:
        """Unreachable hosts heard again go back to what their operator asked (ready,
        cordoned, draining), with a history row; the names restored."""
        with transaction(self._engine) as conn:
            unreachable = HostStatus.UNREACHABLE
            return restore_to_intent(conn, names, unreachable, PhaseName.CHECK_HOSTS, why)

    def note_probes(self, failing: Mapping[str, str], cleared: AbstractSet[str]) -> None:
        """Placement leaves out hosts whose probes fail (`probes_failing_since`); their
        condition says why while they are otherwise ready."""
        alive = hosts.c.status.in_([s.value for s in HOST_INTENTS])
        with transaction(self._engine) as conn:
            for name, why in failing.items():
                conn.execute(
                    hosts.update()
                    .where(hosts.c.name == name, hosts.c.probes_failing_since.is_(None))
                    .values(probes_failing_since=sa.func.now(),
                            condition=sa.case((alive, why), else_=hosts.c.condition))
                )  # fmt: skip
            if cleared:
                conn.execute(
                    hosts.update()
                    .where(hosts.c.name.in_(sorted(cleared)))
                    .values(probes_failing_since=None,
                            condition=sa.case((alive, None), else_=hosts.c.condition))
                )  # fmt: skip

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

    def fetch_fleet(self) -> FleetView:
        with transaction(self._engine) as conn:
            return rebalance.fleet_view(conn)

    def start_move(self, move: ReplicaMove) -> bool:
        with transaction(self._engine) as conn:
            return rebalance.start_move(conn, move)

    def finish_moves(self, abandon_after_s: float) -> list[tuple[str, str]]:
        with transaction(self._engine) as conn:
            return rebalance.finish_moves(conn, abandon_after_s)

    def move_off(self, route_ids: AbstractSet[UUID], why: str) -> None:
        with transaction(self._engine) as conn:
            take_out_of_service(conn, route_ids, (PhaseName.DRAIN_HOSTS, why))


def restore_to_intent(
    conn: sa.Connection, names: AbstractSet[str], from_status: HostStatus, phase: str, why: str
) -> list[str]:
    """Hosts named, still in `from_status`, back to their intent, with a history row (the
    controller, for an unreachable host heard again; an agent, for its lost host fenced)."""
    found = conn.execute(
        sa.select(hosts.c.id, hosts.c.name, hosts.c.intent)
        .where(hosts.c.name.in_(sorted(names)), hosts.c.status == from_status.value)
        .with_for_update()
    ).all()  # fmt: skip
    changes = [
        HostTransition(entity_id=row.id, expected=frozenset({from_status}),
                       to_status=HostStatus(row.intent), phase=phase,
                       result=OutcomeBucket.SUCCESS, message=why)
        for row in found
    ]  # fmt: skip
    applied = set(apply_host_transitions(conn, changes)) if changes else set()
    return [row.name for row in found if row.id in applied]
