"""Rollouts in PostgreSQL: the state a rollout step is planned from, and applying that step.

A deployment in `deploying` has a `deploying_revision` and the rollout's
settings in its `rollout_*` columns. Failures of the new revision are its
routes' error history rows since the rollout began, in the phases where a
revision shows it is bad: a session that did not start (`routes.provision`),
one that ended (`routes.check_running`), a route that went unhealthy
(`routes.health_check`; repeats of one streak bump one row).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from workers.adapters.postgres.bulk import any_of
from workers.adapters.postgres.rows import ROUTE_COLUMNS, route_from_row
from workers.adapters.postgres.schema import (
    deployment_history,
    deployment_revisions,
    deployments,
    route_history,
    routes,
    sessions,
)
from workers.adapters.postgres.transitions import insert_routes, take_out_of_service
from workers.domain import (
    RolloutOutcome,
    RolloutSpec,
    RolloutState,
    RolloutStep,
    RolloutStrategy,
    RouteCreator,
    RouteStatus,
)

PHASE = "deployments.rollout"
FAILURE_PHASES = ("routes.provision", "routes.check_running", "routes.health_check")
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
    failures = _failures(conn, found)
    evidence = _evidence(conn, found)
    return {
        deployment_id: _state(row, taking_part.get(deployment_id, []), failures, evidence)
        for deployment_id, row in found.items()
    }


def apply_step(
    conn: sa.Connection, state: RolloutState, deployment_id: UUID, step: RolloutStep
) -> None:
    """Start, drain and switch routes as `step` says; close the rollout when it ended."""
    new = state.new_revision
    if step.create:
        creator = RouteCreator(deployment_id, revision=new, in_traffic=step.create_in_traffic)
        insert_routes(conn, [creator] * step.create)
    if step.promote:
        _promote(conn, deployment_id, new)
    if step.drain:
        why = (
            "rolled back" if step.outcome is RolloutOutcome.FAILED else f"revision {new} rolls out"
        )
        take_out_of_service(conn, step.drain, (PHASE, why))
    if state.spec.strategy is RolloutStrategy.BLUE_GREEN:  # only its promote delay reads it
        all_healthy = step.counts.get("new_healthy", 0) >= state.desired
        _track_all_new_healthy(conn, deployment_id, all_healthy)
    if step.outcome is RolloutOutcome.FINISHED:
        _finish(conn, deployment_id, new)
    elif step.outcome is RolloutOutcome.FAILED:
        _roll_back(conn, deployment_id, new, step.summary)
    if step.acts and step.outcome is not RolloutOutcome.FAILED:  # a rollback's row: the phase's
        _progress_row(conn, deployment_id, step)


def _state(
    row: Any, taking_part: list[Any], failures: Counter[UUID], evidence: dict[UUID, str]
) -> RolloutState:
    spec = RolloutSpec(
        strategy=RolloutStrategy(row["rollout_strategy"] or RolloutStrategy.ROLLING.value),
        max_surge=row["rollout_max_surge"] or "25%",
        max_unavailable=row["rollout_max_unavailable"] or "0",
        promote_delay_s=row["rollout_promote_delay_s"] or 0.0,
        auto_promote=row["rollout_auto_promote"] is not False,
        failure_threshold=row["rollout_failure_threshold"] or 3,
        progress_deadline_s=row["rollout_progress_deadline_s"] or 600.0,
    )
    now: datetime = row["db_now"]
    healthy_at = row["rollout_all_new_healthy_at"]
    return RolloutState(
        desired=row["rollout_desired"]
        if row["rollout_desired"] is not None
        else row["replica_count"],
        old_revision=row["current_revision"],
        new_revision=row["deploying_revision"],
        spec=spec,
        routes=[route_from_row(r) for r in taking_part],
        failures=failures[row["id"]],
        elapsed_s=(now - (row["rollout_started_at"] or now)).total_seconds(),
        promoted=row["rollout_promoted_at"] is not None,
        promote_requested=row["rollout_promote_requested"],
        all_new_healthy_for_s=None if healthy_at is None else (now - healthy_at).total_seconds(),
        evidence=evidence.get(row["id"], ""),
    )


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


def _failures(conn: sa.Connection, found: dict[UUID, Any]) -> Counter[UUID]:
    query = (
        sa.select(routes.c.deployment_id, sa.func.count())
        .select_from(route_history)
        .join(routes, routes.c.id == route_history.c.route_id)
        .join(deployments, _new_revision_routes(found))
        .where(
            route_history.c.result == "error",
            route_history.c.phase.in_(FAILURE_PHASES),
            route_history.c.created_at >= deployments.c.rollout_started_at,
        )
        .group_by(routes.c.deployment_id)
    )
    return Counter({row[0]: row[1] for row in conn.execute(query)})


def _evidence(conn: sa.Connection, found: dict[UUID, Any]) -> dict[UUID, str]:
    """Per deployment: how the new revision's sessions exited ('3 sessions exited with
    code 1: <their last line>'), for the reason of a rollback."""
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
    exits: dict[UUID, list[tuple[int | None, str | None]]] = {}
    for deployment_id, code, output in conn.execute(query):
        exits.setdefault(deployment_id, []).append((code, output))
    return {deployment_id: _describe(seen) for deployment_id, seen in exits.items()}


def _describe(exits: list[tuple[int | None, str | None]]) -> str:
    codes = Counter(code for code, _ in exits)
    said = " and ".join(
        f"{count} session{'s' if count > 1 else ''} exited with code {code}"
        for code, count in codes.most_common()
    )
    last_output = next((out for _, out in reversed(exits) if out), None)
    last_line = last_output.strip().splitlines()[-1] if last_output and last_output.strip() else ""
    return f"{said}: {last_line}" if last_line else said


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


def _track_all_new_healthy(conn: sa.Connection, deployment_id: UUID, all_healthy: bool) -> None:
    since = sa.func.coalesce(deployments.c.rollout_all_new_healthy_at, sa.func.now())
    conn.execute(
        deployments.update()
        .where(deployments.c.id == deployment_id)
        .values(rollout_all_new_healthy_at=since if all_healthy else None)
    )


def _finish(conn: sa.Connection, deployment_id: UUID, new: int) -> None:
    """The new revision is current: the deployment row copies it; the rollout is over."""
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
