"""The tests play the session runner: they move session rows as a scheduler would."""

from __future__ import annotations

import sqlalchemy as sa

from workers.adapters.postgres.schema import sessions
from workers.domain import SessionId, SessionStatus


def report_session(
    engine: sa.Engine,
    session_id: SessionId,
    status: SessionStatus,
    *,
    host: str | None = None,
    port: int | None = None,
) -> None:
    with engine.begin() as conn:
        conn.execute(
            sessions.update()
            .where(sessions.c.id == session_id)
            .values(status=status.value, host=host, port=port)
        )


def session_row(engine: sa.Engine, session_id: SessionId) -> sa.RowMapping:
    with engine.connect() as conn:
        return conn.execute(sa.select(sessions).where(sessions.c.id == session_id)).mappings().one()
