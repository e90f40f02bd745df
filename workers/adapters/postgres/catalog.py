"""Creating what the controller then looks after: resource groups, deployments, routes, rules.

The operator's side of the system of record (the CLI and the tests use it);
the phases never call it.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypedDict, Unpack
from uuid import UUID

import sqlalchemy as sa

from workers.adapters.postgres.engine import transaction
from workers.adapters.postgres.operator_moves import OPERATOR_PHASE, operator_move
from workers.adapters.postgres.revision_records import RolloutStart, create_revision, start_rollout
from workers.adapters.postgres.rows import deployment_values, revision_values, rule_values
from workers.adapters.postgres.schema import (
    autoscaling_rules,
    deployment_revisions,
    deployments,
    hosts,
    routes,
    scaling_groups,
)
from workers.adapters.postgres.terms import traffic_status
from workers.adapters.postgres.transitions import (
    apply_deployment_transitions,
    apply_host_transitions,
)
from workers.domain import (
    HOST_INTENTS,
    LIVE_LIFECYCLES,
    AutoScalingRule,
    DeploymentInfo,
    DeploymentLifecycle,
    HostStatus,
    HostTransition,
    OutcomeBucket,
    PlacementMode,
    RolloutSpec,
    RolloutStrategy,
    RouteData,
    RouteStatus,
)

PENDING, SCALING, READY, DEPLOYING = (
    DeploymentLifecycle.PENDING,
    DeploymentLifecycle.SCALING,
    DeploymentLifecycle.READY,
    DeploymentLifecycle.DEPLOYING,
)


class GroupOptions(TypedDict, total=False):
    """What a new scaling group may be given (anything left out: its default)."""

    app_proxy_addr: str | None
    app_proxy_api_token: str | None
    cleanup_statuses: Collection[RouteStatus]  # default: unhealthy
    environ: Mapping[str, str] | None
    placement: PlacementMode  # default: spread
    rebalance: bool  # default: on


class Catalog:
    def __init__(self, *, engine: sa.Engine) -> None:
        self._engine = engine

    def create_scaling_group(self, name: str, **options: Unpack[GroupOptions]) -> None:
        cleanup = options.get("cleanup_statuses", (RouteStatus.UNHEALTHY,))
        values = {
            "name": name,
            "app_proxy_addr": options.get("app_proxy_addr"),
            "app_proxy_api_token": options.get("app_proxy_api_token"),
            "route_cleanup_statuses": sorted(s.value for s in cleanup),
            "environ": dict(options.get("environ") or {}),
            "placement": options.get("placement", PlacementMode.SPREAD).value,
            "rebalance": options.get("rebalance", True),
        }
        with transaction(self._engine) as conn:
            conn.execute(scaling_groups.insert().values(values))

    def set_placement(
        self, name: str, placement: PlacementMode | None, rebalance: bool | None
    ) -> bool:
        """How a group places and rebalances its replicas from now on; False: no such group."""
        values = {"placement": placement and placement.value, "rebalance": rebalance}
        changes = {column: value for column, value in values.items() if value is not None}
        with transaction(self._engine) as conn:
            if not changes:
                found = conn.execute(sa.select(scaling_groups.c.name).where(
                    scaling_groups.c.name == name)).first()  # fmt: skip
                return found is not None
            updated = conn.execute(
                scaling_groups.update().where(scaling_groups.c.name == name).values(changes)
            )
        return bool(updated.rowcount)

    def point_at_app_proxy(self, group: str, *, addr: str, api_token: str) -> None:
        """Give an existing group another app proxy (a new `modelfleet dev` run's)."""
        with transaction(self._engine) as conn:
            conn.execute(
                scaling_groups.update()
                .where(scaling_groups.c.name == group)
                .values(app_proxy_addr=addr, app_proxy_api_token=api_token)
            )

    def retire_deployment(self, deployment_id: UUID, why: str) -> None:
        """Destroyed at once, its routes terminated, without the phases (whose workers
        are gone): what `modelfleet dev` does to its demo in a database it did not create."""
        every = set(DeploymentLifecycle) - {DeploymentLifecycle.DESTROYED}
        change = operator_move(deployment_id, every, DeploymentLifecycle.DESTROYED, why)
        with transaction(self._engine) as conn:
            apply_deployment_transitions(conn, [change])
            conn.execute(
                routes.update()
                .where(
                    routes.c.deployment_id == deployment_id,
                    routes.c.status != RouteStatus.TERMINATED.value,
                )
                .values(status=RouteStatus.TERMINATED.value, traffic_ratio=0.0)
            )

    def create_deployment(self, deployment: DeploymentInfo) -> DeploymentInfo:
        """Store `deployment` as given (id, lifecycle and all), and its current revision."""
        with transaction(self._engine) as conn:
            conn.execute(deployments.insert().values(deployment_values(deployment)))
            conn.execute(
                deployment_revisions.insert().values(
                    deployment_id=deployment.id,
                    number=deployment.current_revision,
                    **revision_values(deployment.target_revision),
                )
            )
        return deployment

    def add_routes(self, new_routes: Sequence[RouteData]) -> None:
        """Store routes as given (status, session link and timestamps included)."""
        if not new_routes:
            return
        rows = [_route_values(route) for route in new_routes]
        with transaction(self._engine) as conn:
            for row in rows:  # rows differ in which defaults they use
                conn.execute(routes.insert().values(row))

    def scale_deployment(self, deployment_id: UUID, replica_count: int) -> None:
        """Ask for `replica_count` replicas (dropping any autoscaler count), with a history
        row saying the operator asked; a ready deployment moves to scaling at once."""
        with transaction(self._engine) as conn:
            conn.execute(
                deployments.update()
                .where(deployments.c.id == deployment_id)
                # The operator's count wins over a scale to zero (and over its wake).
                .values(replica_count=replica_count, desired_replica_count=None,
                        zeroed_from=None, idle_counts_from=sa.func.now())
            )  # fmt: skip
            _count_changed(conn, deployment_id, f"scale to {replica_count}")

    def set_settings(self, deployment_id: UUID, changes: Mapping[str, Any]) -> list[str]:
        """Settings outside any revision (`scale_to_zero_after_s`, `drain_s`; None: off), with
        a history row; what changed, as 'name: old -> new'. Turning scale to zero off while
        at zero brings the replicas it had back; any change restarts its idle time."""
        with transaction(self._engine) as conn:
            before = (
                conn.execute(
                    sa.select(*(deployments.c[name] for name in changes), deployments.c.zeroed_from)
                    .where(deployments.c.id == deployment_id)
                    .with_for_update()
                )
                .mappings()
                .one()
            )
            said = [f"{name}: {_setting(before[name])} -> {_setting(value)}"
                    for name, value in changes.items() if before[name] != value]  # fmt: skip
            if not said:
                return []
            values: dict[str, Any] = {**changes, "idle_counts_from": sa.func.now()}
            turned_off = "scale_to_zero_after_s" in changes and not changes["scale_to_zero_after_s"]
            woken = turned_off and before["zeroed_from"] is not None
            if woken:
                values.update(replica_count=before["zeroed_from"], zeroed_from=None)
            conn.execute(
                deployments.update().where(deployments.c.id == deployment_id).values(values)
            )
            what = "set " + "; ".join(said)
            if woken:
                _count_changed(conn, deployment_id, what)
            else:
                apply_deployment_transitions(
                    conn, [operator_move(deployment_id, LIVE_LIFECYCLES, None, what)]
                )
        return said

    def request_destroy(self, deployment_id: UUID) -> bool:
        """Move a live deployment to destroying; False if it is already on its way out."""
        destroying = DeploymentLifecycle.DESTROYING
        change = operator_move(deployment_id, LIVE_LIFECYCLES, destroying, "destroy")
        with transaction(self._engine) as conn:
            return bool(apply_deployment_transitions(conn, [change]))

    def create_revision(
        self, deployment_id: UUID, changes: Mapping[str, Any], *, keep: int = 10
    ) -> int | None:
        """The next revision: the current one with `changes` (column -> value); None when
        they change nothing. Revisions beyond the newest `keep` (and the current and
        deploying ones) are forgotten."""
        with transaction(self._engine) as conn:
            return create_revision(conn, deployment_id, changes, keep)

    def start_rollout(
        self, deployment_id: UUID, revision: int, spec: RolloutSpec, what: str
    ) -> RolloutStart:
        """Move a ready (or scaling, or deploying: superseded) deployment to `revision`
        with `spec`; at zero replicas the revision is current at once (`start_rollout`)."""
        with transaction(self._engine) as conn:
            return start_rollout(conn, deployment_id, revision, spec, what)

    def request_promote(self, deployment_id: UUID) -> bool:
        """Ask a blue-green rollout that waits for it to switch traffic, or a canary to skip
        its remaining steps; False if none does."""
        blue_green = sa.and_(
            deployments.c.rollout_strategy == RolloutStrategy.BLUE_GREEN.value,
            deployments.c.rollout_promoted_at.is_(None),
        )
        waiting = sa.and_(
            deployments.c.id == deployment_id,
            deployments.c.lifecycle == DEPLOYING.value,
            sa.or_(blue_green, deployments.c.rollout_strategy == RolloutStrategy.CANARY.value),
        )
        with transaction(self._engine) as conn:
            asked = conn.execute(
                deployments.update().where(waiting).values(rollout_promote_requested=True)
            ).rowcount
            if asked:
                stay = operator_move(deployment_id, {DEPLOYING}, None, "promote")
                apply_deployment_transitions(conn, [stay])
        return bool(asked)

    def move_host(
        self, name: str, to: HostStatus, allowed: set[HostStatus]
    ) -> tuple[HostStatus, HostStatus] | None:
        """An operator's ask of a host (cordon, uncordon, drain): its intent becomes `to`,
        and so does its status while it lives (an unreachable or lost host takes it when
        it is back), with a history row. The intent it had and its status now, or None
        when no host has that name; nothing changes when that intent is not `allowed`."""
        with transaction(self._engine) as conn:
            found = conn.execute(
                sa.select(hosts.c.id, hosts.c.status, hosts.c.intent)
                .where(hosts.c.name == name)
                .with_for_update()
            ).one_or_none()
            if found is None:
                return None
            had, status = HostStatus(found.intent), HostStatus(found.status)
            if had not in allowed or had is to:
                return had, status
            conn.execute(hosts.update().where(hosts.c.id == found.id).values(intent=to.value))
            alive = status in HOST_INTENTS
            change = HostTransition(
                entity_id=found.id,
                expected=frozenset({status}),
                to_status=to if alive else status,
                phase=OPERATOR_PHASE,
                result=OutcomeBucket.SUCCESS,
                message=f"operator asked: {_HOST_VERBS[to]}"
                + ("" if alive else f" (it is {status.value}: taken when it is back)"),
            )
            apply_host_transitions(conn, [change])
        return had, change.to_status or status

    def remove_autoscaling_rule(self, rule_id: UUID) -> bool:
        with transaction(self._engine) as conn:
            removed = conn.execute(
                autoscaling_rules.delete().where(autoscaling_rules.c.id == rule_id)
            )
        return removed.rowcount == 1

    def add_autoscaling_rule(self, deployment_id: UUID, rule: AutoScalingRule) -> AutoScalingRule:
        stored = rule if rule.id is not None else replace(rule, id=uuid.uuid4())
        with transaction(self._engine) as conn:
            conn.execute(autoscaling_rules.insert().values(rule_values(deployment_id, stored)))
        return stored


_HOST_VERBS = {
    HostStatus.CORDONED: "cordon",
    HostStatus.READY: "uncordon",
    HostStatus.DRAINING: "drain",
}


def _count_changed(conn: sa.Connection, deployment_id: UUID, what: str) -> None:
    """An operator changed the replica count: a ready deployment scales now (history says
    so); one that is not ready reads the count when it gets there."""
    moved = apply_deployment_transitions(
        conn, [operator_move(deployment_id, {READY}, DeploymentLifecycle.SCALING, what)]
    )
    if not moved:
        apply_deployment_transitions(
            conn, [operator_move(deployment_id, {PENDING, SCALING, DEPLOYING}, None, what)]
        )


def _setting(value: Any) -> str:
    if value is None:
        return "off"
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def _route_values(route: RouteData) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": route.id,
        "deployment_id": route.endpoint_id,
        "session_id": route.session_id,
        "status": route.status.value,
        "traffic_ratio": route.traffic_ratio,
        "revision": route.revision,
        "traffic_status": traffic_status(route.in_traffic),
    }
    if route.created_at is not None:
        values["created_at"] = route.created_at
    if route.status_changed_at is not None:
        values["status_changed_at"] = route.status_changed_at
    if route.ever_healthy:
        values["first_healthy_at"] = route.status_changed_at or sa.func.now()
    return values
