"""routes.evict: drain the routes their resource group's cleanup config names.

Targets are unhealthy routes, plus healthy or degraded ones where the group's
config names those statuses; a degraded route only after its health check's
initial delay (a route never healthy is not evicted on its first probe).
"""

from tasks.phase import LEAVING_SERVICE, ROUTES, Move, Phase
from tasks.runs import phase_task
from workers.domain import OutcomeBucket, RouteStatus
from workers.phase_names import PhaseName

PHASE = Phase(
    name=PhaseName.EVICT,
    kind=ROUTES,
    targets=frozenset({RouteStatus.UNHEALTHY, RouteStatus.DEGRADED, RouteStatus.HEALTHY}),
    execute=lambda adapters, items: adapters.route_executor().cleanup_routes_by_config(items),
    load_targets=lambda adapters: adapters.phase_store.load_eviction_candidates(),
    chosen_by="unhealthy once healthy, or named by their group's cleanup config",
    on={OutcomeBucket.SUCCESS: Move(RouteStatus.DRAINING)},
    follow_ups={OutcomeBucket.SUCCESS: (*LEAVING_SERVICE, PhaseName.RECONCILE)},
)

task = phase_task(PHASE)
