"""The traffic autoscaler: a deployment's target tracking (mode, target, bounds, windows),
what it remembers between decisions, and its last view (inputs and decision).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 16:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CHECKS = {
    "autoscale_mode": "autoscale_mode IN ('concurrency', 'off', 'queue', 'rps')",
    "autoscale_target": "autoscale_target > 0",
    "autoscale_bounds": "autoscale_min_replicas >= 0 AND autoscale_max_replicas >= "
    "autoscale_min_replicas",
    "autoscale_windows": "autoscale_panic_window_s > 0 AND autoscale_stable_window_s >= "
    "autoscale_panic_window_s",
}


def upgrade() -> None:
    columns: list[sa.Column[object]] = [
        sa.Column("autoscale_mode", sa.Text(), nullable=False, server_default="off"),
        sa.Column("autoscale_target", sa.Float()),
        sa.Column("autoscale_min_replicas", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("autoscale_max_replicas", sa.Integer(), nullable=False, server_default="10"),
        sa.Column("autoscale_stable_window_s", sa.Float(), nullable=False, server_default="60"),
        sa.Column("autoscale_panic_window_s", sa.Float(), nullable=False, server_default="6"),
        sa.Column("autoscale_state", postgresql.JSONB()),
        sa.Column("autoscale_view", postgresql.JSONB()),
    ]
    for column in columns:
        op.add_column("deployments", column)
    for name, condition in _CHECKS.items():
        op.create_check_constraint(op.f(f"ck_deployments_{name}"), "deployments", condition)


def downgrade() -> None:
    for name in _CHECKS:
        op.drop_constraint(op.f(f"ck_deployments_{name}"), "deployments")
    for column in ("autoscale_view", "autoscale_state", "autoscale_panic_window_s",
                   "autoscale_stable_window_s", "autoscale_max_replicas",
                   "autoscale_min_replicas", "autoscale_target", "autoscale_mode"):  # fmt: skip
        op.drop_column("deployments", column)
