"""deployments.autoscale: each deployment's traffic tracked against its target, every 2 s.

For a deployment whose autoscaler is on (`deployment create|update|set --autoscale`):
what the proxies saw of it (requests in flight or per second, over a stable and a panic
window) or what its engines hold, against its target per replica
(`workers.policies.traffic_autoscaler`). A ready deployment whose count changed moves to
scaling (the scale phase follows, history saying the numbers); a deployment being rolled
out gets the new count for its new revision; with `--min-replicas 0` one without a
request over its stable window goes to zero, and a request wakes it to what the
requests held for it need.
"""

from tasks.phase import DEPLOYMENTS, Move, Phase
from tasks.runs import phase_task
from workers.domain import DeploymentLifecycle, OutcomeBucket
from workers.phase_names import PhaseName

PHASE = Phase(
    name=PhaseName.AUTOSCALE,
    kind=DEPLOYMENTS,
    targets=frozenset({DeploymentLifecycle.READY, DeploymentLifecycle.DEPLOYING}),
    execute=lambda adapters, items: adapters.deployment_executor().autoscale(items),
    load_targets=lambda adapters: adapters.phase_store.load_autoscaled(),
    chosen_by="whose autoscaler is on",
    on={OutcomeBucket.SUCCESS: Move(DeploymentLifecycle.SCALING)},
    follow_ups={OutcomeBucket.SUCCESS: (PhaseName.SCALE,)},
)

task = phase_task(PHASE)
