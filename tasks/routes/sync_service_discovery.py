"""routes.sync_service_discovery: publish the healthy routes as the whole scrape set.

The set is replaced as a whole, so one task gets every healthy route. With no
healthy route (or none with a session) the phase publishes the empty set, so
stale registrations go at once; Backend.AI skipped that purge. Each run also publishes
what the proxies do for deployments without replicas (`EndpointMode`).
"""

from __future__ import annotations

from collections.abc import Sequence

from tasks.phase import ROUTES, Phase
from tasks.runs import phase_task
from workers.composition import Adapters
from workers.domain import RouteData, RouteExecutionResult, RouteStatus
from workers.phase_names import PhaseName


def publish(adapters: Adapters, routes: Sequence[RouteData]) -> RouteExecutionResult:
    executor = adapters.route_executor()
    executor.publish_endpoint_modes()  # a deployment at zero has no route, yet needs one
    published = [route for route in routes if route.session_id is not None]
    if published:
        executor.sync_service_discovery(published)
    else:
        adapters.service_discovery.sync_model_service_routes([])
    return RouteExecutionResult(successes=published)


PHASE = Phase(
    name=PhaseName.SYNC_SERVICE_DISCOVERY,
    kind=ROUTES,
    targets=frozenset({RouteStatus.HEALTHY}),
    execute=publish,
    whole_set=True,
)

task = phase_task(PHASE)
