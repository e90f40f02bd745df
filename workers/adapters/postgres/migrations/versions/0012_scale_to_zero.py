"""Scale to zero: a deployment's idle time before it gives its replicas back, the replica
count it had when it did (set only while it is at zero by idleness), and since when its
idle time counts (its creation, the setting's change, its last wake).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 23:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("deployments", sa.Column("scale_to_zero_after_s", sa.Float()))
    op.add_column("deployments", sa.Column("zeroed_from", sa.Integer()))
    op.add_column(
        "deployments",
        sa.Column(
            "idle_counts_from",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
    )
    op.create_check_constraint(
        op.f("ck_deployments_scale_to_zero_after_s"), "deployments", "scale_to_zero_after_s > 0"
    )
    op.create_check_constraint(op.f("ck_deployments_zeroed_from"), "deployments", "zeroed_from > 0")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_deployments_zeroed_from"), "deployments")
    op.drop_constraint(op.f("ck_deployments_scale_to_zero_after_s"), "deployments")
    op.drop_column("deployments", "idle_counts_from")
    op.drop_column("deployments", "zeroed_from")
    op.drop_column("deployments", "scale_to_zero_after_s")
