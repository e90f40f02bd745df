"""Rollouts in PostgreSQL: the state a rollout step is planned from, and applying that step.

A deployment in `deploying` has a `deploying_revision` and the rollout's
settings in its `rollout_*` columns. Failures of the new revision are its
routes that have a history row since the rollout began that counts against
their revision (`revision_failure`, set by the phases whose errors say a
revision is bad: a session that did not start or ended, a route that went
unhealthy or never became healthy in time). A route counts once, however many
phases saw it fail.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, distinct_on
from sqlalchemy.dialects.postgresql import UUID as PG_UUID

from workers.adapters.postgres.bulk import any_of, unnest_rows
from workers.adapters.postgres.route_moves import insert_routes, take_out_of_service
from workers.adapters.postgres.rows import ROUTE_COLUMNS, route_from_row
from workers.adapters.postgres.schema import (
    deployment_history,
    deployment_revisions,
    deployments,
    route_history,
    routes,
    sessions,
)
from workers.domain import (
    HealthCheckConfig,
    RevisionFailures,
    RolloutOutcome,
    RolloutSpec,
    RolloutState,
    RolloutStep,
    RolloutStrategy,
    RouteCreator,
    RouteStatus,
)
from workers.errors import NeverHealthy, RouteUnhealthy, probe_saw
from workers.phase_names import PhaseName
from workers.rollouts import describe_failures

PHASE = PhaseName.ROLLOUT
_DEFAULTS = RolloutSpec()  # where a column was left empty
# A route that never passed its health check failed with one of these.
_NEVER_HEALTHY_CODES = (NeverHealthy.error_code, RouteUnhealthy.error_code)
TAKING_PART = [
    s.value
    for s in (
        RouteStatus.PROVISIONING,
        RouteStatus.DEGRADED,
        RouteStatus.HEALTHY,
        RouteStatus.UNHEALTHY,
        RouteStatus.FAILED_TO_START,
    )
]
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
    failures = _revision_failures(conn, found)
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
    all_healthy = step.counts.get("new_healthy", 0) >= state.desired
    _track_all_new_healthy(conn, deployment_id, all_healthy)
    if step.canary_step is not None:
        conn.execute(deployments.update().where(deployments.c.id == deployment_id)
                     .values(rollout_step=step.canary_step,
                             rollout_step_started_at=sa.func.now()))  # fmt: skip
    if step.outcome is RolloutOutcome.IN_PROGRESS and step.counts:
        _note_progress(conn, deployment_id, step)
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
        .where(any_of(routes.c.deployment_id, found), routes.c.status.in_(TAKING_PART))
        .order_by(routes.c.created_at, routes.c.id)
    )
    for route in conn.execute(query).mappings():
        grouped.setdefault(route["deployment_id"], []).append(route)
    return grouped


def _new_revision_routes(found: dict[UUID, Any]) -> sa.ColumnElement[bool]:
    return sa.and_(
        routes.c.deployment_id == deployments.c.id,
        routes.c.revision == deployments.c.deploying_revision,
        any_of(deployments.c.id, found),
    )


def _revision_failures(conn: sa.Connection, found: dict[UUID, Any]) -> dict[UUID, RevisionFailures]:
    """Per deployment: the routes of the new revision that failed since the rollout began
    (history rows that count against a revision), how its sessions exited, and what its
    health checks saw."""
    failed = _failed_routes(conn, found)
    exits = _exits(conn, found)
    health = _deploying_health(conn, found)
    return {
        deployment_id: _failures_of(failed.get(deployment_id, []),
                                    exits.get(deployment_id, []), health.get(deployment_id))
        for deployment_id in found
    }  # fmt: skip


def _failed_routes(conn: sa.Connection, found: dict[UUID, Any]) -> dict[UUID, list[Any]]:
    """The routes that failed, each once (a session that could not start fails in two
    phases; an unhealthy route in the fast path and the full pass): deployment, its
    latest failure's error code and message, whether the route was ever healthy."""
    query = (
        sa.select(
            routes.c.deployment_id,
            route_history.c.error_code,
            route_history.c.message,
            routes.c.first_healthy_at.is_not(None).label("ever_healthy"),
        )
        .select_from(route_history)
        .join(routes, routes.c.id == route_history.c.route_id)
        .join(deployments, _new_revision_routes(found))
        .where(
            route_history.c.revision_failure.is_(True),
            route_history.c.created_at >= deployments.c.rollout_started_at,
        )
        .ext(distinct_on(route_history.c.route_id))
        .order_by(route_history.c.route_id, route_history.c.id.desc())
    )
    grouped: dict[UUID, list[Any]] = {}
    for row in conn.execute(query):
        grouped.setdefault(row.deployment_id, []).append(row)
    return grouped


