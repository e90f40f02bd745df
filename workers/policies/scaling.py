"""Replica arithmetic for the deployment executor: what to create, what to stop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from workers.domain import DeploymentInfo, RouteCreator, RouteData, RouteStatus
from workers.errors import InvalidReplicaCount

# Scale-in stops the least useful replicas first.
_STOP_PRIORITY = {
    RouteStatus.UNHEALTHY: 0,
    RouteStatus.DEGRADED: 1,
    RouteStatus.PROVISIONING: 2,
    RouteStatus.HEALTHY: 3,
}


@dataclass(frozen=True)
class ScalePlan:
    creators: tuple[RouteCreator, ...] = ()
    routes_to_stop: tuple[UUID, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.creators and not self.routes_to_stop


def replicas(routes: Sequence[RouteData]) -> list[RouteData]:
    """The routes that count toward a deployment's target: not those on a leaving host
    (draining or lost), whose replacements start elsewhere."""
    return [route for route in routes if not route.host_leaving]


def plan_scaling(deployment: DeploymentInfo, routes: Sequence[RouteData]) -> ScalePlan:
    """Routes to add or stop so that `deployment` has its target replica count (routes on
    a leaving host are neither counted nor stopped here: the host's drain moves them)."""
    target = deployment.target_replica_count
    if target < 0:
        raise InvalidReplicaCount(target)
    routes = replicas(routes)
    surplus = len(routes) - target
    if surplus < 0:
        return ScalePlan(creators=tuple(RouteCreator(deployment.id) for _ in range(-surplus)))
    doomed = routes_in_stop_order(routes)[:surplus]
    return ScalePlan(routes_to_stop=tuple(route.id for route in doomed))


def routes_in_stop_order(routes: Sequence[RouteData]) -> list[RouteData]:
    """Unhealthy, degraded, provisioning, healthy; newest first within a status.

    A route with no creation time sorts as the oldest of its status.
    """
    newest_first = sorted(
        routes,
        key=lambda r: r.created_at.timestamp() if r.created_at else float("-inf"),
        reverse=True,
    )
    return sorted(newest_first, key=lambda r: _STOP_PRIORITY.get(r.status, len(_STOP_PRIORITY)))


def manual_desired_replicas(deployment: DeploymentInfo, routes: Sequence[RouteData]) -> int | None:
    """With no autoscaling rules the manual count rules; None when already met.

    A desired count left over from removed rules also counts as a change, so
    the manual count takes over again.
    """
    manual = deployment.replica_count
    if len(replicas(routes)) != manual or deployment.target_replica_count != manual:
        return manual
    return None
