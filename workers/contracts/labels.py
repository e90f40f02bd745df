"""The labels a published route carries: what Prometheus scrapes it by, and what the proxies
route and judge by (which endpoint, revision and host, its share of the traffic, and
how its endpoint's replicas are picked).

Written by the controller's sync (`to_labels`), read by every proxy (`from_labels`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

from workers.domain import RoutingPolicy

ROUTE_ID = "route_id"
ENDPOINT_ID = "endpoint_id"
MODEL_SERVICE_NAME = "model_service_name"
RUNTIME_VARIANT = "runtime_variant"
REVISION = "revision"  # the deployment revision the route runs (absent: unknown)
HOST = "host"  # the host its session runs on (absent: unknown)
TRAFFIC_RATIO = "traffic_ratio"  # its weight among its endpoint's routes (absent: 1)
ROUTING = "routing"  # how proxies pick among its endpoint's routes (absent: round robin)
# Every label a route may carry (the README's label table names each).
LABELS = (ROUTE_ID, ENDPOINT_ID, MODEL_SERVICE_NAME, RUNTIME_VARIANT, REVISION, HOST,
          TRAFFIC_RATIO, ROUTING)  # fmt: skip
ROUTING_POLICIES = frozenset(p.value for p in RoutingPolicy)


@dataclass(frozen=True)
class RouteLabels:
    route_id: UUID
    endpoint_id: UUID
    model_service_name: str
    runtime_variant: str
    revision: int | None = None
    host: str | None = None
    traffic_ratio: float = 1.0
    routing: RoutingPolicy = RoutingPolicy.ROUND_ROBIN


def to_labels(route: RouteLabels) -> dict[str, str]:
    labels = {
        ROUTE_ID: str(route.route_id),
        ENDPOINT_ID: str(route.endpoint_id),
        MODEL_SERVICE_NAME: route.model_service_name,
        RUNTIME_VARIANT: route.runtime_variant,
    }
    if route.revision is not None:
        labels[REVISION] = str(route.revision)
    if route.host is not None:
        labels[HOST] = route.host
    if route.traffic_ratio != 1.0:
        labels[TRAFFIC_RATIO] = f"{route.traffic_ratio:g}"
    if route.routing is not RoutingPolicy.ROUND_ROBIN:
        labels[ROUTING] = route.routing.value
    return labels


def from_labels(labels: Mapping[str, str]) -> RouteLabels | None:
    """The route's labels; None without an endpoint (not a route a proxy can use). A
    malformed weight counts as 1, a negative one as 0; a malformed revision as unknown."""
    try:
        endpoint_id = UUID(labels[ENDPOINT_ID])
        route_id = UUID(labels.get(ROUTE_ID, str(UUID(int=0))))
    except (KeyError, ValueError):
        return None
    revision = labels.get(REVISION, "")
    return RouteLabels(
        route_id=route_id,
        endpoint_id=endpoint_id,
        model_service_name=labels.get(MODEL_SERVICE_NAME, ""),
        runtime_variant=labels.get(RUNTIME_VARIANT, ""),
        revision=int(revision) if revision.isdigit() else None,
        host=labels.get(HOST),
        traffic_ratio=_weight(labels.get(TRAFFIC_RATIO)),
        routing=_routing(labels.get(ROUTING)),
    )


def _weight(raw: str | None) -> float:
    try:
        weight = float(raw) if raw is not None else 1.0
    except ValueError:
        return 1.0
    return max(weight, 0.0) if math.isfinite(weight) else 1.0


def _routing(raw: str | None) -> RoutingPolicy:
    """A policy this proxy does not know (a newer controller's) is round robin."""
    return RoutingPolicy(raw) if raw in ROUTING_POLICIES else RoutingPolicy.ROUND_ROBIN
