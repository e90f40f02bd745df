"""How proxies pick a deployment's replicas: `routing` (round-robin, least-request,
prefix-cache). Deployments made before keep round robin, what they had; new ones get
least-request.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("deployments", sa.Column("routing", sa.Text(), nullable=False,
                                           server_default="round-robin"))  # fmt: skip
    op.alter_column("deployments", "routing", server_default="least-request")
    op.create_check_constraint(
        op.f("ck_deployments_routing"), "deployments",
        "routing IN ('least-request', 'prefix-cache', 'round-robin')",
    )  # fmt: skip


def downgrade() -> None:
    op.drop_constraint(op.f("ck_deployments_routing"), "deployments")
    op.drop_column("deployments", "routing")
