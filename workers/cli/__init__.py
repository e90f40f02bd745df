"""The controller's command line (click): one module per command group.

Importing this package registers the controller's commands on `main`; the `modelfleet`
program (`workers.program`) adds those of the standalone components and the dev tooling.
"""

from workers.cli import (
    autoscaling_rules,
    db,
    deployment_show,
    deployments,
    hosts,
    phases,
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
    "deployment_show",
    "deployments",
    "hosts",
    "main",
    "one_line",
    "phases",
    "revisions",
    "routes",
    "scaling_groups",
    "service_discovery",
    "status",
]
