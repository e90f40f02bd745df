"""The traffic autoscaler in PostgreSQL: the deployments it tracks, how many replicas each
has serving, what the engines hold, and saving each decision.

A decision's count goes where the deployment's count is read from: a ready deployment's
`desired_replica_count` (0: it goes to zero the way scale to zero does, and a request
wakes it), a deployment being rolled out's `rollout_desired` (the new revision's count;
a history row says why). What the autoscaler remembers (`autoscale_state`) and its last
view (`autoscale_view`: inputs, decision) are written every time.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from workers.adapters.postgres.bulk import any_of
from workers.adapters.postgres.rows import DEPLOYMENT_COLUMNS, deployment_from_row
from workers.adapters.postgres.schema import deployment_history, deployments, routes
from workers.adapters.postgres.terms import LEAVING_ROUTE, TARGET_REPLICAS
from workers.adapters.postgres.zero import scale_to_zero
from workers.domain import (
    AutoscaleDecision,
    AutoscaleMode,
    DeploymentInfo,
    DeploymentLifecycle,
    RouteStatus,
)
from workers.phase_names import PhaseName

# What the engines hold, as vLLM names it on each replica's /metrics.
ENGINE_METRICS = ("vllm:num_requests_running", "vllm:num_requests_waiting")
_TRACKED = [DeploymentLifecycle.READY.value, DeploymentLifecycle.DEPLOYING.value]


def tracked(conn: sa.Connection) -> list[DeploymentInfo]:
    """Ready deployments, and deployments being rolled out, whose autoscaler is on."""
    query = (
        sa.select(*DEPLOYMENT_COLUMNS)
        .where(deployments.c.autoscale_mode != AutoscaleMode.OFF.value,
               deployments.c.lifecycle.in_(_TRACKED))
        .order_by(deployments.c.created_at, deployments.c.id)
    )  # fmt: skip
    return [deployment_from_row(row) for row in conn.execute(query).mappings()]


def serving(conn: sa.Connection, deployment_ids: Collection[UUID]) -> dict[UUID, int]:
    """Healthy replicas per deployment that are not leaving (moving, or on a leaving host)."""
    query = (
        sa.select(routes.c.deployment_id, sa.func.count())
        .where(any_of(routes.c.deployment_id, deployment_ids),
               routes.c.status == RouteStatus.HEALTHY.value, sa.not_(LEAVING_ROUTE))
        .group_by(routes.c.deployment_id)
    )  # fmt: skip
    return {deployment_id: int(count) for deployment_id, count in conn.execute(query)}


def engine_load(
    metrics: Mapping[UUID, Mapping[str, float]], serving_now: Mapping[UUID, int]
) -> dict[UUID, float]:
    """Requests the engines hold, per deployment: the replicas' average (what the collector
    writes) times the replicas serving."""
    return {
        deployment_id: sum(values.get(name, 0.0) for name in ENGINE_METRICS)
        * serving_now.get(deployment_id, 0)
        for deployment_id, values in metrics.items()
    }


def save(
    conn: sa.Connection, decisions: Mapping[UUID, AutoscaleDecision], now: Any
) -> dict[UUID, tuple[str, int]]:
    """Each decision saved (see the module docstring); the deployments whose count changed,
    each with its name and the count it had."""
    if not decisions:
        return {}
    rows = conn.execute(
        sa.select(deployments.c.id, deployments.c.name, deployments.c.lifecycle,
                  TARGET_REPLICAS.label("target"), deployments.c.rollout_desired)
        .where(any_of(deployments.c.id, decisions))
        .with_for_update()
    ).all()  # fmt: skip
    changed = {}
    for row in rows:
        decision = decisions[row.id]
        view = {"desired": decision.desired, "panicking": decision.panicking,
                "said": decision.said, "at": now}  # fmt: skip
        conn.execute(deployments.update().where(deployments.c.id == row.id).values(
            autoscale_state=decision.state.to_json(), autoscale_view=view))  # fmt: skip
        if _count_changed(conn, row, decision):
            deploying = row.lifecycle == DeploymentLifecycle.DEPLOYING.value
            changed[row.id] = (row.name, row.rollout_desired if deploying else row.target)
    return changed


def _count_changed(conn: sa.Connection, row: Any, decision: AutoscaleDecision) -> bool:
    deploying = row.lifecycle == DeploymentLifecycle.DEPLOYING.value
    now_count = row.rollout_desired if deploying else row.target
    if decision.desired == now_count:
        return False
    if deploying:
        conn.execute(deployments.update().where(deployments.c.id == row.id).values(
            rollout_desired=decision.desired, desired_replica_count=decision.desired))  # fmt: skip
        conn.execute(deployment_history.insert().values(
            deployment_id=row.id, phase=PhaseName.AUTOSCALE, from_status=row.lifecycle,
            to_status=row.lifecycle, result="success",
            message=f"autoscaled (the new revision's count): {decision.said}"))  # fmt: skip
    elif decision.desired == 0:
        scale_to_zero(conn, {row.id: row.target})
    else:
        conn.execute(deployments.update().where(deployments.c.id == row.id)
                     .values(desired_replica_count=decision.desired))  # fmt: skip
    return True
