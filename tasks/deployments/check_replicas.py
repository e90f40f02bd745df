"""deployments.check_replicas: save the replica count autoscaling asks for."""

from tasks.phase import DEPLOYMENTS, Move, Phase, Stay
from tasks.runs import phase_task
from workers.domain import DeploymentLifecycle, OutcomeBucket

PHASE = Phase(
    name="deployments.check_replicas",
    kind=DEPLOYMENTS,
    targets=frozenset({DeploymentLifecycle.READY}),
    execute=lambda adapters, items: adapters.deployment_executor().calculate_desired_replicas(
        items
    ),
    on={OutcomeBucket.SUCCESS: Move(DeploymentLifecycle.SCALING), OutcomeBucket.ERROR: Stay()},
    follow_ups={OutcomeBucket.SUCCESS: ("deployments.scale",)},
)

task = phase_task(PHASE)
