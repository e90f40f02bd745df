"""The request path: readiness, service discovery, the app proxies and what they counted."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Protocol
from uuid import UUID

from workers.domain import (
    EndpointState,
    HealthStatus,
    ModelServiceMetadata,
    ScalingGroupProxyTarget,
    TrafficCounts,
    TrafficLoad,
)


class HealthStore(Protocol):
    """Route readiness as written by the health checker (the seeds' `valkey_schedule`)."""

    def check_route_health_status(self, route_ids: Sequence[str]) -> Mapping[str, HealthStatus]:
        """Readiness per route id; routes with no data are absent."""
        ...


class ServiceDiscovery(Protocol):
    """Where Prometheus learns which model servers to scrape."""

    def sync_model_service_routes(self, routes: Sequence[ModelServiceMetadata]) -> None:
        """Replace the whole registered set with `routes`."""
        ...

    def publish_endpoint_modes(self, modes: Mapping[UUID, EndpointState]) -> None:
        """Replace what the proxies do for endpoints without a replica (`EndpointMode`)."""
        ...

    def published_route_ids(self) -> AbstractSet[UUID]:
        """The routes the registered set holds now (what the app proxy routes to)."""
        ...


class AppProxyClient(Protocol):
    """One app proxy's endpoint API."""

    def create_endpoint(self, endpoint_id: UUID, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """Register (or re-register) an endpoint; the answer's `endpoint` is its public URL."""
        ...

    def delete_endpoint(self, endpoint_id: UUID) -> None:
        """Unregister an endpoint; one that is already gone counts as deleted."""
        ...


class AppProxy(Protocol):
    """Hands out a client per resource group's proxy target (pooled by the adapter)."""

    def client_for(self, target: ScalingGroupProxyTarget) -> AppProxyClient: ...


class RequestActivity(Protocol):
    """When each deployment last saw a request, as the proxies and the metrics collector
    recorded it, by the clock of the store that keeps it."""

    def last_requests(self, deployment_ids: AbstractSet[UUID]) -> Mapping[UUID, float]:
        """Unix seconds of each deployment's latest request (absent: none recorded)."""
        ...

    def revision_traffic(
        self, since_s: Mapping[UUID, float]
    ) -> Mapping[UUID, Mapping[int, TrafficCounts]]:
        """What the proxies counted of each deployment's requests since the unix time given
        for it, by revision (what a rollout is judged by)."""
        ...

    def now_s(self) -> float:
        """Unix seconds by the same clock."""
        ...

    def load(self, windows_s: Mapping[UUID, tuple[float, float]]) -> Mapping[UUID, TrafficLoad]:
        """What the proxies saw of each deployment over its (stable, panic) windows: requests
        in flight on average, and arrived per second (what the traffic autoscaler tracks)."""
        ...

    def held(self, deployment_ids: AbstractSet[UUID]) -> Mapping[UUID, int]:
        """Requests the proxies hold now for each deployment at zero (0: none)."""
        ...
