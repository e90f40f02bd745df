"""Sessions record how their process ended: exit code and the last lines of its output.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sessions", sa.Column("exit_code", sa.Integer(), nullable=True))
    op.add_column("sessions", sa.Column("last_output", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("sessions", "last_output")
    op.drop_column("sessions", "exit_code")
