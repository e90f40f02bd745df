"""Sessions known by their process's identity (pid, start time in clock ticks after boot,
boot id), not a bare pid; and a deadline per deployment for a session to start.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sessions", sa.Column("process_started_ticks", sa.BigInteger()))
    op.add_column("sessions", sa.Column("boot_id", sa.Text()))
    op.add_column("deployments", sa.Column("start_deadline_s", sa.Float()))
    op.create_check_constraint(
        op.f("ck_deployments_start_deadline_s"), "deployments", "start_deadline_s > 0"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_deployments_start_deadline_s"), "deployments", type_="check")
    op.drop_column("deployments", "start_deadline_s")
    op.drop_column("sessions", "boot_id")
    op.drop_column("sessions", "process_started_ticks")
