"""routes.terminate: ask the scheduler to stop each route's session; the route is done."""

from tasks.phase import ROUTES, Move, Phase
from tasks.runs import phase_task
from workers.domain import OutcomeBucket, RouteStatus
from workers.phase_names import PhaseName

PHASE = Phase(
    name=PhaseName.TERMINATE,
    kind=ROUTES,
    targets=frozenset({RouteStatus.TERMINATING}),
    execute=lambda adapters, items: adapters.route_executor().terminate_routes(items),
    on={OutcomeBucket.SUCCESS: Move(RouteStatus.TERMINATED)},
)

task = phase_task(PHASE)
