"""What the operator reads: plain rows for the CLI's tables and its `--json`.

Rows are dicts of JSON-friendly values (ids and times become strings at output).
App proxy tokens are never selected.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from workers.adapters.postgres.engine import transaction
from workers.adapters.postgres.schema import (
    autoscaling_rules,
    deployment_history,
    deployment_revisions,
    deployments,
    host_history,
    hosts,
    route_history,
    routes,
    scaling_groups,
    sessions,
)
from workers.adapters.postgres.terms import LIVE_SESSION, SESSION_HOST, TARGET_REPLICAS
from workers.domain import ACTIVE_ROUTE_STATUSES, HostStatus

Row = dict[str, Any]

_ACTIVE = [s.value for s in ACTIVE_ROUTE_STATUSES]


class Reports:
    def __init__(self, *, engine: sa.Engine) -> None:
        self._engine = engine

    def scaling_groups(self) -> list[Row]:
        query = sa.select(
            scaling_groups.c.name,
            scaling_groups.c.app_proxy_addr,
            scaling_groups.c.placement,
            scaling_groups.c.rebalance,
            scaling_groups.c.route_cleanup_statuses,
            scaling_groups.c.created_at,
        ).order_by(scaling_groups.c.name)
        return self._rows(query)

    def deployments(self, lifecycle: str | None = None) -> list[Row]:
        query = _deployments_query()
        if lifecycle is not None:
            query = query.where(deployments.c.lifecycle == lifecycle)
        return self._rows(query)

    def find_deployment(self, ref: str) -> Row | None:
        """By id, or by name: the live one, else the newest destroyed one.

        An id always wins: a deployment whose name looks like another's id (made
        before such names were refused) never answers for it.
        """
        ref_id = _uuid_or_none(ref)
        if ref_id is not None:
            by_id = self._rows(_deployments_query().where(deployments.c.id == ref_id))
            if by_id:
                return by_id[0]
        found = self._rows(_deployments_query().where(deployments.c.name == ref))
        live = [row for row in found if row["lifecycle"] != "destroyed"]
        return (live or found)[-1] if found else None

    def deployment_history(self, deployment_id: UUID, limit: int = 10) -> list[Row]:
        query = (
            sa.select(*_history_columns(deployment_history))
            .where(deployment_history.c.deployment_id == deployment_id)
            .order_by(deployment_history.c.id.desc())
            .limit(limit)
        )
        return self._rows(query)

    def routes(self, deployment_id: UUID | None = None) -> list[Row]:
        query = (
            sa.select(
                routes.c.id,
                routes.c.deployment_id,
                deployments.c.name.label("deployment"),
                routes.c.status,
                routes.c.revision,
                routes.c.traffic_status,
                routes.c.traffic_ratio,
                routes.c.session_id,
                sessions.c.status.label("session_status"),
                SESSION_HOST.label("host_name"),
                sessions.c.host,
                sessions.c.port,
                routes.c.status_changed_at,
                routes.c.error_data,
            )
            .join(deployments, deployments.c.id == routes.c.deployment_id)
            .outerjoin(sessions, sessions.c.id == routes.c.session_id)
            .order_by(routes.c.created_at, routes.c.id)
        )
        if deployment_id is not None:
            query = query.where(routes.c.deployment_id == deployment_id)
        return self._rows(query)

    def hosts(self) -> list[Row]:
        """Every host: address, status, what its operator asked (intent), why it is not
        simply ready (condition), slots, live sessions, heartbeat age (database clock)."""
        on_it = SESSION_HOST
        live = (
            sa.select(sa.func.count()).where(on_it == hosts.c.name, LIVE_SESSION).scalar_subquery()
        )
        age = sa.func.round(
            sa.cast(
                sa.func.extract("epoch", sa.func.now() - hosts.c.last_heartbeat_at), sa.Numeric
            ),
            1,
        )
        held = sa.func.unnest(sessions.c.gpu_devices).table_valued("device").render_derived()
        gpus_used = (
            sa.select(sa.func.count(sa.distinct(held.c.device)))
            .select_from(sessions.join(held, sa.true()))
            .where(on_it == hosts.c.name, LIVE_SESSION)
            .scalar_subquery()
        )
        query = sa.select(
            hosts.c.name,
            hosts.c.address,
            hosts.c.status,
            hosts.c.intent,
            hosts.c.condition,
            live.label("sessions"),
            hosts.c.slots,
            gpus_used.label("gpus_used"),
            sa.func.jsonb_array_length(hosts.c.devices).label("gpus_total"),
            hosts.c.cpus,
            hosts.c.memory_gib,
            sa.cast(age, sa.Float).label("heartbeat_age_s"),
            hosts.c.registered_at,
            hosts.c.changed_at,
        ).order_by(hosts.c.name)
        return self._rows(query)

    def host_devices(self, name: str) -> list[Row]:
        """A host's devices, each with what live sessions hold on it: deployment, route,
        GiB (a device nothing holds: one row with no deployment)."""
        device = sa.func.jsonb_array_elements(hosts.c.devices).table_valued(
            sa.column("value", JSONB)
        )
        listed = (
            sa.select(
                sa.cast(device.c.value["index"].astext, sa.Integer).label("index"),
                device.c.value["uuid"].astext.label("uuid"),
                device.c.value["model"].astext.label("model"),
                sa.cast(device.c.value["memory_gib"].astext, sa.Float).label("memory_gib"),
            )
            .select_from(hosts)
            .join(device, sa.true())
            .where(hosts.c.name == name)
            .subquery()
        )
        holder = (
            sa.select(sessions.c.route_id, routes.c.deployment_id, deployments.c.name,
                      sessions.c.gpu_gib, sessions.c.gpu_devices)
            .join(routes, routes.c.id == sessions.c.route_id)
            .join(deployments, deployments.c.id == routes.c.deployment_id)
            .where(SESSION_HOST.in_([name]), LIVE_SESSION)
            .subquery()
        )  # fmt: skip
        query = (
            sa.select(
                listed,
                holder.c.name.label("deployment"),
                holder.c.route_id,
                holder.c.gpu_gib.label("held_gib"),
            )
            .outerjoin(holder, listed.c.index == sa.func.any(holder.c.gpu_devices))
            .order_by(listed.c.index, holder.c.name)
        )
        return self._rows(query)

    def host_losses(self) -> int:
        """How many times a host was declared lost (its history keeps every time)."""
        return self.host_moves_to(HostStatus.LOST)

    def host_moves_to(self, status: HostStatus) -> int:
        """How many times a host moved to `status` (lost; unreachable: silent, not given up)."""
        query = sa.select(sa.func.count()).where(
            host_history.c.to_status == status.value, host_history.c.from_status != status.value
        )
        with transaction(self._engine) as conn:
            return int(conn.execute(query).scalar_one())

    def phase_moves(self, phases: Collection[str]) -> dict[tuple[UUID, str], int]:
        """(deployment id, phase) -> how many times that phase moved the deployment (history
        keeps every time): scale-to-zero and wake counts."""
        query = (
            sa.select(deployment_history.c.deployment_id, deployment_history.c.phase,
                      sa.func.count().label("times"))
            .where(deployment_history.c.phase.in_(list(phases)),
                   deployment_history.c.result == "success",
                   deployment_history.c.from_status != deployment_history.c.to_status)
            .group_by(deployment_history.c.deployment_id, deployment_history.c.phase)
        )  # fmt: skip
        with transaction(self._engine) as conn:
            return {(row.deployment_id, row.phase): row.times for row in conn.execute(query)}

    def host_history(self, name: str, limit: int = 10) -> list[Row]:
        query = (
            sa.select(*_history_columns(host_history))
            .join(hosts, hosts.c.id == host_history.c.host_id)
            .where(hosts.c.name == name)
            .order_by(host_history.c.id.desc())
            .limit(limit)
        )
        return self._rows(query)

    def route_errors(self, deployment_id: UUID, limit: int = 10) -> list[Row]:
        """The latest failed history rows of a deployment's routes."""
        query = (
            sa.select(route_history.c.route_id, *_history_columns(route_history))
            .join(routes, routes.c.id == route_history.c.route_id)
            .where(routes.c.deployment_id == deployment_id, route_history.c.result == "error")
            .order_by(route_history.c.id.desc())
            .limit(limit)
        )
        return self._rows(query)

    def revisions(self, deployment_id: UUID) -> list[Row]:
        """Every revision kept, newest first, with its state: current, deploying, failed or old."""
        state = sa.case(
            (deployment_revisions.c.number == deployments.c.current_revision, "current"),
            (deployment_revisions.c.number == deployments.c.deploying_revision, "deploying"),
            (deployment_revisions.c.failed_reason.is_not(None), "failed"),
            else_="old",
        )
        query = (
            sa.select(
                deployment_revisions.c.number,
                deployment_revisions.c.created_at,
                deployment_revisions.c.image,
                deployment_revisions.c.startup_command.label("command"),
                deployment_revisions.c.changed,
                state.label("state"),
                deployment_revisions.c.failed_reason.label("reason"),
            )
            .join(deployments, deployments.c.id == deployment_revisions.c.deployment_id)
            .where(deployment_revisions.c.deployment_id == deployment_id)
            .order_by(deployment_revisions.c.number.desc())
        )
        return self._rows(query)

    def revision_specs(self, deployment_id: UUID, number: int) -> list[Row]:
        """What revision `number` runs (environment included)."""
        query = sa.select(deployment_revisions).where(
            deployment_revisions.c.deployment_id == deployment_id,
            deployment_revisions.c.number == number,
        )
        return self._rows(query)

    def revision_failure(self, deployment_id: UUID, number: int) -> str | None:
        """Why a rollout to revision `number` was rolled back, if it was."""
        rows = self.revision_specs(deployment_id, number)
        return rows[0]["failed_reason"] if rows else None

    def exited_sessions(self, deployment_id: UUID, limit: int = 10) -> list[Row]:
        """A deployment's sessions that ended on their own: exit code and last output."""
        query = (
            sa.select(
                sessions.c.terminated_at,
                sessions.c.route_id,
                sessions.c.exit_code,
                sessions.c.last_output,
            )
            .join(routes, routes.c.id == sessions.c.route_id)
            .where(routes.c.deployment_id == deployment_id, sessions.c.status == "ERROR")
            .order_by(sessions.c.terminated_at.desc().nulls_last())
            .limit(limit)
        )
        return self._rows(query)

    def autoscaling_rules(self, deployment_id: UUID | None = None) -> list[Row]:
        query = (
            sa.select(autoscaling_rules, deployments.c.name.label("deployment"))
            .join(deployments, deployments.c.id == autoscaling_rules.c.deployment_id)
            .order_by(autoscaling_rules.c.created_at)
        )
        if deployment_id is not None:
            query = query.where(autoscaling_rules.c.deployment_id == deployment_id)
        return self._rows(query)

    def deployment_counts(self) -> dict[str, int]:
        return self._counts(deployments.c.lifecycle)

    def route_counts(self, *, live_only: bool = False) -> dict[str, int]:
        """Routes by status; `live_only`: of deployments not destroyed."""
        if not live_only:
            return self._counts(routes.c.status)
        live = sa.select(deployments.c.id).where(deployments.c.lifecycle != "destroyed")
        return self._counts(routes.c.status, routes.c.deployment_id.in_(live))

    def _counts(self, column: sa.Column[Any], *where: sa.ColumnElement[bool]) -> dict[str, int]:
        query = sa.select(column, sa.func.count()).where(*where).group_by(column).order_by(column)
        with transaction(self._engine) as conn:
            return {status: count for status, count in conn.execute(query)}

    def _rows(self, query: sa.Select[Any]) -> list[Row]:
        with transaction(self._engine) as conn:
            return [dict(row) for row in conn.execute(query).mappings()]


