"""routes.drain: a route out of traffic for its deployment's `drain_s` is told to stop.

Scale-in, destroy, eviction and a dead session move a route to `draining` and
take it out of service discovery at once (their follow-up sync). Requests in
flight finish; only then does this phase move the route to `terminating`,
whose session routes.terminate stops. A route still published (no sync yet)
keeps draining.
"""

from tasks.phase import ROUTES, Move, Phase
from tasks.runs import phase_task
from workers.domain import OutcomeBucket, RouteStatus
from workers.phase_names import PhaseName

PHASE = Phase(
    name=PhaseName.DRAIN,
    kind=ROUTES,
    targets=frozenset({RouteStatus.DRAINING}),
    execute=lambda adapters, items: adapters.route_executor().finish_draining(items),
    load_targets=lambda adapters: adapters.phase_store.load_drained_routes(),
    chosen_by="out of traffic for at least their deployment's drain_s",
    on={OutcomeBucket.SUCCESS: Move(RouteStatus.TERMINATING)},
    follow_ups={OutcomeBucket.SUCCESS: (PhaseName.TERMINATE,)},
)

task = phase_task(PHASE)
