"""Phase runs: one row per run of a phase, from lock to close.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 10:52:38.427731
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "phase_runs",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("phase", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), server_default="running", nullable=False),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("task_count", sa.Integer(), nullable=False),
        sa.Column("success_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("stale_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("skipped_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("missing_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("transition_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("lock_token", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "error_samples",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "state IN ('running', 'succeeded', 'failed', 'recovered')",
            name=op.f("ck_phase_runs_state"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phase_runs")),
    )
    op.create_index(
        "ix_phase_runs_phase_started_at",
        "phase_runs",
        ["phase", sa.literal_column("started_at DESC")],
        unique=False,
    )
    op.create_index(
        "ix_phase_runs_running_deadline_at",
        "phase_runs",
        ["deadline_at"],
        unique=False,
        postgresql_where=sa.text("state = 'running'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_phase_runs_running_deadline_at",
        table_name="phase_runs",
        postgresql_where=sa.text("state = 'running'"),
    )
    op.drop_index("ix_phase_runs_phase_started_at", table_name="phase_runs")
    op.drop_table("phase_runs")
