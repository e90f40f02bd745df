"""deployments.wake: a deployment at zero by idleness that requests wait for gets its
replicas back.

A proxy that holds a request for such a deployment announces it on the wake feed; beat's
watcher starts this phase as soon as an entry lands (and beat ticks it every second in
case the watcher missed one). The count it had comes back, within its autoscaling
rules' maximum, in one guarded write: of two wakes, one wins, the other finds nothing at
zero. The autoscaler, paused at zero, resumes once the deployment is ready again.
"""

from typing import Any

from celery.signals import beat_init

from tasks.feeds import announced_ids, start_watcher
from tasks.phase import DEPLOYMENTS, Move, Phase
from tasks.runs import phase_task
from workers.celery import app
from workers.composition import Adapters
from workers.domain import DeploymentInfo, DeploymentLifecycle, EntityKind, OutcomeBucket
from workers.phase_names import PhaseName

NAME = PhaseName.WAKE
READY = frozenset({DeploymentLifecycle.READY})


def waited_for(adapters: Adapters) -> list[DeploymentInfo]:
    """The announced deployments that are ready and at zero by idleness."""
    ids = announced_ids(adapters.wakes.take())
    if not ids:
        return []
    found = adapters.phase_store.load(EntityKind.DEPLOYMENT, READY, ids)
    return [deployment for deployment in found if deployment.zeroed_from is not None]


PHASE = Phase(
    name=NAME,
    kind=DEPLOYMENTS,
    targets=READY,
    execute=lambda adapters, items: adapters.deployment_executor().wake(items),
    load_targets=waited_for,
    chosen_by="at zero by idleness, announced on the wake feed",
    on={OutcomeBucket.SUCCESS: Move(DeploymentLifecycle.SCALING)},
    explains=False,
    follow_ups={OutcomeBucket.SUCCESS: (PhaseName.SCALE,)},
)

task = phase_task(PHASE)


@beat_init.connect
def _watch_the_wake_feed(**_: Any) -> None:
    """Beat starts this phase as soon as a proxy holds a request for a deployment at zero."""
    start_watcher(NAME, lambda: app.adapters.wakes)
