"""deployments.check_pending: register new deployments with their app proxy."""

from tasks.phase import DEPLOYMENTS, Move, Phase, Stay
from tasks.runs import phase_task
from workers.domain import DeploymentLifecycle, OutcomeBucket
from workers.phase_names import PhaseName

PHASE = Phase(
    name=PhaseName.CHECK_PENDING,
    kind=DEPLOYMENTS,
    targets=frozenset({DeploymentLifecycle.PENDING}),
    execute=lambda adapters, items: adapters.deployment_executor().check_pending_deployments(items),
    on={
        OutcomeBucket.SUCCESS: Move(DeploymentLifecycle.SCALING),
        OutcomeBucket.ERROR: Stay(),
        OutcomeBucket.WAITING: Stay(),  # no revision or no app proxy yet: history says so
    },
    remote_items=True,  # an app-proxy call per deployment
    follow_ups={OutcomeBucket.SUCCESS: (PhaseName.SCALE,)},
)

task = phase_task(PHASE)
