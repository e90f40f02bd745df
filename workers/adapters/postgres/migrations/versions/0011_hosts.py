"""Hosts: the machines that run sessions (a registry their agents keep alive), where the
controller places each session, and sessions of a lost host (LOST, terminal).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 23:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HOST_STATUSES = "'ready', 'cordoned', 'draining', 'lost'"
_SESSION_STATUSES = (
    "'PENDING', 'SCHEDULED', 'PREPARING', 'CREATING', 'RUNNING', 'TERMINATING', "
    "'TERMINATED', 'ERROR', 'CANCELLED'"
)
_LIVE = "status NOT IN ('TERMINATED', 'ERROR', 'CANCELLED'"


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "hosts",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("status", sa.Text(), nullable=False, server_default="ready"),
        sa.Column(
            "last_heartbeat_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()
        ),
        sa.Column(
            "registered_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()
        ),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.CheckConstraint(f"status IN ({_HOST_STATUSES})", name=op.f("ck_hosts_status")),
        sa.CheckConstraint("slots >= 0", name=op.f("ck_hosts_slots")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hosts")),
        sa.UniqueConstraint("name", name=op.f("uq_hosts_name")),
    )
    op.create_table(
        "host_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("host_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("phase", sa.Text(), nullable=False),
        sa.Column("from_status", sa.Text(), nullable=True),
        sa.Column("to_status", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("error_code", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False, server_default=""),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.ForeignKeyConstraint(
            ["host_id"], ["hosts.id"], name=op.f("fk_host_history_host_id_hosts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_host_history")),
    )
    op.create_index("ix_host_history_host_id", "host_history", ["host_id", sa.text("id DESC")])
    op.add_column("sessions", sa.Column("placed_on", sa.Text(), nullable=True))
    op.create_index("ix_sessions_placed_on", "sessions", ["placed_on"])
    op.drop_constraint(op.f("ck_sessions_status"), "sessions", type_="check")
    op.create_check_constraint(
        op.f("ck_sessions_status"), "sessions", f"status IN ({_SESSION_STATUSES}, 'LOST')"
    )
    _recreate_live_index(f"{_LIVE}, 'LOST')")


def downgrade() -> None:
    _recreate_live_index(f"{_LIVE})")
    op.execute("UPDATE sessions SET status = 'TERMINATED' WHERE status = 'LOST'")
    op.drop_constraint(op.f("ck_sessions_status"), "sessions", type_="check")
    op.create_check_constraint(
        op.f("ck_sessions_status"), "sessions", f"status IN ({_SESSION_STATUSES})"
    )
    op.drop_index("ix_sessions_placed_on", table_name="sessions")
    op.drop_column("sessions", "placed_on")
    op.drop_index("ix_host_history_host_id", table_name="host_history")
    op.drop_table("host_history")
    op.drop_table("hosts")


def _recreate_live_index(predicate: str) -> None:
    """One live session per route: LOST is not live (a lost host's route gets a new one)."""
    op.drop_index("uq_sessions_route_id_live", table_name="sessions")
    op.create_index(
        "uq_sessions_route_id_live",
        "sessions",
        ["route_id"],
        unique=True,
        postgresql_where=sa.text(predicate),
    )
