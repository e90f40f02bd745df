"""Draining: the route status `draining` and each deployment's `drain_s`.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BEFORE = (
    "provisioning",
    "healthy",
    "unhealthy",
    "degraded",
    "terminating",
    "terminated",
    "failed_to_start",
)
_AFTER = (*_BEFORE[:4], "draining", *_BEFORE[4:])


def _route_statuses(allowed: Sequence[str]) -> None:
    op.drop_constraint(op.f("ck_routes_status"), "routes", type_="check")
    listed = ", ".join(f"'{status}'" for status in allowed)
    op.create_check_constraint(op.f("ck_routes_status"), "routes", f"status IN ({listed})")


def upgrade() -> None:
    _route_statuses(_AFTER)
    op.add_column(
        "deployments", sa.Column("drain_s", sa.Float(), server_default="10", nullable=False)
    )
    op.create_check_constraint(op.f("ck_deployments_drain_s"), "deployments", "drain_s >= 0")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_deployments_drain_s"), "deployments", type_="check")
    op.drop_column("deployments", "drain_s")
    # A route still draining has left traffic: on the old schema it is terminating.
    op.execute("UPDATE routes SET status = 'terminating' WHERE status = 'draining'")
    _route_statuses(_BEFORE)
