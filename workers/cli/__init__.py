"""The `modelfleet` command line (click): one module per command group.

Importing this package registers every command on `main`.
"""

from workers.cli import (
    autoscaling_rules,
    db,
    deployments,
    phases,
    reference,
    revisions,
    routes,
    scaling_groups,
    service_discovery,
    status,
)
from workers.cli.root import main, one_line

__all__ = [
    "autoscaling_rules",
    "db",
    "deployments",
    "main",
    "one_line",
    "phases",
    "reference",
    "revisions",
    "routes",
    "scaling_groups",
    "service_discovery",
    "status",
]
