"""routes.provision: ask the scheduler for a session per new route.

Routes of a deployment whose sessions keep exiting wait out a crash-loop
back-off first (`workers.policies.crash_loop`): a replacement every few seconds forever
helps nobody.
"""

from tasks.phase import ROUTES, Move, Phase, Stay
from tasks.runs import phase_task
from workers.domain import OutcomeBucket, RouteStatus
from workers.phase_names import PhaseName

PHASE = Phase(
    name=PhaseName.PROVISION,
    kind=ROUTES,
    targets=frozenset({RouteStatus.PROVISIONING}),
    execute=lambda adapters, items: adapters.route_executor().provision_routes(items),
    load_targets=lambda adapters: adapters.phase_store.load_routes_to_provision(),
    chosen_by="except those of a revision in crash-loop back-off",
    on={
        OutcomeBucket.SUCCESS: Move(RouteStatus.DEGRADED),
        OutcomeBucket.ERROR: Move(RouteStatus.FAILED_TO_START),
        OutcomeBucket.WAITING: Stay(),  # no host has room: the history says so, it waits
    },
    judges_revision=True,  # a session that cannot start
    follow_ups={OutcomeBucket.ERROR: (PhaseName.RECONCILE, PhaseName.ROLLOUT)},
)

task = phase_task(PHASE)
