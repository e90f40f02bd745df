"""The tables of what the controller did: a history row per status change of each
entity, and a row per phase run."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

from workers.adapters.postgres.schema.base import (
    created_at_column,
    metadata,
    one_of,
    updated_at_column,
    values_of,
)
from workers.phase_runs import PhaseRunState


def _history_table(name: str, entity: str, parent: str, *extra: sa.Column[Any]) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(entity, UUID(as_uuid=True), sa.ForeignKey(f"{parent}.id"), nullable=False),
        sa.Column("phase", sa.Text, nullable=False),
        sa.Column("from_status", sa.Text),
        sa.Column("to_status", sa.Text, nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("error_code", sa.Text),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
        created_at_column(),
        updated_at_column(),
        *extra,
        sa.Index(f"ix_{name}_{entity}", entity, sa.text("id DESC")),
    )


deployment_history = _history_table("deployment_history", "deployment_id", "deployments")
host_history = _history_table("host_history", "host_id", "hosts")
route_history = _history_table(
    "route_history",
    "route_id",
    "routes",
    # An error that counts against the route's revision (`StatusTransition.revision_failure`).
    sa.Column("revision_failure", sa.Boolean, nullable=False, server_default=sa.false()),
)


phase_runs = sa.Table(
    "phase_runs",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("phase", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False, server_default=PhaseRunState.RUNNING.value),
    sa.Column(
        "started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("duration_s", sa.Float),
    sa.Column("item_count", sa.Integer, nullable=False),
    sa.Column("task_count", sa.Integer, nullable=False),
    sa.Column("success_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("stale_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("skipped_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("waiting_count", sa.Integer, nullable=False, server_default="0"),
    # Items no outcome was stored for (a recovered run): they stay where they are.
    sa.Column("missing_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("transition_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("lock_token", sa.Text, nullable=False),
    sa.Column("error", sa.Text),  # why a run failed
    # The first error outcomes, for `modelfleet status` and `phase run` to show.
    sa.Column("error_samples", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    one_of("state", values_of(PhaseRunState), "state"),
    sa.Index("ix_phase_runs_phase_started_at", "phase", sa.text("started_at DESC")),
    sa.Index(
        "ix_phase_runs_running_deadline_at",
        "deadline_at",
        postgresql_where=sa.text("state = 'running'"),
    ),
    # The guard that no phase ever runs twice at once, whatever happened to its Redis lock.
    sa.Index(
        "uq_phase_runs_phase_running",
        "phase",
        unique=True,
        postgresql_where=sa.text("state = 'running'"),
    ),
)
