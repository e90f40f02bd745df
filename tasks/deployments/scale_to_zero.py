"""deployments.scale_to_zero: a deployment idle for its `scale_to_zero_after_s` gives its
replicas back.

Idle means no request (the proxies record every one; the metrics collector adds what the
replicas' own counters saw) for that long. It scales to 0 through the normal path (its
routes drain), remembers the count it had, and stays ready; a request wakes it
(`deployments.wake`). Not during a rollout (ready deployments only).
"""

from tasks.phase import DEPLOYMENTS, Move, Phase
from tasks.runs import phase_task
from workers.domain import DeploymentLifecycle, OutcomeBucket
from workers.phase_names import PhaseName

PHASE = Phase(
    name=PhaseName.SCALE_TO_ZERO,
    kind=DEPLOYMENTS,
    targets=frozenset({DeploymentLifecycle.READY}),
    execute=lambda adapters, items: adapters.deployment_executor().scale_idle_to_zero(items),
    load_targets=lambda adapters: adapters.phase_store.load_scale_to_zero_candidates(),
    chosen_by="with scale to zero on and replicas to give back",
    on={OutcomeBucket.SUCCESS: Move(DeploymentLifecycle.SCALING)},
    explains=False,  # at zero it serves what it is asked to: the reason is its state
    follow_ups={OutcomeBucket.SUCCESS: (PhaseName.SCALE,)},
)

task = phase_task(PHASE)