def _exits(conn: sa.Connection, found: dict[UUID, Any]) -> dict[UUID, list[Any]]:
    """Per deployment: the new revision's sessions that exited on their own, oldest first."""
    query = (
        sa.select(routes.c.deployment_id, sessions.c.exit_code, sessions.c.last_output)
        .select_from(sessions)
        .join(routes, routes.c.id == sessions.c.route_id)
        .join(deployments, _new_revision_routes(found))
        .where(
            sessions.c.status == "ERROR",
            sessions.c.terminated_at >= deployments.c.rollout_started_at,
        )
        .order_by(sessions.c.terminated_at)
    )
    grouped: dict[UUID, list[Any]] = {}
    for row in conn.execute(query):
        grouped.setdefault(row.deployment_id, []).append(row)
    return grouped


def _deploying_health(conn: sa.Connection, found: dict[UUID, Any]) -> dict[UUID, Any]:
    """The health check of each deployment's deploying revision."""
    query = sa.select(
        deployment_revisions.c.deployment_id,
        deployment_revisions.c.health_check_path,
        deployment_revisions.c.health_check_interval_s,
        deployment_revisions.c.health_check_max_retries,
        deployment_revisions.c.health_check_initial_delay_s,
    ).where(
        any_of(deployment_revisions.c.deployment_id, found),
        deployment_revisions.c.deployment_id == deployments.c.id,
        deployment_revisions.c.number == deployments.c.deploying_revision,
    )
    return {row.deployment_id: row for row in conn.execute(query)}


def _failures_of(failed: list[Any], exits: list[Any], health: Any) -> RevisionFailures:
    never = [r for r in failed if not r.ever_healthy and r.error_code in _NEVER_HEALTHY_CODES]
    seen = next((saw for r in reversed(never) if (saw := probe_saw(r.message))), None)
    outputs = [out for _, _, out in exits if out and out.strip()]
    checked = health is not None and health.health_check_path is not None
    return RevisionFailures(
        count=len(failed),
        exit_codes=Counter(code for _, code, _ in exits),
        last_output=outputs[-1].strip().splitlines()[-1] if outputs else "",
        never_healthy=len(never),
        budget_s=_budget_s(health) if checked else None,
        health_path=health.health_check_path if checked else None,
        probe_saw=seen,
    )


def _budget_s(health: Any) -> float:
    return HealthCheckConfig(
        interval_s=health.health_check_interval_s,
        max_retries=health.health_check_max_retries,
        initial_delay_s=health.health_check_initial_delay_s,
    ).budget_s


def _promote(conn: sa.Connection, deployment_id: UUID, new: int) -> None:
    conn.execute(
        routes.update()
        .where(
            routes.c.deployment_id == deployment_id,
            routes.c.revision == new,
            routes.c.traffic_status == "standby",
        )
        .values(traffic_status="active")
    )
    conn.execute(
        deployments.update()
        .where(deployments.c.id == deployment_id)
        .values(rollout_promoted_at=sa.func.now())
    )


def _note_progress(conn: sa.Connection, deployment_id: UUID, step: RolloutStep) -> None:
    """The step's own counts, for `deployment list`, `--wait` and the dev view to read
    (written only when they change: a rollout steps every second)."""
    progress = dict(step.counts)
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
