"""deployments.check_replicas: save the replica count autoscaling asks for."""

from tasks.phase import DEPLOYMENTS, Move, Phase, Stay
from tasks.runs import phase_task
from workers.domain import DeploymentLifecycle, OutcomeBucket
from workers.phase_names import PhaseName

PHASE = Phase(
    name=PhaseName.CHECK_REPLICAS,
    kind=DEPLOYMENTS,
    targets=frozenset({DeploymentLifecycle.READY}),
    execute=lambda adapters, items: adapters.deployment_executor().calculate_desired_replicas(
        items
    ),
    on={OutcomeBucket.SUCCESS: Move(DeploymentLifecycle.SCALING), OutcomeBucket.ERROR: Stay()},
    follow_ups={OutcomeBucket.SUCCESS: (PhaseName.SCALE,)},
)

task = phase_task(PHASE)
