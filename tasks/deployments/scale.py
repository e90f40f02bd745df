"""deployments.scale: create or stop routes until each deployment has its target count.

A deployment with nothing to do is ready too (Backend.AI left it scaling forever).
"""

from tasks.phase import DEPLOYMENTS, LEAVING_SERVICE, Move, Phase, Stay
from tasks.runs import phase_task
from workers.domain import DeploymentLifecycle, OutcomeBucket
from workers.phase_names import PhaseName

PHASE = Phase(
    name=PhaseName.SCALE,
    kind=DEPLOYMENTS,
    targets=frozenset({DeploymentLifecycle.SCALING}),
    execute=lambda adapters, items: adapters.deployment_executor().scale_deployment(items),
    on={
        OutcomeBucket.SUCCESS: Move(DeploymentLifecycle.READY),
        OutcomeBucket.ERROR: Stay(),
        OutcomeBucket.SKIPPED: Move(DeploymentLifecycle.READY),
    },
    # Scaled-in routes are draining: they leave service discovery at once.
    follow_ups={OutcomeBucket.SUCCESS: (PhaseName.PROVISION, *LEAVING_SERVICE)},
)

task = phase_task(PHASE)
