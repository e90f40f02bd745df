"""At most one open (running) phase run per phase, enforced by the database.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 07:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Overlapping runs left by earlier versions: all but the newest of a phase are closed.
    op.execute(
        """
        UPDATE phase_runs SET state = 'failed', finished_at = now(),
               error = 'closed by migration 0006: another run of this phase was open'
        WHERE state = 'running' AND id NOT IN (
            SELECT DISTINCT ON (phase) id FROM phase_runs
            WHERE state = 'running' ORDER BY phase, started_at DESC
        )
        """
    )
    op.create_index(
        op.f("uq_phase_runs_phase_running"),
        "phase_runs",
        ["phase"],
        unique=True,
        postgresql_where=sa.text("state = 'running'"),
    )


def downgrade() -> None:
    op.drop_index(op.f("uq_phase_runs_phase_running"), table_name="phase_runs")
