"""Initial schema: scaling groups, deployments, routes, sessions, rules, history.

Revision ID: 0001
Revises:
Create Date: 2026-11-21 10:37:09.415337
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scaling_groups",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("app_proxy_addr", sa.Text(), nullable=True),
        sa.Column("app_proxy_api_token", sa.Text(), nullable=True),
        sa.Column(
            "route_cleanup_statuses",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("ARRAY['unhealthy']::text[]"),
            nullable=False,
        ),
        sa.Column(
            "environ",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_scaling_groups")),
    )
    op.create_table(
        "deployments",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("resource_group", sa.Text(), nullable=False),
        sa.Column("lifecycle", sa.Text(), server_default="pending", nullable=False),
        sa.Column("replica_count", sa.Integer(), nullable=False),
        sa.Column("desired_replica_count", sa.Integer(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("open_to_public", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("owner", sa.Text(), nullable=True),
        sa.Column("project", sa.Text(), nullable=True),
        sa.Column("domain", sa.Text(), server_default="default", nullable=False),
        sa.Column("image", sa.Text(), nullable=True),
        sa.Column("runtime_variant", sa.Text(), server_default="custom", nullable=False),
        sa.Column("model_path", sa.Text(), server_default="/models", nullable=False),
        sa.Column(
            "resources",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "environ",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("startup_command", sa.Text(), nullable=True),
        sa.Column("health_check_path", sa.Text(), nullable=True),
        sa.Column("health_check_interval_s", sa.Float(), server_default="10", nullable=False),
        sa.Column("health_check_max_retries", sa.Integer(), server_default="10", nullable=False),
        sa.Column("health_check_initial_delay_s", sa.Float(), server_default="60", nullable=False),
        sa.Column("health_check_timeout_s", sa.Float(), server_default="15", nullable=False),
        sa.Column(
            "health_check_expected_status", sa.Integer(), server_default="200", nullable=False
        ),
        sa.Column("retry_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "lifecycle IN ('pending', 'scaling', 'ready', 'destroying', 'destroyed')",
            name=op.f("ck_deployments_lifecycle"),
        ),
        sa.CheckConstraint(
            "desired_replica_count >= 0", name=op.f("ck_deployments_desired_replica_count")
        ),
        sa.CheckConstraint("replica_count >= 0", name=op.f("ck_deployments_replica_count")),
        sa.ForeignKeyConstraint(
            ["resource_group"],
            ["scaling_groups.name"],
            name=op.f("fk_deployments_resource_group_scaling_groups"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
    )
    op.create_index("ix_deployments_lifecycle", "deployments", ["lifecycle"], unique=False)
    op.create_index(
        "uq_deployments_name_live",
        "deployments",
        ["name"],
        unique=True,
        postgresql_where=sa.text("lifecycle <> 'destroyed'"),
    )
    op.create_table(
        "autoscaling_rules",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("deployment_id", sa.UUID(), nullable=False),
        sa.Column("metric_source", sa.Text(), nullable=False),
        sa.Column("metric_name", sa.Text(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("comparator", sa.Text(), nullable=False),
        sa.Column("step_size", sa.Integer(), nullable=False),
        sa.Column("cooldown_s", sa.Integer(), server_default="300", nullable=False),
        sa.Column("min_replicas", sa.Integer(), nullable=True),
        sa.Column("max_replicas", sa.Integer(), nullable=True),
        sa.Column("last_triggered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "comparator IN ('lt', 'le', 'gt', 'ge')", name=op.f("ck_autoscaling_rules_comparator")
        ),
        sa.CheckConstraint(
            "metric_source IN ('session', 'inference_framework')",
            name=op.f("ck_autoscaling_rules_metric_source"),
        ),
        sa.CheckConstraint("cooldown_s >= 0", name=op.f("ck_autoscaling_rules_cooldown_s")),
        sa.CheckConstraint(
            "min_replicas IS NULL OR max_replicas IS NULL OR min_replicas <= max_replicas",
            name=op.f("ck_autoscaling_rules_bounds"),
        ),
        sa.CheckConstraint("step_size <> 0", name=op.f("ck_autoscaling_rules_step_size")),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_autoscaling_rules_deployment_id_deployments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_autoscaling_rules")),
    )
    op.create_index(
        "ix_autoscaling_rules_deployment_id", "autoscaling_rules", ["deployment_id"], unique=False
    )
    op.create_table(
        "deployment_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("deployment_id", sa.UUID(), nullable=False),
        sa.Column("phase", sa.Text(), nullable=False),
        sa.Column("from_status", sa.Text(), nullable=True),
        sa.Column("to_status", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("error_code", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), server_default="", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_deployment_history_deployment_id_deployments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_history")),
    )
    op.create_index(
        "ix_deployment_history_deployment_id",
        "deployment_history",
        ["deployment_id", sa.literal_column("id DESC")],
        unique=False,
    )
    op.create_table(
        "routes",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("deployment_id", sa.UUID(), nullable=False),
        sa.Column("session_id", sa.UUID(), nullable=True),
        sa.Column("status", sa.Text(), server_default="provisioning", nullable=False),
        sa.Column("traffic_ratio", sa.Float(), server_default="1", nullable=False),
        sa.Column("traffic_status", sa.Text(), server_default="active", nullable=False),
        sa.Column(
            "status_changed_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("error_data", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.CheckConstraint(
            "status IN ('provisioning', 'healthy', 'unhealthy', 'degraded', 'terminating',"
            " 'terminated', 'failed_to_start')",
            name=op.f("ck_routes_status"),
        ),
        sa.CheckConstraint(
            "traffic_status IN ('active', 'inactive')", name=op.f("ck_routes_traffic_status")
        ),
        sa.ForeignKeyConstraint(
            ["deployment_id"], ["deployments.id"], name=op.f("fk_routes_deployment_id_deployments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routes")),
    )
    op.create_index(
        "ix_routes_deployment_id_status", "routes", ["deployment_id", "status"], unique=False
    )
    op.create_index("ix_routes_status", "routes", ["status"], unique=False)
    op.create_table(
        "route_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("route_id", sa.UUID(), nullable=False),
        sa.Column("phase", sa.Text(), nullable=False),
        sa.Column("from_status", sa.Text(), nullable=True),
        sa.Column("to_status", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("error_code", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), server_default="", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["route_id"], ["routes.id"], name=op.f("fk_route_history_route_id_routes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_route_history")),
    )
    op.create_index(
        "ix_route_history_route_id",
        "route_history",
        ["route_id", sa.literal_column("id DESC")],
        unique=False,
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("route_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default="PENDING", nullable=False),
        sa.Column("spec", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("host", sa.Text(), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("terminated_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('PENDING', 'SCHEDULED', 'PREPARING', 'CREATING', 'RUNNING', 'TERMINATING',"
            " 'TERMINATED', 'ERROR', 'CANCELLED')",
            name=op.f("ck_sessions_status"),
        ),
        sa.ForeignKeyConstraint(
            ["route_id"], ["routes.id"], name=op.f("fk_sessions_route_id_routes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
    )
    op.create_index("ix_sessions_status", "sessions", ["status"], unique=False)
    op.create_index(
        "uq_sessions_route_id_live",
        "sessions",
        ["route_id"],
        unique=True,
        postgresql_where=sa.text("status NOT IN ('TERMINATED', 'ERROR', 'CANCELLED')"),
    )
    # routes and sessions point at each other: the second key comes once both exist.
    op.create_foreign_key(
        "fk_routes_session_id_sessions", "routes", "sessions", ["session_id"], ["id"]
    )


def downgrade() -> None:
    op.drop_constraint("fk_routes_session_id_sessions", "routes", type_="foreignkey")
    op.drop_index(
        "uq_sessions_route_id_live",
        table_name="sessions",
        postgresql_where=sa.text("status NOT IN ('TERMINATED', 'ERROR', 'CANCELLED')"),
    )
    op.drop_index("ix_sessions_status", table_name="sessions")
    op.drop_table("sessions")
    op.drop_index("ix_route_history_route_id", table_name="route_history")
    op.drop_table("route_history")
    op.drop_index("ix_routes_status", table_name="routes")
    op.drop_index("ix_routes_deployment_id_status", table_name="routes")
    op.drop_table("routes")
    op.drop_index("ix_deployment_history_deployment_id", table_name="deployment_history")
    op.drop_table("deployment_history")
    op.drop_index("ix_autoscaling_rules_deployment_id", table_name="autoscaling_rules")
    op.drop_table("autoscaling_rules")
    op.drop_index(
        "uq_deployments_name_live",
        table_name="deployments",
        postgresql_where=sa.text("lifecycle <> 'destroyed'"),
    )
    op.drop_index("ix_deployments_lifecycle", table_name="deployments")
    op.drop_table("deployments")
    op.drop_table("scaling_groups")
