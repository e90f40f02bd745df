"""What the executors need from the world, as Protocols.

Method names and arguments are sokovan's (docs/design.md, "Contract"), made synchronous.
Real implementations live in `workers.adapters`; unit tests autospec these
classes, so a misspelt method fails the test instead of passing silently.

Batch reads take a set of ids and answer for all of them in one call. A batch
call that cannot reach its store raises `workers.errors.InfrastructureUnavailable`.
"""

from workers.ports.deployments import DeploymentRepository, SchedulingController
from workers.ports.hosts import HostRegistry, HostSignals
from workers.ports.phase_store import PhaseStore
from workers.ports.traffic import (
    AppProxy,
    AppProxyClient,
    HealthStore,
    RequestActivity,
    ServiceDiscovery,
)

__all__ = [
    "AppProxy",
    "AppProxyClient",
    "DeploymentRepository",
    "HealthStore",
    "HostRegistry",
    "HostSignals",
    "PhaseStore",
    "RequestActivity",
    "SchedulingController",
    "ServiceDiscovery",
]
