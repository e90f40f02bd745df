"""The executors: phase logic with every collaborator injected (see `workers.ports`)."""

from workers.executors.deployment_executor import DeploymentExecutor
from workers.executors.host_executor import HostExecutor
from workers.executors.route_executor import RouteExecutor

__all__ = ["DeploymentExecutor", "HostExecutor", "RouteExecutor"]
