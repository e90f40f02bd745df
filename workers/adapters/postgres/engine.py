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


# A host agent can vanish in the middle of a transaction (its machine cut off). The server
# then ends that session within seconds (idle in a transaction, or its peer silent to TCP
# keepalives) instead of holding its locks (its own host's row) for hours, so the
# controller can declare the host lost; the agent's side notices a dead server alike.
_AGENT_SESSION = {
    "idle_in_transaction_session_timeout": "5s",
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
}
# A write on a connection whose peer stopped acknowledging (a host cut off from its
# database) fails after 5 s (TCP_USER_TIMEOUT) instead of TCP's retries of minutes; a
# new connection gives up after 5 s too.
_AGENT_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
                     "keepalives_count": 3, "tcp_user_timeout": 5000,
                     "connect_timeout": 5}  # fmt: skip


def create_agent_engine(url: str) -> sa.Engine:
    """The engine of an agent on another machine (`modelfleet runner`)."""
    options = " ".join(f"-c {name}={value}" for name, value in _AGENT_SESSION.items())
    return sa.create_engine(url, pool_size=2, pool_pre_ping=True, future=True,
                            connect_args={"options": options, **_AGENT_KEEPALIVES})  # fmt: skip


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
