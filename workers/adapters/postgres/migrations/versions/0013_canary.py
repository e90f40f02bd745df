"""Canary rollouts and analysis by the requests: the traffic steps and how long each holds,
the limits a new revision's requests are judged against, and the step a canary reached.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    ("rollout_canary_steps", sa.Text()),  # percent of traffic per step: "10,50"
    ("rollout_canary_interval_s", sa.Float()),
    ("rollout_max_error_rate", sa.Float()),
    ("rollout_min_requests", sa.Integer()),
    ("rollout_max_p95_latency_ratio", sa.Float()),
    ("rollout_step", sa.Integer()),  # the canary step reached (0: the first)
    ("rollout_step_started_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    for name, type_ in _COLUMNS:
        op.add_column("deployments", sa.Column(name, type_))


def downgrade() -> None:
    for name, _ in reversed(_COLUMNS):
        op.drop_column("deployments", name)
