"""Sessions record the pid of the process a local runner started for them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 11:30:30.601306
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sessions", sa.Column("pid", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("sessions", "pid")
