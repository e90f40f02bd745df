"""What every table shares: the metadata (with its naming convention), the helpers
that write a check of allowed values and the created/updated columns."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from workers.domain import (
    SessionStatus,
)

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TERMINAL_SESSION_STATUSES = tuple(s.value for s in SessionStatus if s.is_terminal)
# A session that has not ended. Literal SQL on purpose: an ON CONFLICT that names
# this partial index must repeat the predicate without bound parameters, or
# PostgreSQL cannot match it once psycopg prepares the statement.
LIVE_SESSION_PREDICATE = f"status NOT IN ({', '.join(repr(s) for s in TERMINAL_SESSION_STATUSES)})"


def one_of(column: str, values: Iterable[str], name: str) -> sa.CheckConstraint:
    allowed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({allowed})", name=name)


def values_of(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


def revision_columns() -> list[sa.Column[Any]]:
    """What a revision runs: image, command, environment, resources and health check."""
    return [
        sa.Column("image", sa.Text),
        sa.Column("runtime_variant", sa.Text, nullable=False, server_default="custom"),
        sa.Column("model_path", sa.Text, nullable=False, server_default="/models"),
        sa.Column("resources", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("environ", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("startup_command", sa.Text),
        # Health check of the revision's model server; no path means none is configured.
        sa.Column("health_check_path", sa.Text),
        sa.Column("health_check_interval_s", sa.Float, nullable=False, server_default="10"),
        sa.Column("health_check_max_retries", sa.Integer, nullable=False, server_default="10"),
        sa.Column("health_check_initial_delay_s", sa.Float, nullable=False, server_default="60"),
        sa.Column("health_check_timeout_s", sa.Float, nullable=False, server_default="15"),
        sa.Column("health_check_expected_status", sa.Integer, nullable=False, server_default="200"),
    ]


def created_at_column() -> sa.Column[object]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )


def updated_at_column() -> sa.Column[object]:
    return sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    )
