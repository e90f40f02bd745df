"""Scale to zero in PostgreSQL: going to zero by idleness, waking, and what the proxies
do with a request for a deployment that has no replica (its endpoint mode)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID as PG_UUID

from workers.adapters.postgres.bulk import unnest_rows
from workers.adapters.postgres.schema import deployments, routes, sessions
from workers.adapters.postgres.terms import TARGET_REPLICAS
from workers.domain import (
    LIVE_LIFECYCLES,
    AutoscaleMode,
    DeploymentLifecycle,
    EndpointMode,
    EndpointState,
)
from workers.errors import NeverHealthy, NoHostAvailable
from workers.policies.crash_loop import WINDOW_S

# A deployment whose replicas cannot start now: its requests are refused, saying why.
_CANNOT_START = (NoHostAvailable.error_code, NeverHealthy.error_code)
CRASH_LOOP_EXITS = 2  # exits in the window: the back-off holds its next start


def scale_to_zero(conn: sa.Connection, counts: Mapping[UUID, int]) -> set[UUID]:
    """Ready deployments not at zero yet go to 0, remembering `counts` (idle time counts
    from now: the wake reports how long it stayed at zero)."""
    at = _counts("z", counts)
    gone = (
        deployments.update()
        .where(
            deployments.c.id == at.c.id,
            deployments.c.lifecycle == DeploymentLifecycle.READY.value,
            deployments.c.zeroed_from.is_(None),
        )
        .values(zeroed_from=at.c.count, replica_count=0, desired_replica_count=None,
                idle_counts_from=sa.func.now(), updated_at=sa.func.now())
        .returning(deployments.c.id)
    )  # fmt: skip
    return set(conn.execute(gone).scalars())


def restore_from_zero(conn: sa.Connection, counts: Mapping[UUID, int]) -> set[UUID]:
    """Deployments still at zero by idleness back to `counts` (the first wake wins)."""
    at = _counts("w", counts)
    woken = (
        deployments.update()
        .where(deployments.c.id == at.c.id, deployments.c.zeroed_from.is_not(None))
        .values(zeroed_from=None, replica_count=at.c.count, desired_replica_count=None,
                idle_counts_from=sa.func.now(), updated_at=sa.func.now())
        .returning(deployments.c.id)
    )  # fmt: skip
    return set(conn.execute(woken).scalars())


def endpoint_modes(conn: sa.Connection) -> dict[UUID, EndpointState]:
    """What proxies do with a request for a live deployment without a replica to send it
    to: refuse at once (an operator asked for 0); refuse at once saying why (it asks for
    replicas that cannot start now: a crash loop, no room, never healthy: holding its
    requests for a wake would only make them time out); or hold it for a wake (scale to
    zero). The others answer 503 "no healthy replica"."""
    live = deployments.c.lifecycle.in_([lc.value for lc in LIVE_LIFECYCLES])
    target = TARGET_REPLICAS
    operator_zero = sa.and_(target == 0, deployments.c.zeroed_from.is_(None))
    exits = _recent_exits()
    wakes = sa.or_(  # scale to zero, or its traffic autoscaler may go to zero
        deployments.c.scale_to_zero_after_s.is_not(None),
        deployments.c.zeroed_from.is_not(None),
        sa.and_(deployments.c.autoscale_mode != AutoscaleMode.OFF.value,
                deployments.c.autoscale_min_replicas == 0),
    )  # fmt: skip
    query = (
        sa.select(deployments.c.id, operator_zero.label("operator_zero"), target.label("target"),
                  deployments.c.condition_reason, deployments.c.condition_message,
                  wakes.label("wakes"), exits.c.count.label("exits"))
        .outerjoin(exits, exits.c.deployment_id == deployments.c.id)
        .where(live)
    )  # fmt: skip
    modes = {row.id: _mode(row) for row in conn.execute(query)}
    return {deployment_id: mode for deployment_id, mode in modes.items() if mode is not None}


def _mode(row: sa.Row[Any]) -> EndpointState | None:
    if row.operator_zero:
        return EndpointState(EndpointMode.OPERATOR_ZERO)
    if row.target and row.condition_reason in _CANNOT_START:
        return EndpointState(EndpointMode.UNAVAILABLE, row.condition_message or "")
    if row.target and (row.exits or 0) >= CRASH_LOOP_EXITS:
        return EndpointState(
            EndpointMode.UNAVAILABLE,
            f"its replicas keep exiting: {row.exits} "
            f"sessions ended on their own in the last {WINDOW_S / 60:g} minutes",
        )
    if row.wakes:
        return EndpointState(EndpointMode.WAKES)
    return None


def _recent_exits() -> Any:
    """Per deployment: sessions of its current revision that exited on their own lately."""
    window = sa.func.make_interval(0, 0, 0, 0, 0, 0, WINDOW_S)
    return (
        sa.select(routes.c.deployment_id, sa.func.count().label("count"))
        .join(sessions, sessions.c.route_id == routes.c.id)
        .join(deployments, deployments.c.id == routes.c.deployment_id)
        .where(sessions.c.status == "ERROR", sessions.c.terminated_at > sa.func.now() - window,
               routes.c.revision.is_not_distinct_from(deployments.c.current_revision))
        .group_by(routes.c.deployment_id)
        .subquery()
    )  # fmt: skip


def _counts(name: str, counts: Mapping[UUID, int]) -> sa.TableValuedAlias:
    """`counts` as rows (id, count) to join an update against."""
    return unnest_rows(name, {"id": (PG_UUID(as_uuid=True), list(counts)),
                              "count": (sa.Integer(), list(counts.values()))})  # fmt: skip
