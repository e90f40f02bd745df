"""A route remembers when it first passed its health check, and a route history row says
whether it counts against the route's revision (what a rollout judges), instead of the
rollout knowing phase names. Rows written before by the phases that judged a revision
are marked.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 19:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JUDGING_PHASES = "'routes.provision', 'routes.check_running', 'routes.health_check'"


def upgrade() -> None:
    op.add_column("routes", sa.Column("first_healthy_at", sa.DateTime(timezone=True)))
    op.add_column(
        "route_history",
        sa.Column("revision_failure", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.execute("UPDATE routes SET first_healthy_at = status_changed_at WHERE status = 'healthy'")
    op.execute(
        "UPDATE route_history SET revision_failure = true"
        f" WHERE result = 'error' AND phase IN ({_JUDGING_PHASES})"
    )


def downgrade() -> None:
    op.drop_column("route_history", "revision_failure")
    op.drop_column("routes", "first_healthy_at")
