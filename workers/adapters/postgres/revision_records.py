"""A deployment's revisions in PostgreSQL, as an operator makes them: the next revision,
the old ones forgotten, and a rollout to one started (or, at zero, made current)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from enum import StrEnum
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from workers.adapters.postgres.operator_moves import operator_move
from workers.adapters.postgres.rollouts import REVISION_COLUMNS, make_current
from workers.adapters.postgres.schema import deployment_revisions, deployments
from workers.adapters.postgres.terms import TARGET_REPLICAS
from workers.adapters.postgres.transitions import apply_deployment_transitions
from workers.domain import DeploymentLifecycle, RolloutSpec

SCALING, READY, DEPLOYING = (
    DeploymentLifecycle.SCALING,
    DeploymentLifecycle.READY,
    DeploymentLifecycle.DEPLOYING,
)


class RolloutStart(StrEnum):
    STARTED = "started"
    CURRENT_AT_ZERO = "current at zero"  # nothing ran: the next wake starts it
    REFUSED = "refused"  # its lifecycle allows no rollout now


def create_revision(
    conn: sa.Connection, deployment_id: UUID, changes: Mapping[str, Any], keep: int
) -> int | None:
    """The next revision: the current one with `changes` (column -> value); None when
    they change nothing. Revisions beyond the newest `keep` (and the current and
    deploying ones) are forgotten."""
    deployment = conn.execute(
        sa.select(deployments.c.current_revision, deployments.c.deploying_revision)
        .where(deployments.c.id == deployment_id)
        .with_for_update()
    ).one()
    base = _revision_row(conn, deployment_id, deployment.current_revision)
    changed = sorted(name for name, value in changes.items() if base[name] != value)
    if not changed:
        return None
    number = _next_revision_number(conn, deployment_id)
    conn.execute(
        deployment_revisions.insert().values(
            {**base, **changes, "number": number, "changed": changed}
        )
    )
    kept = {deployment.current_revision, deployment.deploying_revision, number}
    _forget_old_revisions(conn, deployment_id, keep, kept)
    return number


def start_rollout(
    conn: sa.Connection, deployment_id: UUID, revision: int, spec: RolloutSpec, what: str
) -> RolloutStart:
    """Move a ready (or scaling, or deploying: superseded) deployment to `revision`
    with `spec`. At zero replicas (scaled to zero, or an operator's 0) nothing runs
    to roll: the revision becomes current at once, and the next wake starts it."""
    target = conn.execute(
        sa.select(TARGET_REPLICAS, deployments.c.lifecycle)
        .where(deployments.c.id == deployment_id)
        .with_for_update()
    ).one_or_none()
    if target is not None and target[0] == 0 and target[1] != DEPLOYING.value:
        return _current_at_zero(conn, deployment_id, revision, what)
    change = operator_move(deployment_id, {READY, SCALING, DEPLOYING}, DEPLOYING, what)
    if not apply_deployment_transitions(conn, [change]):
        return RolloutStart.REFUSED
    conn.execute(
        deployments.update()
        .where(deployments.c.id == deployment_id)
        .values(
            deploying_revision=revision,
            rollout_strategy=spec.strategy.value,
            rollout_max_surge=spec.max_surge,
            rollout_max_unavailable=spec.max_unavailable,
            rollout_promote_delay_s=spec.promote_delay_s,
            rollout_auto_promote=spec.auto_promote,
            rollout_failure_threshold=spec.failure_threshold,
            rollout_progress_deadline_s=spec.progress_deadline_s,
            rollout_desired=TARGET_REPLICAS,
            rollout_started_at=sa.func.now(),
            rollout_all_new_healthy_at=None,
            rollout_promoted_at=None,
            rollout_promote_requested=False,
            rollout_canary_steps=",".join(str(step) for step in spec.canary_steps),
            rollout_canary_interval_s=spec.canary_interval_s,
            rollout_max_error_rate=spec.max_error_rate,
            rollout_min_requests=spec.min_requests,
            rollout_max_p95_latency_ratio=spec.max_p95_latency_ratio,
            rollout_step=None,
            rollout_step_started_at=None,
        )
    )
    return RolloutStart.STARTED


def _current_at_zero(
    conn: sa.Connection, deployment_id: UUID, revision: int, what: str
) -> RolloutStart:
    """A deployment at zero takes `revision` as current without a rollout (its default
    surge of 25 % of nothing was 0, and the rollout refused itself at once)."""
    said = f"{what}: at zero, revision {revision} is current; the next wake starts it"
    stay = operator_move(deployment_id, {READY, SCALING}, None, said)
    if not apply_deployment_transitions(conn, [replace(stay, explains=True)]):
        return RolloutStart.REFUSED
    make_current(conn, deployment_id, revision)
    return RolloutStart.CURRENT_AT_ZERO


def _revision_row(conn: sa.Connection, deployment_id: UUID, number: int) -> dict[str, Any]:
    row = (
        conn.execute(
            sa.select(*(deployment_revisions.c[name] for name in REVISION_COLUMNS)).where(
                deployment_revisions.c.deployment_id == deployment_id,
                deployment_revisions.c.number == number,
            )
        )
        .mappings()
        .one()
    )
    return {"deployment_id": deployment_id, **row}


def _next_revision_number(conn: sa.Connection, deployment_id: UUID) -> int:
    highest = conn.execute(
        sa.select(sa.func.max(deployment_revisions.c.number)).where(
            deployment_revisions.c.deployment_id == deployment_id
        )
    ).scalar()
    return int(highest or 0) + 1


def _forget_old_revisions(
    conn: sa.Connection, deployment_id: UUID, keep: int, kept: set[int | None]
) -> None:
    newest = (
        sa.select(deployment_revisions.c.number)
        .where(deployment_revisions.c.deployment_id == deployment_id)
        .order_by(deployment_revisions.c.number.desc())
        .limit(keep)
    )
    conn.execute(
        deployment_revisions.delete().where(
            deployment_revisions.c.deployment_id == deployment_id,
            deployment_revisions.c.number.not_in(newest),
            deployment_revisions.c.number.not_in([n for n in kept if n is not None]),
        )
    )
