"""The engine and the two ways the adapters use it, with errors translated at the edge."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy import exc

from workers.errors import InfrastructureUnavailable


def create_database_engine(url: str, *, pool_size: int = 5) -> sa.Engine:
    """One engine per process (after fork); pre-ping drops connections a restart killed."""
    return sa.create_engine(url, pool_size=pool_size, pool_pre_ping=True, future=True)


@contextmanager
def transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection inside one transaction, committed on success.

    A lost or refused connection (or a deadlock, which PostgreSQL resolves by
    aborting one side) becomes `InfrastructureUnavailable`: the batch may be
    retried as a whole.
    """
    try:
        with engine.begin() as connection:
            yield connection
    except (exc.OperationalError, exc.InterfaceError) as error:
        raise InfrastructureUnavailable(f"database unavailable: {error.orig}") from error


@contextmanager
def joined(engine: sa.Engine, conn: sa.Connection | None) -> Iterator[sa.Connection]:
    """The caller's connection (and so its transaction), or a transaction of our own."""
    if conn is not None:
        yield conn
        return
    with transaction(engine) as own:
        yield own
