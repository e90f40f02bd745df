"""Rollouts in PostgreSQL: the state a rollout step is planned from, and applying that step.

A deployment in `deploying` has a `deploying_revision` and the rollout's
settings in its `rollout_*` columns; its new revision's failures are read in
`revision_failures`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PG_UUID

from workers.adapters.postgres.bulk import any_of, unnest_rows
from workers.adapters.postgres.revision_failures import revision_failures
from workers.adapters.postgres.route_moves import insert_routes, take_out_of_service
from workers.adapters.postgres.rows import ROUTE_COLUMNS, route_from_row
from workers.adapters.postgres.schema import (
    deployment_history,
    deployment_revisions,
    deployments,
    routes,
)
from workers.domain import (
    RevisionFailures,
    RolloutOutcome,
    RolloutProgress,
    RolloutSpec,
    RolloutState,
    RolloutStep,
    RolloutStrategy,
    RouteCreator,
    TrafficStatus,
)
from workers.phase_names import PhaseName
from workers.policies.rollout_notes import describe_failures
from workers.policies.rollouts import TAKING_PART

PHASE = PhaseName.ROLLOUT
_DEFAULTS = RolloutSpec()  # where a column was left empty
_TAKING_PART = sorted(status.value for status in TAKING_PART)
REVISION_COLUMNS = (
    "image",
    "runtime_variant",
    "model_path",
    "resources",
    "environ",
    "startup_command",
    "health_check_path",
    "health_check_interval_s",
    "health_check_max_retries",
    "health_check_initial_delay_s",
    "health_check_timeout_s",
    "health_check_expected_status",
)


def load_states(conn: sa.Connection, deployment_ids: Collection[UUID]) -> dict[UUID, RolloutState]:
    """The state of each rollout in progress among `deployment_ids`."""
    rows = conn.execute(
        sa.select(deployments, sa.func.now().label("db_now")).where(
            any_of(deployments.c.id, deployment_ids),
            deployments.c.lifecycle == "deploying",
            deployments.c.deploying_revision.is_not(None),
        )
    ).mappings()
    found = {row["id"]: row for row in rows}
    if not found:
        return {}
    taking_part = _routes_taking_part(conn, found)
    failures = revision_failures(conn, found)
    return {
        deployment_id: _state(row, taking_part.get(deployment_id, []), failures[deployment_id])
        for deployment_id, row in found.items()
    }


def apply_step(
    conn: sa.Connection, state: RolloutState, deployment_id: UUID, step: RolloutStep
) -> bool:
    """Start, weigh, drain and switch routes as `step` says; close the rollout when it
    ended. Only if no step was applied since `state` was read (False: another run got
    there first, and this one does nothing: never two surges)."""
    taken = conn.execute(
        deployments.update()
        .where(deployments.c.id == deployment_id,
               deployments.c.rollout_steps_applied == state.steps_applied)
        .values(rollout_steps_applied=deployments.c.rollout_steps_applied + 1)
    ).rowcount  # fmt: skip
    if not taken:
        return False
    _move_routes(conn, state, deployment_id, step)
    # Read by blue-green's promote delay and by how long a judgment may hold the last old route.
    all_healthy = step.progress is not None and step.progress.new_healthy >= state.desired
    _track_all_new_healthy(conn, deployment_id, all_healthy)
    if step.canary_step is not None:
        conn.execute(deployments.update().where(deployments.c.id == deployment_id)
                     .values(rollout_step=step.canary_step,
                             rollout_step_started_at=sa.func.now()))  # fmt: skip
    if step.outcome is RolloutOutcome.IN_PROGRESS and step.progress is not None:
        _note_progress(conn, deployment_id, step.progress)
    if step.outcome is RolloutOutcome.FINISHED:
        make_current(conn, deployment_id, state.new_revision)
    elif step.outcome is RolloutOutcome.FAILED:
        _roll_back(conn, deployment_id, state.new_revision, step.summary)
    if step.acts and step.outcome is not RolloutOutcome.FAILED:  # a rollback's row: the phase's
        _progress_row(conn, deployment_id, step)
    return True


def _move_routes(
    conn: sa.Connection, state: RolloutState, deployment_id: UUID, step: RolloutStep
) -> None:
    new = state.new_revision
    if step.create:
        creator = RouteCreator(deployment_id, traffic_ratio=step.create_weight, revision=new,
                               in_traffic=step.create_in_traffic)  # fmt: skip
        insert_routes(conn, [creator] * step.create)
    if step.weights:
        _weigh(conn, step.weights)
    if step.promote:
        _promote(conn, deployment_id, new)
    if step.drain:
        failed = step.outcome is RolloutOutcome.FAILED
        why = "rolled back" if failed else f"revision {new} rolls out"
        take_out_of_service(conn, step.drain, (PHASE, why))


def _state(row: Any, taking_part: list[Any], failures: RevisionFailures) -> RolloutState:
    spec = RolloutSpec(
        strategy=RolloutStrategy(row["rollout_strategy"] or _DEFAULTS.strategy.value),
        max_surge=row["rollout_max_surge"] or _DEFAULTS.max_surge,
        max_unavailable=row["rollout_max_unavailable"] or _DEFAULTS.max_unavailable,
        promote_delay_s=row["rollout_promote_delay_s"] or _DEFAULTS.promote_delay_s,
        auto_promote=row["rollout_auto_promote"] is not False,
        failure_threshold=row["rollout_failure_threshold"] or _DEFAULTS.failure_threshold,
        progress_deadline_s=row["rollout_progress_deadline_s"] or _DEFAULTS.progress_deadline_s,
        canary_steps=_steps(row["rollout_canary_steps"]),
        canary_interval_s=row["rollout_canary_interval_s"] or _DEFAULTS.canary_interval_s,
        max_error_rate=_or(row["rollout_max_error_rate"], _DEFAULTS.max_error_rate),
        min_requests=row["rollout_min_requests"] or _DEFAULTS.min_requests,
        max_p95_latency_ratio=row["rollout_max_p95_latency_ratio"],
    )
    now: datetime = row["db_now"]
    healthy_at = row["rollout_all_new_healthy_at"]
    step_at = row["rollout_step_started_at"]
    judged_from = step_at or row["rollout_started_at"]
    return RolloutState(
        desired=row["rollout_desired"]
        if row["rollout_desired"] is not None
        else row["replica_count"],
        old_revision=row["current_revision"],
        new_revision=row["deploying_revision"],
        spec=spec,
        routes=[route_from_row(r) for r in taking_part],
        failures=failures.count,
        elapsed_s=(now - (row["rollout_started_at"] or now)).total_seconds(),
        promoted=row["rollout_promoted_at"] is not None,
        promote_requested=row["rollout_promote_requested"],
        all_new_healthy_for_s=None if healthy_at is None else (now - healthy_at).total_seconds(),
        evidence=describe_failures(failures),
        canary_step=row["rollout_step"],
        step_for_s=0.0 if step_at is None else (now - step_at).total_seconds(),
        judging_since_s=None if judged_from is None else judged_from.timestamp(),
        steps_applied=row["rollout_steps_applied"],
    )


def _steps(text: str | None) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",")) if text else _DEFAULTS.canary_steps


def _or(value: Any, default: Any) -> Any:
    """`value` unless the column was left empty (0 is a value here)."""
    return default if value is None else value


def _weigh(conn: sa.Connection, weights: Mapping[UUID, float]) -> None:
    """Each route's share of its deployment's traffic (the proxies read it when the
    routes are published again)."""
    given = unnest_rows("w", {"id": (PG_UUID(as_uuid=True), list(weights)),
                              "ratio": (sa.Float(), list(weights.values()))})  # fmt: skip
    conn.execute(routes.update().where(routes.c.id == given.c.id)
                 .values(traffic_ratio=given.c.ratio))  # fmt: skip


def _routes_taking_part(conn: sa.Connection, found: dict[UUID, Any]) -> dict[UUID, list[Any]]:
    grouped: dict[UUID, list[Any]] = {}
    query = (
        sa.select(*ROUTE_COLUMNS)
        .where(any_of(routes.c.deployment_id, found), routes.c.status.in_(_TAKING_PART))
        .order_by(routes.c.created_at, routes.c.id)
    )
    for route in conn.execute(query).mappings():
        grouped.setdefault(route["deployment_id"], []).append(route)
    return grouped


def _promote(conn: sa.Connection, deployment_id: UUID, new: int) -> None:
    conn.execute(
        routes.update()
        .where(
            routes.c.deployment_id == deployment_id,
            routes.c.revision == new,
            routes.c.traffic_status == TrafficStatus.STANDBY.value,
        )
        .values(traffic_status=TrafficStatus.ACTIVE.value)
    )
    conn.execute(
        deployments.update()
        .where(deployments.c.id == deployment_id)
        .values(rollout_promoted_at=sa.func.now())
    )


def _note_progress(conn: sa.Connection, deployment_id: UUID, step: RolloutProgress) -> None:
    """Where the rollout stands, for `deployment list`, `--wait` and the dev view to read
    (written only when it changes: a rollout steps every second)."""
    progress = step.to_json()
    conn.execute(
        deployments.update()
        .where(
            deployments.c.id == deployment_id,
            deployments.c.rollout_progress.is_distinct_from(sa.cast(progress, JSONB)),
        )
        .values(rollout_progress=progress)
    )


def _track_all_new_healthy(conn: sa.Connection, deployment_id: UUID, all_healthy: bool) -> None:
    since = sa.func.coalesce(deployments.c.rollout_all_new_healthy_at, sa.func.now())
    conn.execute(
        deployments.update()
        .where(deployments.c.id == deployment_id)
        .values(rollout_all_new_healthy_at=since if all_healthy else None)
    )


def make_current(conn: sa.Connection, deployment_id: UUID, new: int) -> None:
    """The new revision is current: the deployment row copies it; a rollout is over."""
    conn.execute(
        deployments.update()
        .where(
            deployments.c.id == deployment_id,
            deployment_revisions.c.deployment_id == deployments.c.id,
            deployment_revisions.c.number == new,
        )
        .values(
            {
                **{name: deployment_revisions.c[name] for name in REVISION_COLUMNS},
                "current_revision": new,
                **_rollout_over(),
            }
        )
    )


def _roll_back(conn: sa.Connection, deployment_id: UUID, new: int, reason: str) -> None:
    conn.execute(
        deployment_revisions.update()
        .where(
            deployment_revisions.c.deployment_id == deployment_id,
            deployment_revisions.c.number == new,
        )
        .values(failed_reason=reason)
    )
    conn.execute(
        deployments.update().where(deployments.c.id == deployment_id).values(**_rollout_over())
    )


def _rollout_over() -> dict[str, Any]:
    return {
        "deploying_revision": None,
        "rollout_started_at": None,
        "rollout_all_new_healthy_at": None,
        "rollout_promoted_at": None,
        "rollout_promote_requested": False,
        "rollout_progress": None,
        "updated_at": sa.func.now(),
    }


def _progress_row(conn: sa.Connection, deployment_id: UUID, step: RolloutStep) -> None:
    """What the step did, as a history row of its own (a rollout's steps stay readable)."""
    did = [
        f"{step.create} new started" if step.create else "",
        f"{len(step.drain)} draining" if step.drain else "",
        "traffic switched to the new revision" if step.promote else "",
    ]
    message = "; ".join(part for part in [step.summary, *did] if part)
    conn.execute(
        deployment_history.insert().values(
            deployment_id=deployment_id,
            phase=PHASE,
            from_status="deploying",
            to_status="deploying",
            result="success",
            message=message,
        )
    )
