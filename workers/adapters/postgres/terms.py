"""The SQL vocabulary: one expression for each idea several queries share, so that two
queries never disagree on what "the host a session is on" or "target replicas" means.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from workers.adapters.postgres.schema import (
    TERMINAL_SESSION_STATUSES,
    deployments,
    hosts,
    routes,
    sessions,
)
from workers.domain import HostStatus, TrafficStatus

# The host a session is on: the one the controller placed it on, or, unplaced (no host
# was registered), the one whose agent claimed it.
SESSION_HOST: sa.ColumnElement[Any] = sa.func.coalesce(sessions.c.placed_on, sessions.c.runner)

# The replicas a deployment asks for: the autoscaler's count when it set one, else the
# operator's (`DeploymentInfo.target_replica_count`).
TARGET_REPLICAS: sa.ColumnElement[Any] = sa.func.coalesce(
    deployments.c.desired_replica_count, deployments.c.replica_count
)

# A session that has not ended.
LIVE_SESSION: sa.ColumnElement[bool] = sessions.c.status.not_in(TERMINAL_SESSION_STATUSES)

# Hosts whose routes no longer count as replicas (their replacements start elsewhere).
LEAVING_HOST_STATUSES = (HostStatus.DRAINING.value, HostStatus.LOST.value)

# A route that no longer counts as a replica: it is moving to another host, or its
# session's host is leaving (its replacement starts elsewhere).
LEAVING_ROUTE: sa.ColumnElement[bool] = sa.or_(
    routes.c.moving_since.is_not(None),
    sa.exists(
        sa.select(1)
        .select_from(sessions.join(hosts, hosts.c.name == SESSION_HOST))
        .where(sessions.c.id == routes.c.session_id, hosts.c.status.in_(LEAVING_HOST_STATUSES))
    ),
)


def traffic_status(in_traffic: bool) -> str:
    """A new route's traffic status: in the traffic set once healthy, or kept out of it
    (a blue-green route waiting for its promotion)."""
    return (TrafficStatus.ACTIVE if in_traffic else TrafficStatus.STANDBY).value
