"""Host liveness apart from operator intent: `unreachable` hosts (silent but not given up),
what the operator asked of each host, why a host is not simply ready, since when its
replicas fail their probes, and what the controller itself could see.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 06:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_STATUSES = "'ready', 'cordoned', 'draining', 'lost'"
_STATUSES = "'ready', 'cordoned', 'draining', 'unreachable', 'lost'"
_INTENTS = "'cordoned', 'draining', 'ready'"


def upgrade() -> None:
    op.drop_constraint(op.f("ck_hosts_status"), "hosts", type_="check")
    op.create_check_constraint(op.f("ck_hosts_status"), "hosts", f"status IN ({_STATUSES})")
    op.add_column("hosts", sa.Column("intent", sa.Text(), nullable=False, server_default="ready"))
    # A host cordoned or draining now keeps that intent.
    op.execute("UPDATE hosts SET intent = status WHERE status IN ('cordoned', 'draining')")
    op.create_check_constraint(op.f("ck_hosts_intent"), "hosts", f"intent IN ({_INTENTS})")
    op.add_column("hosts", sa.Column("condition", sa.Text()))
    op.add_column("hosts", sa.Column("probes_failing_since", sa.DateTime(timezone=True)))
    op.create_table(
        "controller_watch",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seeing_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_given_up_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_controller_watch")),
    )


def downgrade() -> None:
    op.drop_table("controller_watch")
    op.drop_column("hosts", "probes_failing_since")
    op.drop_column("hosts", "condition")
    op.drop_constraint(op.f("ck_hosts_intent"), "hosts", type_="check")
    op.drop_column("hosts", "intent")
    op.execute("UPDATE hosts SET status = 'lost' WHERE status = 'unreachable'")
    op.drop_constraint(op.f("ck_hosts_status"), "hosts", type_="check")
    op.create_check_constraint(op.f("ck_hosts_status"), "hosts", f"status IN ({_OLD_STATUSES})")
