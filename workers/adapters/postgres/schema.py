"""The tables, as SQLAlchemy Core metadata.

Alembic migrations (`migrations/versions/`) create and change the real schema;
this metadata is what the queries are written against, and a test checks the
two agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from workers.domain import (
    HOST_INTENTS,
    Comparator,
    DeploymentLifecycle,
    HostStatus,
    MetricSource,
    RouteStatus,
    SessionStatus,
    TrafficStatus,
)
from workers.phase_runs import PhaseRunState

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TERMINAL_SESSION_STATUSES = tuple(s.value for s in SessionStatus if s.is_terminal)
# A session that has not ended. Literal SQL on purpose: an ON CONFLICT that names
# this partial index must repeat the predicate without bound parameters, or
# PostgreSQL cannot match it once psycopg prepares the statement.
LIVE_SESSION_PREDICATE = f"status NOT IN ({', '.join(repr(s) for s in TERMINAL_SESSION_STATUSES)})"


def _one_of(column: str, values: Iterable[str], name: str) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=name)


def _values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


def _revision_columns() -> list[sa.Column[Any]]:
    """What a revision runs: image, command, environment, resources and health check."""
    return [
        sa.Column("image", sa.Text),
        sa.Column("runtime_variant", sa.Text, nullable=False, server_default="custom"),
        sa.Column("model_path", sa.Text, nullable=False, server_default="/models"),
        sa.Column("resources", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("environ", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("startup_command", sa.Text),
        # Health check of the revision's model server; no path means none is configured.
        sa.Column("health_check_path", sa.Text),
        sa.Column("health_check_interval_s", sa.Float, nullable=False, server_default="10"),
        sa.Column("health_check_max_retries", sa.Integer, nullable=False, server_default="10"),
        sa.Column("health_check_initial_delay_s", sa.Float, nullable=False, server_default="60"),
        sa.Column("health_check_timeout_s", sa.Float, nullable=False, server_default="15"),
        sa.Column("health_check_expected_status", sa.Integer, nullable=False, server_default="200"),
    ]


def _created_at() -> sa.Column[object]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


def _updated_at() -> sa.Column[object]:
    return sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


scaling_groups = sa.Table(
    "scaling_groups",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("app_proxy_addr", sa.Text),
    sa.Column("app_proxy_api_token", sa.Text),
    sa.Column(
        "route_cleanup_statuses",
        ARRAY(sa.Text),
        nullable=False,
        server_default=sa.text("ARRAY['unhealthy']::text[]"),
    ),
    sa.Column("environ", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    _created_at(),
)

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("resource_group", sa.Text, sa.ForeignKey("scaling_groups.name"), nullable=False),
    sa.Column("lifecycle", sa.Text, nullable=False, server_default="pending"),
    sa.Column("replica_count", sa.Integer, nullable=False),
    sa.Column("desired_replica_count", sa.Integer),
    sa.Column("url", sa.Text),
    sa.Column("open_to_public", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("owner", sa.Text),
    sa.Column("project", sa.Text),
    sa.Column("domain", sa.Text, nullable=False, server_default="default"),
    # A copy of the current revision; no image means there is nothing to run yet.
    *_revision_columns(),
    sa.Column("retry_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("drain_s", sa.Float, nullable=False, server_default="10"),
    sa.Column("current_revision", sa.Integer, nullable=False, server_default="1"),
    # The rollout in progress (lifecycle deploying): to which revision, and how.
    sa.Column("deploying_revision", sa.Integer),
    sa.Column("rollout_strategy", sa.Text),
    sa.Column("rollout_max_surge", sa.Text),
    sa.Column("rollout_max_unavailable", sa.Text),
    sa.Column("rollout_promote_delay_s", sa.Float),
    sa.Column("rollout_auto_promote", sa.Boolean),
    sa.Column("rollout_failure_threshold", sa.Integer),
    sa.Column("rollout_progress_deadline_s", sa.Float),
    sa.Column("rollout_desired", sa.Integer),  # the replica count when it began
    sa.Column("rollout_started_at", sa.DateTime(timezone=True)),
    sa.Column("rollout_all_new_healthy_at", sa.DateTime(timezone=True)),  # blue-green
    sa.Column("rollout_promoted_at", sa.DateTime(timezone=True)),
    sa.Column("rollout_promote_requested", sa.Boolean, nullable=False, server_default=sa.false()),
    # Canary: percent of traffic per step ("10,50"), how long each holds; the limits the new
    # revision's requests are judged by (any strategy); the step reached and since when.
    sa.Column("rollout_canary_steps", sa.Text),
    sa.Column("rollout_canary_interval_s", sa.Float),
    sa.Column("rollout_max_error_rate", sa.Float),
    sa.Column("rollout_min_requests", sa.Integer),
    sa.Column("rollout_max_p95_latency_ratio", sa.Float),
    sa.Column("rollout_step", sa.Integer),
    sa.Column("rollout_step_started_at", sa.DateTime(timezone=True)),
    # Steps applied so far: a step applies only if none was applied since it was planned
    # (two runs planning from one state never both start a surge).
    sa.Column("rollout_steps_applied", sa.Integer, nullable=False, server_default="0"),
    # The rollout step's own counts (new healthy, new total, old total, desired): what
    # `deployment list` and `--wait` show, never counted again elsewhere.
    sa.Column("rollout_progress", JSONB),
    # Why it is not simply serving, as the controller last said (an error, or what it
    # waits for), set in the same transaction as that change; None when nothing is wrong.
    sa.Column("condition_reason", sa.Text),
    sa.Column("condition_message", sa.Text),
    sa.Column("condition_at", sa.DateTime(timezone=True)),
    # Scale to zero: idle this long (no request), it gives its replicas back (None: never).
    sa.Column("scale_to_zero_after_s", sa.Float),
    # A session not running this long after it was asked for is given up and replaced
    # (None: MODELFLEET_SESSION_START_DEADLINE_S).
    sa.Column("start_deadline_s", sa.Float),
    # The replica count it had when it went to zero by idleness; set only while it is
    # there (a request wakes it back to this). None at zero: an operator asked for 0.
    sa.Column("zeroed_from", sa.Integer),
    # Idle time counts from the latest request or this (creation, setting, last wake).
    sa.Column(
        "idle_counts_from", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    _created_at(),
    _updated_at(),
    sa.Column("destroyed_at", sa.DateTime(timezone=True)),
    _one_of("lifecycle", _values(DeploymentLifecycle), "lifecycle"),
    sa.CheckConstraint("replica_count >= 0", name="replica_count"),
    sa.CheckConstraint("desired_replica_count >= 0", name="desired_replica_count"),
    sa.CheckConstraint("drain_s >= 0", name="drain_s"),
    sa.CheckConstraint("scale_to_zero_after_s > 0", name="scale_to_zero_after_s"),
    sa.CheckConstraint("zeroed_from > 0", name="zeroed_from"),
    sa.CheckConstraint("start_deadline_s > 0", name="start_deadline_s"),
    sa.Index(
        "uq_deployments_name_live",
        "name",
        unique=True,
        postgresql_where=sa.text("lifecycle <> 'destroyed'"),
    ),
    sa.Index("ix_deployments_lifecycle", "lifecycle"),
)

# Immutable, numbered per deployment; the deployment row copies its current one.
deployment_revisions = sa.Table(
    "deployment_revisions",
    metadata,
    sa.Column(
        "deployment_id", UUID(as_uuid=True), sa.ForeignKey("deployments.id"), primary_key=True
    ),
    sa.Column("number", sa.Integer, primary_key=True),
    _created_at(),
    *_revision_columns(),
    sa.Column("changed", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("failed_reason", sa.Text),  # why a rollout to it was rolled back
)

# The machines that run sessions; each one's agent (`modelfleet runner`) registers it and
# keeps `last_heartbeat_at` fresh (database clock; nothing else writes it). The
# controller places sessions on them (`sessions.placed_on`) and declares a silent one
# unreachable or lost; `intent` is what an operator asked (ready, cordoned, draining),
# which a host's status returns to whenever it lives.
hosts = sa.Table(
    "hosts",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("address", sa.Text, nullable=False),  # what its sessions are reached by
    sa.Column("slots", sa.Integer, nullable=False, server_default="0"),  # 0: no limit
    sa.Column("status", sa.Text, nullable=False, server_default=HostStatus.READY.value),
    sa.Column("intent", sa.Text, nullable=False, server_default=HostStatus.READY.value),
    # Why it is not simply ready, for `host list` (unreachable, or its replicas failing
    # their probes while it heartbeats); None when nothing is to be said.
    sa.Column("condition", sa.Text),
    # Since when no replica on it passed a probe while probes of them got no answer at
    # all: no new session goes there until one passes again.
    sa.Column("probes_failing_since", sa.DateTime(timezone=True)),
    sa.Column(
        "last_heartbeat_at",
        sa.DateTime(timezone=True),
        nullable=False,
        server_default=sa.func.now(),
    ),
    sa.Column(
        "registered_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column(
        "changed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    _one_of("status", _values(HostStatus), "status"),
    _one_of("intent", sorted(s.value for s in HOST_INTENTS), "intent"),
    sa.CheckConstraint("slots >= 0", name="slots"),
)

# What the controller itself has been able to see (one row per watcher, `hosts.check`):
# when it last looked, since when it has looked without a gap (a silence counts only
# from then: its own outage is not the hosts' fault), and when it last gave a host up.
controller_watch = sa.Table(
    "controller_watch",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("seeing_since", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_given_up_at", sa.DateTime(timezone=True)),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("route_id", UUID(as_uuid=True), sa.ForeignKey("routes.id"), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="PENDING"),
    sa.Column("spec", JSONB, nullable=False),
    sa.Column("host", sa.Text),
    sa.Column("port", sa.Integer),
    sa.Column("pid", sa.Integer),  # the process a local runner started for it, known by
    # its identity: the pid with its start time (clock ticks after boot) and boot id
    sa.Column("process_started_ticks", sa.BigInteger),
    sa.Column("boot_id", sa.Text),
    sa.Column("runner", sa.Text),  # the name of the runner (its host) that claimed it
    sa.Column("placed_on", sa.Text),  # the host the controller chose for it (None: unplaced)
    # How its process ended on its own (ERROR): exit code (negative: killed by that signal)
    # and the last lines it wrote, for `deployment show`.
    sa.Column("exit_code", sa.Integer),
    sa.Column("last_output", sa.Text),
    _created_at(),
    _updated_at(),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("terminated_at", sa.DateTime(timezone=True)),
    _one_of("status", _values(SessionStatus), "status"),
    # The guarantee that a repeated enqueue never starts a second model server.
    sa.Index(
        "uq_sessions_route_id_live",
        "route_id",
        unique=True,
        postgresql_where=sa.text(LIVE_SESSION_PREDICATE),
    ),
    sa.Index("ix_sessions_status", "status"),
    sa.Index("ix_sessions_placed_on", "placed_on"),
)

routes = sa.Table(
    "routes",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("deployment_id", UUID(as_uuid=True), sa.ForeignKey("deployments.id"), nullable=False),
    sa.Column(
        "session_id",
        UUID(as_uuid=True),
        sa.ForeignKey("sessions.id", use_alter=True, name="fk_routes_session_id_sessions"),
    ),
    sa.Column("status", sa.Text, nullable=False, server_default="provisioning"),
    sa.Column("traffic_ratio", sa.Float, nullable=False, server_default="1"),
    sa.Column("traffic_status", sa.Text, nullable=False, server_default=TrafficStatus.ACTIVE.value),
    sa.Column(
        "status_changed_at",
        sa.DateTime(timezone=True),
        nullable=False,
        server_default=sa.func.now(),
    ),
    _created_at(),
    sa.Column("error_data", JSONB),
    sa.Column("revision", sa.Integer),  # the deployment revision its session runs
    # When it first passed its health check (None: never yet).
    sa.Column("first_healthy_at", sa.DateTime(timezone=True)),
    _one_of("status", _values(RouteStatus), "status"),
    # standby: a blue-green route kept out of traffic until its rollout is promoted.
    _one_of("traffic_status", _values(TrafficStatus), "traffic_status"),
    sa.Index("ix_routes_deployment_id_status", "deployment_id", "status"),
    sa.Index("ix_routes_status", "status"),
)

autoscaling_rules = sa.Table(
    "autoscaling_rules",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("deployment_id", UUID(as_uuid=True), sa.ForeignKey("deployments.id"), nullable=False),
    sa.Column("metric_source", sa.Text, nullable=False),
    sa.Column("metric_name", sa.Text, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("comparator", sa.Text, nullable=False),
    sa.Column("step_size", sa.Integer, nullable=False),
    sa.Column("cooldown_s", sa.Integer, nullable=False, server_default="300"),
    sa.Column("min_replicas", sa.Integer),
    sa.Column("max_replicas", sa.Integer),
    sa.Column("last_triggered_at", sa.DateTime(timezone=True)),
    _created_at(),
    _one_of("metric_source", _values(MetricSource), "metric_source"),
    _one_of("comparator", _values(Comparator), "comparator"),
    sa.CheckConstraint("step_size <> 0", name="step_size"),
    sa.CheckConstraint("cooldown_s >= 0", name="cooldown_s"),
    sa.CheckConstraint(
        "min_replicas IS NULL OR max_replicas IS NULL OR min_replicas <= max_replicas",
        name="bounds",
    ),
    sa.Index("ix_autoscaling_rules_deployment_id", "deployment_id"),
)


def _history_table(name: str, entity: str, parent: str, *extra: sa.Column[Any]) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(entity, UUID(as_uuid=True), sa.ForeignKey(f"{parent}.id"), nullable=False),
        sa.Column("phase", sa.Text, nullable=False),
        sa.Column("from_status", sa.Text),
        sa.Column("to_status", sa.Text, nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("error_code", sa.Text),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
        _created_at(),
        _updated_at(),
        *extra,
        sa.Index(f"ix_{name}_{entity}", entity, sa.text("id DESC")),
    )


deployment_history = _history_table("deployment_history", "deployment_id", "deployments")
host_history = _history_table("host_history", "host_id", "hosts")
route_history = _history_table(
    "route_history",
    "route_id",
    "routes",
    # An error that counts against the route's revision (`StatusTransition.revision_failure`).
    sa.Column("revision_failure", sa.Boolean, nullable=False, server_default=sa.false()),
)


phase_runs = sa.Table(
    "phase_runs",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("phase", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False, server_default=PhaseRunState.RUNNING.value),
    sa.Column(
        "started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("duration_s", sa.Float),
    sa.Column("item_count", sa.Integer, nullable=False),
    sa.Column("task_count", sa.Integer, nullable=False),
    sa.Column("success_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("stale_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("skipped_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("waiting_count", sa.Integer, nullable=False, server_default="0"),
    # Items no outcome was stored for (a recovered run): they stay where they are.
    sa.Column("missing_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("transition_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lock_token", sa.Text, nullable=False),
    sa.Column("error", sa.Text),  # why a run failed
    # The first error outcomes, for `modelfleet status` and `phase run` to show.
    sa.Column("error_samples", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    _one_of("state", _values(PhaseRunState), "state"),
    sa.Index("ix_phase_runs_phase_started_at", "phase", sa.text("started_at DESC")),
    sa.Index(
        "ix_phase_runs_running_deadline_at",
        "deadline_at",
        postgresql_where=sa.text("state = 'running'"),
    ),
    # The guard that no phase ever runs twice at once, whatever happened to its Redis lock.
    sa.Index(
        "uq_phase_runs_phase_running",
        "phase",
        unique=True,
        postgresql_where=sa.text("state = 'running'"),
    ),
)
