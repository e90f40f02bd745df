"""Resources: the devices, cores and memory a host reports; what each session holds of
them; how a scaling group places its replicas; a route moving to make room.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("hosts", sa.Column("devices", postgresql.JSONB(), nullable=False,
                                     server_default=sa.text("'[]'::jsonb")))  # fmt: skip
    op.add_column("hosts", sa.Column("cpus", sa.Float(), nullable=False, server_default="0"))
    op.add_column("hosts", sa.Column("memory_gib", sa.Float(), nullable=False, server_default="0"))
    op.add_column("sessions", sa.Column("gpu_devices", postgresql.ARRAY(sa.Integer())))
    op.add_column("sessions", sa.Column("gpu_gib", sa.Float(), nullable=False, server_default="0"))
    op.add_column("sessions", sa.Column("cpus", sa.Float(), nullable=False, server_default="0"))
    op.add_column("sessions", sa.Column("memory_gib", sa.Float(), nullable=False,
                                        server_default="0"))  # fmt: skip
    op.add_column("routes", sa.Column("moving_since", sa.DateTime(timezone=True)))
    op.add_column("scaling_groups", sa.Column("placement", sa.Text(), nullable=False,
                                              server_default="spread"))  # fmt: skip
    op.create_check_constraint(
        op.f("ck_scaling_groups_placement"), "scaling_groups", "placement IN ('pack', 'spread')"
    )
    op.add_column("scaling_groups", sa.Column("rebalance", sa.Boolean(), nullable=False,
                                              server_default=sa.true()))  # fmt: skip


def downgrade() -> None:
    op.drop_column("scaling_groups", "rebalance")
    op.drop_constraint(op.f("ck_scaling_groups_placement"), "scaling_groups")
    op.drop_column("scaling_groups", "placement")
    op.drop_column("routes", "moving_since")
    for column in ("memory_gib", "cpus", "gpu_gib", "gpu_devices"):
        op.drop_column("sessions", column)
    for column in ("memory_gib", "cpus", "devices"):
        op.drop_column("hosts", column)
