"""Scale to zero in PostgreSQL: going to zero by idleness, waking, and what the proxies
do with a request for a deployment that has no replica (its endpoint mode)."""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID as PG_UUID

from workers.adapters.postgres.bulk import unnest_rows
from workers.adapters.postgres.schema import deployments
from workers.domain import LIVE_LIFECYCLES, DeploymentLifecycle, EndpointMode


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


def endpoint_modes(conn: sa.Connection) -> dict[UUID, str]:
    """Live deployments whose requests wait for a wake, or are refused at once (an
    operator asked for 0)."""
    live = deployments.c.lifecycle.in_([lc.value for lc in LIVE_LIFECYCLES])
    operator_zero = sa.and_(
        sa.func.coalesce(deployments.c.desired_replica_count, deployments.c.replica_count) == 0,
        deployments.c.zeroed_from.is_(None),
    )
    mode = sa.case(
        (operator_zero, EndpointMode.OPERATOR_ZERO.value),
        (deployments.c.scale_to_zero_after_s.is_not(None), EndpointMode.WAKES.value),
    )
    query = sa.select(deployments.c.id, mode.label("mode")).where(live)
    return {row.id: row.mode for row in conn.execute(query) if row.mode is not None}


def _counts(name: str, counts: Mapping[UUID, int]) -> sa.TableValuedAlias:
    """`counts` as rows (id, count) to join an update against."""
    return unnest_rows(name, {"id": (PG_UUID(as_uuid=True), list(counts)),
                              "count": (sa.Integer(), list(counts.values()))})  # fmt: skip
