"""The controller writes why: a deployment's condition (reason code, message, since when)
and its rollout's progress, beside the lifecycle and in the same transaction as the
change; phase runs count the items left waiting.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 21:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("deployments", sa.Column("condition_reason", sa.Text()))
    op.add_column("deployments", sa.Column("condition_message", sa.Text()))
    op.add_column("deployments", sa.Column("condition_at", sa.DateTime(timezone=True)))
    op.add_column("deployments", sa.Column("rollout_progress", postgresql.JSONB()))
    op.add_column(
        "phase_runs",
        sa.Column("waiting_count", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("phase_runs", "waiting_count")
    for column in ("rollout_progress", "condition_at", "condition_message", "condition_reason"):
        op.drop_column("deployments", column)
