"""routes.check_running: a route whose session is gone or ended is terminated."""

from tasks.phase import ROUTES, Move, Phase
from tasks.runs import phase_task
from workers.domain import OutcomeBucket, RouteStatus

PHASE = Phase(
    name="routes.check_running",
    kind=ROUTES,
    targets=frozenset(
        {
            RouteStatus.DEGRADED,
            RouteStatus.HEALTHY,
            RouteStatus.UNHEALTHY,
            RouteStatus.FAILED_TO_START,
        }
    ),
    execute=lambda adapters, items: adapters.route_executor().check_running_routes(items),
    on={OutcomeBucket.ERROR: Move(RouteStatus.TERMINATING)},
    follow_ups={OutcomeBucket.ERROR: ("routes.terminate", "deployments.reconcile")},
)

task = phase_task(PHASE)
