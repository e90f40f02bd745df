"""routes.check_running: a route whose session is gone or ended leaves traffic and drains.

Its session is dead, but it may still be published: it leaves service
discovery at once, and the drain phase stops what is left of it.
"""

from tasks.phase import LEAVING_SERVICE, ROUTES, Move, Phase
from tasks.runs import phase_task
from workers.domain import OutcomeBucket, RouteStatus
from workers.phase_names import PhaseName

PHASE = Phase(
    name=PhaseName.CHECK_RUNNING,
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
    on={OutcomeBucket.ERROR: Move(RouteStatus.DRAINING)},
    judges_revision=True,  # a session that exited
    follow_ups={OutcomeBucket.ERROR: (*LEAVING_SERVICE, PhaseName.RECONCILE, PhaseName.ROLLOUT)},
)

task = phase_task(PHASE)
