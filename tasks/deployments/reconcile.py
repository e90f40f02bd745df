"""deployments.reconcile: a ready deployment whose active routes miss its target scales again."""

from tasks.phase import DEPLOYMENTS, Move, Phase
from tasks.runs import phase_task
from workers.domain import DeploymentLifecycle, OutcomeBucket
from workers.phase_names import PhaseName

PHASE = Phase(
    name=PhaseName.RECONCILE,
    kind=DEPLOYMENTS,
    targets=frozenset({DeploymentLifecycle.READY}),
    execute=lambda adapters, items: (
        adapters.deployment_executor().check_ready_deployments_that_need_scaling(items)
    ),
    on={OutcomeBucket.ERROR: Move(DeploymentLifecycle.SCALING)},
    explains=False,  # a count to correct is routine, not why it does not serve
    follow_ups={OutcomeBucket.ERROR: (PhaseName.SCALE,)},
)

task = phase_task(PHASE)
