"""`DeploymentRepository` on PostgreSQL: the reads and writes the executors make.

Every method is one transaction and a fixed number of statements whatever the
batch size (ids travel as arrays). Phase-level work (loading targets, guarded
transitions with history, phase runs) lives in `phase_store.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID as PG_UUID

from workers.adapters.postgres import (
    autoscaling,
    rollouts,
    route_reads,
    traffic_autoscaling,
    zero,
)
from workers.adapters.postgres.autoscaling import MetricsSource
from workers.adapters.postgres.bulk import any_of, unnest_rows
from workers.adapters.postgres.engine import transaction
from workers.adapters.postgres.route_moves import insert_routes, take_out_of_service
from workers.adapters.postgres.rows import (
    DEPLOYMENT_COLUMNS,
    deployment_from_row,
    revision_from_row,
)
from workers.adapters.postgres.schema import (
    deployment_revisions,
    deployments,
    routes,
    scaling_groups,
    sessions,
)
from workers.adapters.postgres.transitions import apply_deployment_transitions
from workers.domain import (
    ACTIVE_ROUTE_STATUSES,
    AutoscaleDecision,
    AutoScalingMetricsData,
    AutoScalingRule,
    CleanupConfig,
    Condition,
    DeploymentContext,
    DeploymentInfo,
    DeploymentLifecycle,
    DeploymentTransition,
    EndpointState,
    OutcomeBucket,
    RolloutState,
    RolloutStep,
    RouteBatchUpdater,
    RouteCreator,
    RouteData,
    RouteDiscoveryData,
    RouteStatus,
    ScalingGroupProxyTarget,
    SessionId,
    SessionStatus,
    StartupProgress,
)
from workers.errors import EndpointNotFound, NeverHealthy, NoHostAvailable, RevisionMissing
from workers.phase_names import PhaseName
from workers.policies.autoscaling import ScalingDecision, decide_replicas, describe_decision

log = logging.getLogger(__name__)

# A session asked for that no agent has recorded as running yet.
_NOT_STARTED = [s.value for s in (SessionStatus.PENDING, SessionStatus.SCHEDULED,
                                  SessionStatus.PREPARING, SessionStatus.CREATING)]  # fmt: skip


_ACTIVE = [status.value for status in ACTIVE_ROUTE_STATUSES]
_UUID = PG_UUID(as_uuid=True)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class PostgresDeploymentRepository:
    def __init__(
        self,
        *,
        engine: sa.Engine,
        metrics: MetricsSource,
        clock: Callable[[], datetime] = _utc_now,
        on_decision: Callable[[DeploymentInfo, ScalingDecision], None] = lambda *_: None,
        # (name, count before, the traffic autoscaler's decision)
        on_autoscaled: Callable[[str, int, AutoscaleDecision], None] = lambda *_: None,
    ) -> None:
        self._engine = engine
        self._metrics = metrics  # where autoscaling metrics are kept (Redis)
        self._clock = clock
        self._on_decision = on_decision  # e.g. counted in the controller's metrics
        self._on_autoscaled = on_autoscaled

    # -- read by the route executor --
    def get_endpoints_by_ids(self, endpoint_ids: AbstractSet[UUID]) -> list[DeploymentInfo]:
        query = sa.select(*DEPLOYMENT_COLUMNS).where(any_of(deployments.c.id, endpoint_ids))
        with transaction(self._engine) as conn:
            return [deployment_from_row(row) for row in conn.execute(query).mappings()]

    def fetch_deployment_context(
        self, deployment: DeploymentInfo, revision: int | None = None
    ) -> DeploymentContext:
        """The deployment as stored now, the revision to run (its current one unless
        `revision` names another), and its resource group's environment."""
        number = sa.func.coalesce(
            sa.literal(revision, sa.Integer()), deployments.c.current_revision
        )
        query = (
            sa.select(
                *DEPLOYMENT_COLUMNS,
                scaling_groups.c.environ.label("group_environ"),
                *[c.label(f"rev_{c.name}") for c in deployment_revisions.c],
            )
            .join(scaling_groups, scaling_groups.c.name == deployments.c.resource_group)
            .outerjoin(
                deployment_revisions,
                sa.and_(
                    deployment_revisions.c.deployment_id == deployments.c.id,
                    deployment_revisions.c.number == number,
                ),
            )
            .where(deployments.c.id == deployment.id)
        )
        with transaction(self._engine) as conn:
            row = conn.execute(query).mappings().one_or_none()
        if row is None:
            raise EndpointNotFound(deployment.id)
        current = deployment_from_row(row)
        stored = revision_from_row(_prefixed(row, "rev_"))
        chosen = stored if row["rev_number"] is not None else current.target_revision
        if chosen is None:
            raise RevisionMissing(deployment.id)
        return DeploymentContext(
            deployment=current,
            revision=chosen,
            environ=dict(row["group_environ"]),
            revision_number=row["rev_number"] or revision or current.current_revision,
        )

    def update_route_sessions(self, route_sessions: Mapping[UUID, SessionId]) -> None:
        if not route_sessions:
            return
        v = unnest_rows(
            "v",
            {
                "id": (_UUID, list(route_sessions)),
                "session_id": (_UUID, list(route_sessions.values())),
            },
        )
        statement = routes.update().where(routes.c.id == v.c.id).values(session_id=v.c.session_id)
        with transaction(self._engine) as conn:
            conn.execute(statement)

    def fetch_session_statuses_by_route_ids(
        self, route_ids: AbstractSet[UUID]
    ) -> dict[UUID, SessionStatus]:
        query = (
            sa.select(routes.c.id, sessions.c.status)
            .join(sessions, sessions.c.id == routes.c.session_id)
            .where(any_of(routes.c.id, route_ids))
        )
        with transaction(self._engine) as conn:
            return {row.id: SessionStatus(row.status) for row in conn.execute(query)}

    def fetch_overdue_starts(
        self, route_ids: AbstractSet[UUID], default_deadline_s: float
    ) -> dict[UUID, tuple[float, float]]:
        deadline = sa.func.coalesce(deployments.c.start_deadline_s, default_deadline_s)
        waited = sa.func.extract("epoch", sa.func.now() - sessions.c.created_at)
        query = (
            sa.select(routes.c.id, waited.label("waited_s"), deadline.label("deadline_s"))
            .join(sessions, sessions.c.id == routes.c.session_id)
            .join(deployments, deployments.c.id == routes.c.deployment_id)
            .where(
                any_of(routes.c.id, route_ids),
                sessions.c.status.in_(_NOT_STARTED),
                waited > deadline,
            )
        )
        with transaction(self._engine) as conn:
            return {row.id: (float(row.waited_s), float(row.deadline_s))
                    for row in conn.execute(query)}  # fmt: skip

    def fetch_route_service_discovery_info(
        self, route_ids: AbstractSet[UUID]
    ) -> list[RouteDiscoveryData]:
        """Routes whose session runs and has an address; the others have nothing to scrape."""
        with transaction(self._engine) as conn:
            return route_reads.discovery_info(conn, route_ids)

    def get_scaling_group_cleanup_configs(
        self, scaling_group_names: Sequence[str]
    ) -> dict[str, CleanupConfig]:
        query = sa.select(scaling_groups.c.name, scaling_groups.c.route_cleanup_statuses).where(
            any_of(scaling_groups.c.name, scaling_group_names)
        )
        with transaction(self._engine) as conn:
            return {
                row.name: CleanupConfig(
                    frozenset(RouteStatus(s) for s in row.route_cleanup_statuses)
                )
                for row in conn.execute(query)
            }

    def fetch_startup_progress(self, route_ids: AbstractSet[UUID]) -> dict[UUID, StartupProgress]:
        """Seconds since each route's session started running, and the health budget of
        the revision it runs (`route_reads.startup_progress`)."""
        with transaction(self._engine) as conn:
            return route_reads.startup_progress(conn, route_ids)

    def note_conditions(self, notes: Mapping[UUID, Condition]) -> None:
        changes = [
            DeploymentTransition(
                entity_id=deployment_id,
                expected=frozenset({DeploymentLifecycle.READY, DeploymentLifecycle.SCALING}),
                to_status=None,
                phase=_NOTED_BY.get(note.reason, PhaseName.PROVISION),
                result=OutcomeBucket.ERROR,
                error_code=note.reason,
                message=note.message,
                explains=True,
            )
            for deployment_id, note in notes.items()
        ]
        with transaction(self._engine) as conn:
            apply_deployment_transitions(conn, changes)

    # -- read and written by the deployment executor --
    def fetch_scaling_group_proxy_targets(
        self, scaling_group_names: AbstractSet[str]
    ) -> dict[str, ScalingGroupProxyTarget | None]:
        """Each named group's app proxy; None for a group with none (or no such group)."""
        query = sa.select(
            scaling_groups.c.name,
            scaling_groups.c.app_proxy_addr,
            scaling_groups.c.app_proxy_api_token,
        ).where(any_of(scaling_groups.c.name, scaling_group_names))
        targets: dict[str, ScalingGroupProxyTarget | None] = dict.fromkeys(scaling_group_names)
        with transaction(self._engine) as conn:
            for row in conn.execute(query):
                if row.app_proxy_addr:
                    targets[row.name] = ScalingGroupProxyTarget(
                        addr=row.app_proxy_addr, api_token=row.app_proxy_api_token or ""
                    )
        return targets

    def update_endpoint_urls_bulk(self, endpoint_urls: Mapping[UUID, str]) -> None:
        if not endpoint_urls:
            return
        v = unnest_rows(
            "v",
            {"id": (_UUID, list(endpoint_urls)), "url": (sa.Text(), list(endpoint_urls.values()))},
        )
        statement = (
            deployments.update()
            .where(deployments.c.id == v.c.id)
            .values(url=v.c.url, updated_at=sa.func.now())
        )
        with transaction(self._engine) as conn:
            conn.execute(statement)

    def fetch_active_routes_by_endpoint_ids(
        self, endpoint_ids: AbstractSet[UUID]
    ) -> dict[UUID, list[RouteData]]:
        with transaction(self._engine) as conn:
            return autoscaling.active_routes(conn, endpoint_ids)

    def scale_routes(
        self, creators: Sequence[RouteCreator], updater: RouteBatchUpdater | None
    ) -> None:
        """Insert new routes and take the scaled-in ones out of service, in one transaction.

        The updater names where scaled-in routes end (terminating); they get
        there through `draining`, out of traffic first (`take_out_of_service`).
        Only routes still active are changed, so a route that finished meanwhile
        stays finished.
        """
        with transaction(self._engine) as conn:
            if creators:
                insert_routes(conn, creators)
            if updater is not None and updater.route_ids:
                take_out_of_service(conn, updater.route_ids, SCALE_IN)

    def fetch_auto_scaling_rules_by_endpoint_ids(
        self, endpoint_ids: AbstractSet[UUID]
    ) -> dict[UUID, list[AutoScalingRule]]:
        """Rules per deployment in a stable order: oldest first."""
        with transaction(self._engine) as conn:
            return autoscaling.load_rules(conn, endpoint_ids)

    def fetch_metrics_for_autoscaling(
        self,
        deployments: Sequence[DeploymentInfo],
        rules: Mapping[UUID, Sequence[AutoScalingRule]],
    ) -> AutoScalingMetricsData:
        """Active routes of every deployment; the metrics of those that have rules."""
        with transaction(self._engine) as conn:
            return autoscaling.load_metrics(conn, deployments, rules, self._metrics)

    def calculate_desired_replicas_for_deployment(
        self,
        deployment: DeploymentInfo,
        rules: Sequence[AutoScalingRule],
        metrics: AutoScalingMetricsData,
    ) -> int | None:
        """The count the first firing rule asks for (`workers.policies.autoscaling`), or None."""
        decision = decide_replicas(deployment, rules, metrics, self._clock())
        if decision is None:
            return None
        log.info("deployment %s: %s", deployment.id, describe_decision(deployment, decision))
        return decision.replicas

    def update_desired_replicas_bulk(self, desired_replicas: Mapping[UUID, int]) -> None:
        """Save the counts; the rules that decided them are stamped and say so in history,
        in the same transaction (`autoscaling.save_desired`)."""
        if not desired_replicas:
            return
        with transaction(self._engine) as conn:
            decided = autoscaling.save_desired(conn, desired_replicas, self._metrics, self._clock())
        for saved in decided:
            self._on_decision(saved.deployment, saved.decision)

    def fetch_engine_load(self, deployment_ids: AbstractSet[UUID]) -> dict[UUID, float]:
        """Requests the engines hold (running and waiting), per deployment, as the metrics
        collector last scraped them."""
        by_deployment, _ = self._metrics.read(deployment_ids, ())
        with transaction(self._engine) as conn:
            serving = traffic_autoscaling.serving(conn, deployment_ids)
        return traffic_autoscaling.engine_load(by_deployment, serving)

    def count_serving(self, deployment_ids: AbstractSet[UUID]) -> dict[UUID, int]:
        with transaction(self._engine) as conn:
            return traffic_autoscaling.serving(conn, deployment_ids)

    def save_autoscale(self, decisions: Mapping[UUID, AutoscaleDecision]) -> set[UUID]:
        """Save each decision (`traffic_autoscaling.save`); a change is counted in the
        controller's metrics."""
        with transaction(self._engine) as conn:
            changed = traffic_autoscaling.save(conn, decisions, self._clock().isoformat())
        for deployment_id, (name, before) in changed.items():
            self._on_autoscaled(name, before, decisions[deployment_id])
        return set(changed)

    def scale_to_zero(self, counts: Mapping[UUID, int]) -> set[UUID]:
        with transaction(self._engine) as conn:
            return zero.scale_to_zero(conn, counts)

    def restore_from_zero(self, counts: Mapping[UUID, int]) -> set[UUID]:
        with transaction(self._engine) as conn:
            return zero.restore_from_zero(conn, counts)

    def fetch_endpoint_modes(self) -> dict[UUID, EndpointState]:
        with transaction(self._engine) as conn:
            return zero.endpoint_modes(conn)

    def fetch_rollout_states(
        self, deployments: Sequence[DeploymentInfo]
    ) -> dict[UUID, RolloutState]:
        with transaction(self._engine) as conn:
            return rollouts.load_states(conn, {d.id for d in deployments})

    def apply_rollout_step(
        self, deployment_id: UUID, state: RolloutState, step: RolloutStep
    ) -> bool:
        with transaction(self._engine) as conn:
            return rollouts.apply_step(conn, state, deployment_id, step)

    def mark_terminating_route_status_bulk(self, route_ids: AbstractSet[UUID]) -> None:
        """Active routes leave traffic and drain, then terminate (`take_out_of_service`);
        routes already on their way out are left alone."""
        if not route_ids:
            return
        with transaction(self._engine) as conn:
            take_out_of_service(conn, route_ids, DESTROY)


# Why a route left service, as its history row says (the phases that call these methods).
SCALE_IN = (PhaseName.SCALE, "scaled in")
# Which phase notes a condition (its history row's phase).
_NOTED_BY = {NeverHealthy.error_code: PhaseName.CHECK_STARTUP, NoHostAvailable.error_code:
             PhaseName.PROVISION}  # fmt: skip
DESTROY = (PhaseName.DESTROY, "its deployment is being destroyed")


def _prefixed(row: sa.RowMapping, prefix: str) -> dict[str, Any]:
    return {key.removeprefix(prefix): value for key, value in row.items() if key.startswith(prefix)}
