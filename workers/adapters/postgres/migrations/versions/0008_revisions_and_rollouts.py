"""Revisions and rollouts: `deployment_revisions`, each deployment's current and deploying
revision with its rollout, each route's revision, the lifecycle `deploying` and the
traffic status `standby`. Every existing deployment gets revision 1 from its own columns.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 07:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIFECYCLES = ("pending", "scaling", "ready", "destroying", "destroyed")
_WITH_DEPLOYING = ("pending", "scaling", "ready", "deploying", "destroying", "destroyed")
_REVISION_COLUMNS = (
    "image, runtime_variant, model_path, resources, environ, startup_command, "
    "health_check_path, health_check_interval_s, health_check_max_retries, "
    "health_check_initial_delay_s, health_check_timeout_s, health_check_expected_status"
)
_ROLLOUT_COLUMNS = (
    ("deploying_revision", sa.Integer()),
    ("rollout_strategy", sa.Text()),
    ("rollout_max_surge", sa.Text()),
    ("rollout_max_unavailable", sa.Text()),
    ("rollout_promote_delay_s", sa.Float()),
    ("rollout_auto_promote", sa.Boolean()),
    ("rollout_failure_threshold", sa.Integer()),
    ("rollout_progress_deadline_s", sa.Float()),
    ("rollout_desired", sa.Integer()),
    ("rollout_started_at", sa.DateTime(timezone=True)),
    ("rollout_all_new_healthy_at", sa.DateTime(timezone=True)),
    ("rollout_promoted_at", sa.DateTime(timezone=True)),
)


def _check(table: str, name: str, column: str, allowed: Sequence[str]) -> None:
    op.drop_constraint(op.f(f"ck_{table}_{name}"), table, type_="check")
    listed = ", ".join(f"'{value}'" for value in allowed)
    op.create_check_constraint(op.f(f"ck_{table}_{name}"), table, f"{column} IN ({listed})")


def upgrade() -> None:
    _check("deployments", "lifecycle", "lifecycle", _WITH_DEPLOYING)
    _check("routes", "traffic_status", "traffic_status", ("active", "standby", "inactive"))
    op.create_table(
        "deployment_revisions",
        sa.Column("deployment_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
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
        sa.Column(
            "changed",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("failed_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_deployment_revisions_deployment_id_deployments"),
        ),
        sa.PrimaryKeyConstraint("deployment_id", "number", name=op.f("pk_deployment_revisions")),
    )
    op.add_column(
        "deployments",
        sa.Column("current_revision", sa.Integer(), server_default="1", nullable=False),
    )
    for name, kind in _ROLLOUT_COLUMNS:
        op.add_column("deployments", sa.Column(name, kind, nullable=True))
    op.add_column(
        "deployments",
        sa.Column(
            "rollout_promote_requested", sa.Boolean(), server_default=sa.false(), nullable=False
        ),
    )
    op.add_column("routes", sa.Column("revision", sa.Integer(), nullable=True))
    op.execute(
        "INSERT INTO deployment_revisions "
        f"(deployment_id, number, created_at, {_REVISION_COLUMNS}) "
        f"SELECT id, 1, created_at, {_REVISION_COLUMNS} FROM deployments"
    )
    op.execute("UPDATE routes SET revision = 1")


def downgrade() -> None:
    op.execute("UPDATE routes SET traffic_status = 'inactive' WHERE traffic_status = 'standby'")
    op.execute("UPDATE deployments SET lifecycle = 'ready' WHERE lifecycle = 'deploying'")
    op.drop_column("routes", "revision")
    op.drop_column("deployments", "rollout_promote_requested")
    for name, _ in reversed(_ROLLOUT_COLUMNS):
        op.drop_column("deployments", name)
    op.drop_column("deployments", "current_revision")
    op.drop_table("deployment_revisions")
    _check("routes", "traffic_status", "traffic_status", ("active", "inactive"))
    _check("deployments", "lifecycle", "lifecycle", _LIFECYCLES)
