"""Phase-level writes: guarded status transitions with their history.

A transition applies only if the entity is still in one of the statuses it
expects (the phase loaded it there; another run may have moved it since).
Rows are locked first, so the guard, the change and the history row agree.
A repeat of the latest history row (same phase, result, error code and
to-status) bumps its `attempts` instead of adding a row. Five statements per
batch, whatever its size.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, distinct_on
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.types import TypeEngine

from workers.adapters.postgres.bulk import any_of, unnest_rows
from workers.adapters.postgres.schema import (
    deployment_history,
    deployments,
    host_history,
    hosts,
    route_history,
    routes,
)
from workers.domain import (
    DeploymentLifecycle,
    DeploymentTransition,
    HostTransition,
    OutcomeBucket,
    RouteStatus,
    RouteTransition,
    StatusTransition,
)
from workers.errors import NeverHealthy, NoHostAvailable

_UUID = PG_UUID(as_uuid=True)
_TEXT = sa.Text()

Statuses = dict[UUID, tuple[str, int]]  # entity id -> (status, retry count; 0 without one)


@dataclass(frozen=True)
class _Applied:
    """A transition whose guard held, with the status the entity really had."""

    change: StatusTransition[Any]
    from_status: str
    retry_count: int = 0

    @property
    def to_status(self) -> str:
        return self.from_status if self.change.to_status is None else self.change.to_status.value

    @property
    def moves(self) -> bool:
        return self.to_status != self.from_status

    @property
    def changes_row(self) -> bool:
        """Whether the entity's own row is written (history is written either way)."""
        return self.moves or self.change.result is OutcomeBucket.ERROR or self.change.explains


def apply_route_transitions(conn: sa.Connection, changes: Sequence[RouteTransition]) -> list[UUID]:
    """Apply each change whose guard holds; returns the ids that were applied.

    A route that moves gets a new `status_changed_at`, and the first time it
    turns healthy, `first_healthy_at`; an error result is kept in `error_data` (a
    later non-error change clears it).
    """
    applied = _guarded(conn, routes, routes.c.status, changes)
    touched = [a for a in applied if a.changes_row]
    if touched:
        v = unnest_rows(
            "v",
            {
                "id": (_UUID, [a.change.entity_id for a in touched]),
                "status": (_TEXT, [a.to_status for a in touched]),
                # JSON text, cast by the server: SQLAlchemy's JSONB array processing cost
                # ~20 us an element, for elements that are nearly all null.
                "error_data": (_TEXT, [_error_data(a.change) for a in touched]),
            },
        )
        conn.execute(
            routes.update()
            .where(routes.c.id == v.c.id)
            .values(
                status=v.c.status,
                error_data=sa.cast(v.c.error_data, JSONB),
                status_changed_at=sa.case(
                    (routes.c.status != v.c.status, sa.func.now()),
                    else_=routes.c.status_changed_at,
                ),
                first_healthy_at=sa.case(
                    (
                        v.c.status == RouteStatus.HEALTHY.value,
                        sa.func.coalesce(routes.c.first_healthy_at, sa.func.now()),
                    ),
                    else_=routes.c.first_healthy_at,
                ),
            )
        )
    _record_history(conn, route_history, route_history.c.route_id, applied)
    end_route_conditions(conn, {a.change.entity_id: a.to_status for a in touched if a.moves})
    return [a.change.entity_id for a in applied]


def apply_deployment_transitions(
    conn: sa.Connection, changes: Sequence[DeploymentTransition]
) -> list[UUID]:
    """Apply each change whose guard holds; returns the ids that were applied.

    `retry_count` counts errors in the current lifecycle and restarts at 0 when
    the lifecycle moves; reaching `destroyed` stamps `destroyed_at`. A change that
    explains (an error, or what it waits for) becomes the deployment's condition;
    a move that does not clears it.
    """
    applied = _guarded(conn, deployments, deployments.c.lifecycle, changes)
    touched = [a for a in applied if a.changes_row]
    if touched:
        v = unnest_rows(
            "v",
            {
                "id": (_UUID, [a.change.entity_id for a in touched]),
                "lifecycle": (_TEXT, [a.to_status for a in touched]),
                "retry_count": (sa.Integer(), [_next_retry_count(a) for a in touched]),
                "explains": (sa.Boolean(), [a.change.explains for a in touched]),
                "reason": (_TEXT, [a.change.error_code or a.change.phase for a in touched]),
                "message": (_TEXT, [a.change.message for a in touched]),
            },
        )
        conn.execute(
            deployments.update()
            .where(deployments.c.id == v.c.id)
            .values(
                lifecycle=v.c.lifecycle,
                retry_count=v.c.retry_count,
                updated_at=sa.func.now(),
                destroyed_at=sa.case(
                    (v.c.lifecycle == DeploymentLifecycle.DESTROYED.value, sa.func.now()),
                    else_=deployments.c.destroyed_at,
                ),
                **_condition(v),
            )
        )
    _record_history(conn, deployment_history, deployment_history.c.deployment_id, applied)
    return [a.change.entity_id for a in applied]


