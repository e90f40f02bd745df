"""routes.check_startup: a new route that never became healthy within its health budget fails.

The budget is its revision's health check: the initial delay, then `max_retries`
probes `interval_s` apart. A route past it that never passed one probe leaves
traffic and drains, whatever its resource group's cleanup config says, and the
failure counts against its revision: a rollout to a revision whose health check
never passes is rolled back after `failure_threshold` such routes, in seconds
instead of at its progress deadline. A deployment outside a rollout says so in
its history (nothing can roll it back).
"""

from tasks.phase import LEAVING_SERVICE, ROUTES, Move, Phase
from tasks.runs import phase_task
from workers.domain import OutcomeBucket, RouteStatus
from workers.phase_names import PhaseName

PHASE = Phase(
    name=PhaseName.CHECK_STARTUP,
    kind=ROUTES,
    # Unhealthy too: routes.evict leaves a route never healthy to this phase (it is not
    # evicted on its first failed probe); the health phases counted it already, and a
    # route counts against its revision once.
    targets=frozenset({RouteStatus.DEGRADED, RouteStatus.UNHEALTHY}),
    execute=lambda adapters, items: adapters.route_executor().check_startup(items),
    load_targets=lambda adapters: adapters.phase_store.load_routes_starting(),
    chosen_by="never healthy, their session running, their revision health-checked",
    on={OutcomeBucket.ERROR: Move(RouteStatus.DRAINING)},
    judges_revision=True,
    follow_ups={OutcomeBucket.ERROR: (*LEAVING_SERVICE, PhaseName.ROLLOUT, PhaseName.RECONCILE)},
)

task = phase_task(PHASE)