def _deployments_query() -> sa.Select[Any]:
    active = (
        sa.select(sa.func.count())
        .where(routes.c.deployment_id == deployments.c.id, routes.c.status.in_(_ACTIVE))
        .scalar_subquery()
    )
    healthy = (
        sa.select(sa.func.count())
        .where(routes.c.deployment_id == deployments.c.id, routes.c.status == "healthy")
        .scalar_subquery()
    )
    live_sessions = (  # model servers not stopped yet (a destroy waits for them)
        sa.select(sa.func.count())
        .select_from(sessions)
        .join(routes, routes.c.id == sessions.c.route_id)
        .where(
            routes.c.deployment_id == deployments.c.id,
            LIVE_SESSION,
        )
        .scalar_subquery()
    )
    has_proxy = (
        sa.select(scaling_groups.c.app_proxy_addr.is_not(None))
        .where(scaling_groups.c.name == deployments.c.resource_group)
        .scalar_subquery()
    )
    return sa.select(
        deployments.c.id,
        deployments.c.name,
        deployments.c.resource_group,
        deployments.c.lifecycle,
        deployments.c.replica_count,
        deployments.c.desired_replica_count,
        # The count the controller works toward: the autoscaler's, else the operator's.
        TARGET_REPLICAS.label("desired"),
        active.label("active_routes"),
        healthy.label("healthy_routes"),
        live_sessions.label("live_sessions"),
        has_proxy.label("group_has_app_proxy"),
        deployments.c.url,
        deployments.c.image,
        deployments.c.retry_count,
        deployments.c.current_revision,
        deployments.c.deploying_revision,
        deployments.c.rollout_progress,
        deployments.c.resources,
        deployments.c.condition_reason,
        deployments.c.condition_message,
        deployments.c.condition_at,
        deployments.c.drain_s,
        deployments.c.scale_to_zero_after_s,
        deployments.c.zeroed_from,
        deployments.c.autoscale_mode,
        deployments.c.autoscale_target,
        deployments.c.autoscale_min_replicas,
        deployments.c.autoscale_max_replicas,
        deployments.c.autoscale_stable_window_s,
        deployments.c.autoscale_panic_window_s,
        deployments.c.autoscale_view,
        deployments.c.routing,
        deployments.c.created_at,
        sa.func.extract("epoch", sa.func.now() - deployments.c.destroyed_at).label(
            "destroyed_for_s"
        ),
    ).order_by(deployments.c.created_at)


def _history_columns(table: sa.Table) -> list[sa.Column[Any]]:
    names = ("phase", "from_status", "to_status", "result", "error_code", "message", "attempts")
    return [table.c[name] for name in names] + [table.c.updated_at]


def _uuid_or_none(ref: str) -> UUID | None:
    try:
        return UUID(ref)
    except ValueError:
        return None
