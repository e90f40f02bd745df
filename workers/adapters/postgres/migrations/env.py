"""Alembic environment: runs migrations on the connection or URL `migrate.py` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from workers.adapters.postgres.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as new_connection:
            _run(new_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("modelfleet migrations run online only: use `modelfleet db upgrade`")
run_migrations_online()
