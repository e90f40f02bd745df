"""deployments.rollout: advance each rollout by one step (`workers.policies.rollouts`).

Success: the new revision serves, the rollout is over (ready). Error: it failed
and was rolled back (ready on the previous revision; the history row says why).
Waiting: in progress (stays deploying). A step starts and drains routes while
the deployment stays where it is, so every run announces them at once: new
routes to provision, drained ones out of service discovery.
"""

from tasks.phase import DEPLOYMENTS, LEAVING_SERVICE, Move, Phase
from tasks.runs import phase_task
from workers.domain import DeploymentLifecycle, OutcomeBucket
from workers.phase_names import PhaseName

_ROUTES_CHANGED = (PhaseName.PROVISION, *LEAVING_SERVICE)

PHASE = Phase(
    name=PhaseName.ROLLOUT,
    kind=DEPLOYMENTS,
    targets=frozenset({DeploymentLifecycle.DEPLOYING}),
    execute=lambda adapters, items: adapters.deployment_executor().rollout_deployment(items),
    on={
        OutcomeBucket.SUCCESS: Move(DeploymentLifecycle.READY),
        OutcomeBucket.ERROR: Move(DeploymentLifecycle.READY),
    },
    explains=False,  # a rollback leaves it serving: its reason is history, not a condition
    follow_ups={
        OutcomeBucket.SUCCESS: (PhaseName.RECONCILE,),
        OutcomeBucket.ERROR: (PhaseName.RECONCILE,),
    },
    follow_ups_on_outcome={
        OutcomeBucket.SUCCESS: _ROUTES_CHANGED,
        OutcomeBucket.ERROR: _ROUTES_CHANGED,
        OutcomeBucket.WAITING: _ROUTES_CHANGED,  # in progress
    },
)

task = phase_task(PHASE)
