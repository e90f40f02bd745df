"""The tables of what the controller manages: scaling groups, deployments and their
revisions, hosts, sessions, routes, autoscaling rules."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from workers.adapters.postgres.schema.base import (
    LIVE_SESSION_PREDICATE,
    created_at_column,
    metadata,
    one_of,
    revision_columns,
    updated_at_column,
    values_of,
)
from workers.domain import (
    HOST_INTENTS,
    AutoscaleMode,
    Comparator,
    DeploymentLifecycle,
    HostStatus,
    MetricSource,
    PlacementMode,
    RouteStatus,
    RoutingPolicy,
    SessionStatus,
    TrafficStatus,
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
    created_at_column(),
    # How its deployments' replicas are placed: spread (fewest of the deployment, then
    # least loaded) or pack (most allocated host and device first).
    sa.Column("placement", sa.Text, nullable=False, server_default=PlacementMode.SPREAD.value),
    # Whether the controller moves a replica to make room for one that fits nowhere, or
    # to restore spread after a host joins or comes back.
    sa.Column("rebalance", sa.Boolean, nullable=False, server_default=sa.true()),
    one_of("placement", values_of(PlacementMode), "placement"),
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
    *revision_columns(),
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
    # The traffic autoscaler (`workers.policies.traffic_autoscaler`): what it tracks per
    # replica against its target, its bounds and windows; what it remembers between
    # decisions (panic, last increase) and its last view (inputs, decision) for people.
    sa.Column("autoscale_mode", sa.Text, nullable=False, server_default=AutoscaleMode.OFF.value),
    sa.Column("autoscale_target", sa.Float),
    sa.Column("autoscale_min_replicas", sa.Integer, nullable=False, server_default="1"),
    sa.Column("autoscale_max_replicas", sa.Integer, nullable=False, server_default="10"),
    sa.Column("autoscale_stable_window_s", sa.Float, nullable=False, server_default="60"),
    sa.Column("autoscale_panic_window_s", sa.Float, nullable=False, server_default="6"),
    sa.Column("autoscale_state", JSONB),
    sa.Column("autoscale_view", JSONB),
    # How proxies pick its replicas within the revision the weights chose.
    sa.Column("routing", sa.Text, nullable=False, server_default=RoutingPolicy.LEAST_REQUEST.value),
    # Idle time counts from the latest request or this (creation, setting, last wake).
    sa.Column(
        "idle_counts_from", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    created_at_column(),
    updated_at_column(),
    sa.Column("destroyed_at", sa.DateTime(timezone=True)),
    one_of("lifecycle", values_of(DeploymentLifecycle), "lifecycle"),
    sa.CheckConstraint("replica_count >= 0", name="replica_count"),
    sa.CheckConstraint("desired_replica_count >= 0", name="desired_replica_count"),
    sa.CheckConstraint("drain_s >= 0", name="drain_s"),
    sa.CheckConstraint("scale_to_zero_after_s > 0", name="scale_to_zero_after_s"),
    sa.CheckConstraint("zeroed_from > 0", name="zeroed_from"),
    sa.CheckConstraint("start_deadline_s > 0", name="start_deadline_s"),
    one_of("autoscale_mode", values_of(AutoscaleMode), "autoscale_mode"),
    one_of("routing", values_of(RoutingPolicy), "routing"),
    sa.CheckConstraint("autoscale_target > 0", name="autoscale_target"),
    sa.CheckConstraint(
        "autoscale_min_replicas >= 0 AND autoscale_max_replicas >= autoscale_min_replicas",
        name="autoscale_bounds",
    ),
    sa.CheckConstraint(
        "autoscale_panic_window_s > 0 AND autoscale_stable_window_s >= autoscale_panic_window_s",
        name="autoscale_windows",
    ),
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
    created_at_column(),
    *revision_columns(),
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
    # What its agent detected or was told: each accelerator (index, uuid, model, memory
    # GiB), its cores and memory (0: not reported, no limit).
    sa.Column("devices", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("cpus", sa.Float, nullable=False, server_default="0"),
    sa.Column("memory_gib", sa.Float, nullable=False, server_default="0"),
    one_of("status", values_of(HostStatus), "status"),
    one_of("intent", sorted(s.value for s in HOST_INTENTS), "intent"),
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
    # What it holds there: device indices and the GiB on each (a whole device: all of
    # it), cores and memory.
    sa.Column("gpu_devices", ARRAY(sa.Integer)),
    sa.Column("gpu_gib", sa.Float, nullable=False, server_default="0"),
    sa.Column("cpus", sa.Float, nullable=False, server_default="0"),
    sa.Column("memory_gib", sa.Float, nullable=False, server_default="0"),
    # How its process ended on its own (ERROR): exit code (negative: killed by that signal)
    # and the last lines it wrote, for `deployment show`.
    sa.Column("exit_code", sa.Integer),
    sa.Column("last_output", sa.Text),
    created_at_column(),
    updated_at_column(),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("terminated_at", sa.DateTime(timezone=True)),
    one_of("status", values_of(SessionStatus), "status"),
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
    created_at_column(),
    sa.Column("error_data", JSONB),
    sa.Column("revision", sa.Integer),  # the deployment revision its session runs
    # When it first passed its health check (None: never yet).
    sa.Column("first_healthy_at", sa.DateTime(timezone=True)),
    # Since when it moves to another host (to make room, or to restore spread): it no
    # longer counts as a replica, and leaves once its replacement serves.
    sa.Column("moving_since", sa.DateTime(timezone=True)),
    one_of("status", values_of(RouteStatus), "status"),
    # standby: a blue-green route kept out of traffic until its rollout is promoted.
    one_of("traffic_status", values_of(TrafficStatus), "traffic_status"),
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
    created_at_column(),
    one_of("metric_source", values_of(MetricSource), "metric_source"),
    one_of("comparator", values_of(Comparator), "comparator"),
    sa.CheckConstraint("step_size <> 0", name="step_size"),
    sa.CheckConstraint("cooldown_s >= 0", name="cooldown_s"),
    sa.CheckConstraint(
        "min_replicas IS NULL OR max_replicas IS NULL OR min_replicas <= max_replicas",
        name="bounds",
    ),
    sa.Index("ix_autoscaling_rules_deployment_id", "deployment_id"),
)
