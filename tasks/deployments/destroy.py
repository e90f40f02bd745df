"""deployments.destroy: drain every route, unregister the endpoint; give up after 5 failures.

The routes leave traffic (draining) even when unregistering fails, so they
leave service discovery and drain either way. After the fifth failed try the
deployment is destroyed with the error kept in its history (Backend.AI ignored
the proxy's errors instead).
"""

from tasks.phase import DEPLOYMENTS, LEAVING_SERVICE, Move, Phase, StayUntil
from tasks.runs import phase_task
from workers.domain import DeploymentLifecycle, OutcomeBucket
from workers.phase_names import PhaseName

DESTROY_TRIES = 5

PHASE = Phase(
    name=PhaseName.DESTROY,
    kind=DEPLOYMENTS,
    targets=frozenset({DeploymentLifecycle.DESTROYING}),
    execute=lambda adapters, items: adapters.deployment_executor().destroy_deployment(items),
    on={
        OutcomeBucket.SUCCESS: Move(DeploymentLifecycle.DESTROYED),
        OutcomeBucket.ERROR: StayUntil(tries=DESTROY_TRIES, then=DeploymentLifecycle.DESTROYED),
    },
    remote_items=True,  # an app-proxy call per deployment
    follow_ups={
        OutcomeBucket.SUCCESS: LEAVING_SERVICE,
        OutcomeBucket.ERROR: LEAVING_SERVICE,
    },
)

task = phase_task(PHASE)
