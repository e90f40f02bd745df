"""routes.health_check: classify each route from the readiness the prober keeps in Redis.

No health data is not bad health: a route whose record is missing or stale (a prober
dead, frozen or cut off; a Redis restarted empty; records expired) keeps the status it
was last judged to have, and stays in service; only a probe that failed demotes it.
Backend.AI demotes a stale route to degraded: with the prober frozen for two minutes,
every route of a fleet of healthy model servers left service and every request failed.
"""

from tasks.phase import ROUTES, Move, Phase
from tasks.runs import phase_task
from workers.domain import OutcomeBucket, RouteStatus
from workers.phase_names import PhaseName

PHASE = Phase(
    name=PhaseName.HEALTH_CHECK,
    kind=ROUTES,
    targets=frozenset({RouteStatus.HEALTHY, RouteStatus.UNHEALTHY, RouteStatus.DEGRADED}),
    execute=lambda adapters, items: adapters.route_executor().check_route_health(items),
    on={
        OutcomeBucket.SUCCESS: Move(RouteStatus.HEALTHY),
        OutcomeBucket.ERROR: Move(RouteStatus.UNHEALTHY),
    },
    judges_revision=True,  # a route that went unhealthy
    # A rollout steps on as soon as its routes turn healthy or fail, not at its next tick.
    follow_ups={
        OutcomeBucket.SUCCESS: (PhaseName.SYNC_SERVICE_DISCOVERY, PhaseName.ROLLOUT),
        OutcomeBucket.ERROR: (
            PhaseName.EVICT,
            PhaseName.CHECK_STARTUP,  # a route never healthy is judged there, at its budget
            PhaseName.SYNC_SERVICE_DISCOVERY,
            PhaseName.ROLLOUT,
        ),
    },
)

task = phase_task(PHASE)
