"""Sessions record the name of the runner that claimed them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 12:05:06.760559
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("sessions", sa.Column("runner", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("sessions", "runner")
