"""Creating what the controller then looks after: resource groups, deployments, routes, rules.

The operator's side of the system of record (the CLI and the tests use it);
the phases never call it.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from workers.adapters.postgres.engine import transaction
from workers.adapters.postgres.rows import deployment_values, revision_values, rule_values
from workers.adapters.postgres.schema import (
    autoscaling_rules,
    deployment_revisions,
    deployments,
    routes,
    scaling_groups,
)
from workers.adapters.postgres.transitions import apply_deployment_transitions
from workers.domain import (
    AutoScalingRule,
    DeploymentInfo,
    DeploymentLifecycle,
    DeploymentTransition,
    OutcomeBucket,
    RouteData,
    RouteStatus,
)

PENDING, SCALING, READY, DEPLOYING = (
    DeploymentLifecycle.PENDING,
    DeploymentLifecycle.SCALING,
    DeploymentLifecycle.READY,
    DeploymentLifecycle.DEPLOYING,
)

OPERATOR_PHASE = "operator"  # the `phase` of history rows written for a CLI command


class Catalog:
    def __init__(self, *, engine: sa.Engine) -> None:
        self._engine = engine

    def create_scaling_group(
        self,
        name: str,
        *,
        app_proxy_addr: str | None = None,
        app_proxy_api_token: str | None = None,
        cleanup_statuses: Collection[RouteStatus] = (RouteStatus.UNHEALTHY,),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        values = {
            "name": name,
            "app_proxy_addr": app_proxy_addr,
            "app_proxy_api_token": app_proxy_api_token,
            "route_cleanup_statuses": sorted(s.value for s in cleanup_statuses),
            "environ": dict(environ or {}),
        }
        with transaction(self._engine) as conn:
            conn.execute(scaling_groups.insert().values(values))

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
        change = _operator_move(deployment_id, every, DeploymentLifecycle.DESTROYED, why)
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
                .values(replica_count=replica_count, desired_replica_count=None)
            )
            what = f"scale to {replica_count}"
            moved = apply_deployment_transitions(
                conn,
                [_operator_move(deployment_id, {READY}, DeploymentLifecycle.SCALING, what)],
            )
            if not moved:  # not ready: the count is read when it gets there
                apply_deployment_transitions(
                    conn, [_operator_move(deployment_id, {PENDING, SCALING, DEPLOYING}, None, what)]
                )

    def request_destroy(self, deployment_id: UUID) -> bool:
        """Move a live deployment to destroying; False if it is already on its way out."""
        live = {PENDING, SCALING, READY, DEPLOYING}
        change = _operator_move(deployment_id, live, DeploymentLifecycle.DESTROYING, "destroy")
        with transaction(self._engine) as conn:
            return bool(apply_deployment_transitions(conn, [change]))

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


def _operator_move(
    deployment_id: UUID,
    expected: set[DeploymentLifecycle],
    to: DeploymentLifecycle | None,
    what: str,
) -> DeploymentTransition:
    """An operator's change with its history row (`to` None: the lifecycle stays)."""
    return DeploymentTransition(
        entity_id=deployment_id,
        expected=frozenset(expected),
        to_status=to,
        phase=OPERATOR_PHASE,
        result=OutcomeBucket.SUCCESS,
        message=f"operator asked: {what}",
    )


def _route_values(route: RouteData) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": route.id,
        "deployment_id": route.endpoint_id,
        "session_id": route.session_id,
        "status": route.status.value,
        "traffic_ratio": route.traffic_ratio,
        "revision": route.revision,
        "traffic_status": "active" if route.in_traffic else "standby",
    }
    if route.created_at is not None:
        values["created_at"] = route.created_at
    if route.status_changed_at is not None:
        values["status_changed_at"] = route.status_changed_at
    return values
