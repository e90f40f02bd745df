"""The tables, as SQLAlchemy Core metadata.

Alembic migrations (`migrations/versions/`) create and change the real schema;
this metadata is what the queries are written against, and a test checks the
two agree. `base` holds the metadata, `entities` what the controller manages,
`records` what it did.
"""

from workers.adapters.postgres.schema.base import (
    LIVE_SESSION_PREDICATE,
    TERMINAL_SESSION_STATUSES,
    metadata,
)
from workers.adapters.postgres.schema.entities import (
    autoscaling_rules,
    controller_watch,
    deployment_revisions,
    deployments,
    hosts,
    routes,
    scaling_groups,
    sessions,
)
from workers.adapters.postgres.schema.records import (
    deployment_history,
    host_history,
    phase_runs,
    route_history,
)

__all__ = [
    "LIVE_SESSION_PREDICATE",
    "TERMINAL_SESSION_STATUSES",
    "autoscaling_rules",
    "controller_watch",
    "deployment_history",
    "deployment_revisions",
    "deployments",
    "host_history",
    "hosts",
    "metadata",
    "phase_runs",
    "route_history",
    "routes",
    "scaling_groups",
    "sessions",
]
