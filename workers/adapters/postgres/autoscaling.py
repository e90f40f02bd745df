"""Autoscaling in PostgreSQL: rules, the metrics they read, and saving what they decide.

The decision itself is `workers.policies.autoscaling.decide_replicas` (pure). Saving a new
desired count derives the decision again from the rules and metrics as they are
then, in the same transaction as the count, so the firing rule's
`last_triggered_at` and the history row ("scaled 1 -> 3: requests_in_flight 2.7
>= 2 (rule <id>)") commit with it; nothing is kept between the two port calls.
Metrics live elsewhere (Redis): the composition root hands a `MetricsSource` in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID as PG_UUID

from workers.adapters.postgres.bulk import any_of, unnest_rows
from workers.adapters.postgres.rows import (
    DEPLOYMENT_COLUMNS,
    ROUTE_COLUMNS,
    deployment_from_row,
    route_from_row,
    rule_from_row,
)
from workers.adapters.postgres.schema import (
    autoscaling_rules,
    deployment_history,
    deployments,
    routes,
)
from workers.adapters.postgres.terms import LEAVING_ROUTE
from workers.domain import (
    ACTIVE_ROUTE_STATUSES,
    AutoScalingMetricsData,
    AutoScalingRule,
    DeploymentInfo,
    RouteData,
    SessionId,
)
from workers.phase_names import PhaseName
from workers.policies.autoscaling import ScalingDecision, decide_replicas, describe_decision

_ACTIVE = [status.value for status in ACTIVE_ROUTE_STATUSES]
_UUID = PG_UUID(as_uuid=True)
MetricValues = Mapping[str, float]


class MetricsSource(Protocol):
    """Where the model servers' and sessions' metrics are kept (Redis, by a collector)."""

    def read(
        self, deployment_ids: Collection[UUID], session_ids: Collection[SessionId]
    ) -> tuple[Mapping[UUID, MetricValues], Mapping[SessionId, MetricValues]]: ...


@dataclass(frozen=True)
class Decided:
    """A saved decision: the deployment as it was, and why its count changed."""

    deployment: DeploymentInfo
    decision: ScalingDecision


def active_routes(
    conn: sa.Connection, endpoint_ids: Collection[UUID]
) -> dict[UUID, list[RouteData]]:
    """Routes that count as replicas, per deployment, each saying whether it is leaving
    (moving, or its host draining or lost): such a route no longer counts toward the
    target."""
    query = (
        sa.select(*ROUTE_COLUMNS, LEAVING_ROUTE.label("host_leaving"))
        .where(any_of(routes.c.deployment_id, endpoint_ids), routes.c.status.in_(_ACTIVE))
        .order_by(routes.c.created_at, routes.c.id)
    )
    grouped: dict[UUID, list[RouteData]] = defaultdict(list)
    for row in conn.execute(query).mappings():
        grouped[row["deployment_id"]].append(route_from_row(row))
    return dict(grouped)


def load_rules(
    conn: sa.Connection, endpoint_ids: Collection[UUID]
) -> dict[UUID, list[AutoScalingRule]]:
    """Rules per deployment in a stable order: oldest first."""
    query = (
        sa.select(autoscaling_rules)
        .where(any_of(autoscaling_rules.c.deployment_id, endpoint_ids))
        .order_by(autoscaling_rules.c.created_at, autoscaling_rules.c.id)
    )
    rules: dict[UUID, list[AutoScalingRule]] = defaultdict(list)
    for row in conn.execute(query).mappings():
        rules[row["deployment_id"]].append(rule_from_row(row))
    return dict(rules)


def load_metrics(
    conn: sa.Connection,
    deployments_: Sequence[DeploymentInfo],
    rules: Mapping[UUID, Sequence[AutoScalingRule]],
    source: MetricsSource,
) -> AutoScalingMetricsData:
    """Active routes of every deployment; the metrics of those that have rules."""
    routes_by_endpoint = active_routes(conn, {d.id for d in deployments_})
    ruled = [d.id for d in deployments_ if rules.get(d.id)]
    session_ids = [
        route.session_id
        for deployment_id in ruled
        for route in routes_by_endpoint.get(deployment_id, ())
        if route.session_id is not None
    ]
    endpoint_metrics, session_metrics = source.read(ruled, session_ids)
    return AutoScalingMetricsData(
        routes_by_endpoint=routes_by_endpoint,
        endpoint_metrics=endpoint_metrics,
        session_metrics=session_metrics,
    )


def save_desired(
    conn: sa.Connection, desired: Mapping[UUID, int], source: MetricsSource, now: datetime
) -> list[Decided]:
    """Save each deployment's new desired count; for those a rule decided (derived again
    now, as the deployment was before this change), stamp the rule and write the history
    row. Returns those decisions."""
    decided = _decisions(conn, desired, source, now)
    counts = unnest_rows(
        "v", {"id": (_UUID, list(desired)), "count": (sa.Integer(), list(desired.values()))}
    )
    conn.execute(
        deployments.update()
        .where(deployments.c.id == counts.c.id)
        .values(desired_replica_count=counts.c.count, updated_at=sa.func.now())
    )
    if decided:
        _stamp_rules(conn, decided, now)
        _record(conn, decided)
    return decided


def _decisions(
    conn: sa.Connection, desired: Mapping[UUID, int], source: MetricsSource, now: datetime
) -> list[Decided]:
    query = sa.select(*DEPLOYMENT_COLUMNS).where(any_of(deployments.c.id, desired))
    current = [deployment_from_row(row) for row in conn.execute(query).mappings()]
    rules = load_rules(conn, desired)
    ruled = [d for d in current if rules.get(d.id)]
    if not ruled:
        return []
    metrics = load_metrics(conn, ruled, rules, source)
    decided = []
    for deployment in ruled:
        decision = decide_replicas(deployment, rules[deployment.id], metrics, now)
        if decision is not None and decision.replicas == desired[deployment.id]:
            decided.append(Decided(deployment, decision))
    return decided


def _stamp_rules(conn: sa.Connection, decided: Sequence[Decided], now: datetime) -> None:
    fired = [d.decision.rule.id for d in decided if d.decision.rule.id is not None]
    if fired:
        conn.execute(
            autoscaling_rules.update()
            .where(any_of(autoscaling_rules.c.id, fired))
            .values(last_triggered_at=now)
        )


def _record(conn: sa.Connection, decided: Sequence[Decided]) -> None:
    """A history row per decision, like Kubernetes' SuccessfulRescale event."""
    conn.execute(
        deployment_history.insert(),
        [
            {
                "deployment_id": d.deployment.id,
                "phase": PhaseName.CHECK_REPLICAS.value,
                "from_status": d.deployment.lifecycle.value,
                "to_status": d.deployment.lifecycle.value,
                "result": "success",
                "message": describe_decision(d.deployment, d.decision),
            }
            for d in decided
        ],
    )
