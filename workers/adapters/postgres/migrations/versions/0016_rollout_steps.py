"""One rollout step at a time: each applied step counts up `rollout_steps_applied`, and a
step applies only if the count is still the one it was planned from.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "deployments",
        sa.Column("rollout_steps_applied", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("deployments", "rollout_steps_applied")