# Ended only by a route reaching a status (`end_route_conditions`), not by a lifecycle move.
_KEPT_ACROSS_MOVES = (NeverHealthy.error_code, NoHostAvailable.error_code)


def _condition(v: Any) -> dict[str, sa.ColumnElement[Any]]:
    """The condition columns: what an explaining change says; cleared by a plain move,
    except "no route became healthy", which only a replica turning healthy ends (a
    deployment cycling through such replicas moves between scaling and ready)."""
    moved = sa.and_(
        v.c.lifecycle != deployments.c.lifecycle,
        deployments.c.condition_reason.not_in(_KEPT_ACROSS_MOVES),
    )

    def column(name: str, said: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.case((v.c.explains, said), (moved, sa.null()), else_=deployments.c[name])

    return {
        "condition_reason": column("condition_reason", v.c.reason),
        "condition_message": column("condition_message", v.c.message),
        "condition_at": column("condition_at", sa.func.now()),
    }


def apply_host_transitions(conn: sa.Connection, changes: Sequence[HostTransition]) -> list[UUID]:
    """Apply each change whose guard holds (a host that moves gets a new `changed_at`),
    with its history row; returns the ids that were applied. A change that explains
    becomes the host's condition (why it is not simply ready); a move that does not
    explain clears it."""
    applied = _guarded(conn, hosts, hosts.c.status, changes)
    touched = [a for a in applied if a.moves or a.change.explains]
    if touched:
        v = unnest_rows(
            "v",
            {
                "id": (_UUID, [a.change.entity_id for a in touched]),
                "status": (_TEXT, [a.to_status for a in touched]),
                "condition": (_TEXT, [_said(a.change) for a in touched]),
            },
        )
        conn.execute(
            hosts.update()
            .where(hosts.c.id == v.c.id)
            .values(
                status=v.c.status,
                condition=v.c.condition,
                changed_at=sa.case(
                    (hosts.c.status != v.c.status, sa.func.now()), else_=hosts.c.changed_at
                ),
            )
        )
    _record_history(conn, host_history, host_history.c.host_id, applied)
    return [a.change.entity_id for a in applied]


def _said(change: HostTransition) -> str | None:
    return change.message if change.explains else None


# Conditions a route ends by reaching a status: a replica provisioned ends "no host has
# room"; a replica healthy ends that and "no route became healthy".
_ENDED_BY = {
    RouteStatus.DEGRADED.value: (NoHostAvailable.error_code,),
    RouteStatus.HEALTHY.value: (NoHostAvailable.error_code, NeverHealthy.error_code),
}


def end_route_conditions(conn: sa.Connection, moved_to: Mapping[UUID, str]) -> None:
    """The conditions of deployments whose routes reached a status that ends them."""
    for status, ended in _ENDED_BY.items():
        route_ids = [route_id for route_id, to in moved_to.items() if to == status]
        if not route_ids:
            continue
        theirs = sa.select(routes.c.deployment_id).where(any_of(routes.c.id, route_ids))
        conn.execute(
            deployments.update()
            .where(deployments.c.id.in_(theirs), deployments.c.condition_reason.in_(ended))
            .values(condition_reason=None, condition_message=None, condition_at=None)
        )


def _guarded(
    conn: sa.Connection,
    table: sa.Table,
    status: sa.Column[Any],
    changes: Sequence[StatusTransition[Any]],
) -> list[_Applied]:
    """The changes (the last one per entity) whose guard holds on the locked rows."""
    current = _lock(conn, table, status, changes)
    last_per_entity = {change.entity_id: change for change in changes}.values()
    values: dict[frozenset[Any], set[str]] = {}  # a batch shares a few `expected` sets
    return [
        _Applied(change, from_status=found[0], retry_count=found[1])
        for change in last_per_entity
        if (found := current.get(change.entity_id)) is not None
        and found[0] in _values_of(change.expected, values)
    ]


def _values_of(statuses: frozenset[Any], seen: dict[frozenset[Any], set[str]]) -> set[str]:
    found = seen.get(statuses)
    if found is None:
        found = seen[statuses] = {status.value for status in statuses}
    return found


def _lock(
    conn: sa.Connection,
    table: sa.Table,
    status: sa.Column[Any],
    changes: Sequence[StatusTransition[Any]],
) -> Statuses:
    """Current status (and retry count, if the table has one) of each entity, row-locked."""
    if not changes:
        return {}
    return _statuses(conn, table, status, {c.entity_id for c in changes}, lock=True)


def route_statuses(conn: sa.Connection, ids: Collection[UUID]) -> Statuses:
    return _statuses(conn, routes, routes.c.status, ids)


def deployment_statuses(conn: sa.Connection, ids: Collection[UUID]) -> Statuses:
    return _statuses(conn, deployments, deployments.c.lifecycle, ids)


def host_statuses(conn: sa.Connection, ids: Collection[UUID]) -> Statuses:
    return _statuses(conn, hosts, hosts.c.status, ids)


def _statuses(
    conn: sa.Connection,
    table: sa.Table,
    status: sa.Column[Any],
    ids: Collection[UUID],
    *,
    lock: bool = False,
) -> Statuses:
    if not ids:
        return {}
    retry = table.c.retry_count if "retry_count" in table.c else sa.literal(0)
    query = sa.select(table.c.id, status, retry).where(any_of(table.c.id, ids))
    if lock:
        query = query.with_for_update()
    return {row[0]: (row[1], row[2]) for row in conn.execute(query)}


def _next_retry_count(applied: _Applied) -> int:
    if applied.moves:
        return 0
    return applied.retry_count + (applied.change.result is OutcomeBucket.ERROR)


def _error_data(change: StatusTransition[Any]) -> str | None:
    if change.result is not OutcomeBucket.ERROR:
        return None
    return json.dumps(
        {"phase": change.phase, "error_code": change.error_code, "message": change.message}
    )


def _record_history(
    conn: sa.Connection, history: sa.Table, entity: sa.Column[Any], applied: Sequence[_Applied]
) -> None:
    if not applied:
        return
    latest = {
        row.entity: row
        for row in conn.execute(
            sa.select(
                entity.label("entity"),
                history.c.id,
                history.c.phase,
                history.c.result,
                history.c.error_code,
                history.c.to_status,
            )
            .where(any_of(entity, {a.change.entity_id for a in applied}))
            .ext(distinct_on(entity))
            .order_by(entity, history.c.id.desc())
        )
    }
    repeats = [(latest[a.change.entity_id].id, a) for a in applied if _repeats(latest, a)]
    new = [a for a in applied if not _repeats(latest, a)]
    if repeats:
        _bump_attempts(conn, history, repeats)
    if new:
        _insert_history(conn, history, entity, new)


def _repeats(latest: dict[UUID, Any], applied: _Applied) -> bool:
    row = latest.get(applied.change.entity_id)
    return row is not None and (row.phase, row.result, row.error_code, row.to_status) == (
        applied.change.phase,
        applied.change.result.value,
        applied.change.error_code,
        applied.to_status,
    )


def _bump_attempts(
    conn: sa.Connection, history: sa.Table, repeats: Sequence[tuple[int, _Applied]]
) -> None:
    v = unnest_rows(
        "v",
        {
            "id": (sa.BigInteger(), [history_id for history_id, _ in repeats]),
            "message": (_TEXT, [a.change.message for _, a in repeats]),
        },
    )
    conn.execute(
        history.update()
        .where(history.c.id == v.c.id)
        .values(attempts=history.c.attempts + 1, message=v.c.message, updated_at=sa.func.now())
    )


def _insert_history(
    conn: sa.Connection, history: sa.Table, entity: sa.Column[Any], new: Sequence[_Applied]
) -> None:
    columns: dict[str, tuple[TypeEngine[Any], Sequence[Any]]] = {
        "entity": (_UUID, [a.change.entity_id for a in new]),
        "phase": (_TEXT, [a.change.phase for a in new]),
        "from_status": (_TEXT, [a.from_status for a in new]),
        "to_status": (_TEXT, [a.to_status for a in new]),
        "result": (_TEXT, [a.change.result.value for a in new]),
        "error_code": (_TEXT, [a.change.error_code for a in new]),
        "message": (_TEXT, [a.change.message for a in new]),
    }
    if "revision_failure" in history.c:
        columns["revision_failure"] = (sa.Boolean(), [a.change.revision_failure for a in new])
    v = unnest_rows("v", columns)
    names = [entity.name, *list(columns)[1:]]
    conn.execute(history.insert().from_select(names, sa.select(*v.c)))
