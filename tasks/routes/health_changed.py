"""routes.health_changed: routes.health_check for only the routes whose readiness changed.

The prober announces changes on a feed beside the readiness hashes; beat's watcher
starts this phase as soon as an entry lands (and beat ticks it every second in case
the watcher missed one). It classifies just those routes, with the same transitions
and follow-ups as the full pass, so a route that became ready is in service discovery
within about a second. `routes.health_check` stays the safety net over every route.
"""

from dataclasses import replace
from typing import Any

from celery.signals import beat_init

from tasks.feeds import announced_ids, start_watcher
from tasks.routes import health_check
from tasks.runs import phase_task
from workers.celery import app
from workers.composition import Adapters
from workers.domain import EntityKind, RouteData
from workers.phase_names import PhaseName

NAME = PhaseName.HEALTH_CHANGED


def changed_routes(adapters: Adapters) -> list[RouteData]:
    """The announced routes that are still in one of health_check's statuses."""
    ids = announced_ids(adapters.health_store.take_changes())
    if not ids:
        return []
    return list(adapters.phase_store.load(EntityKind.ROUTE, health_check.PHASE.targets, ids))


PHASE = replace(health_check.PHASE, name=NAME, load_targets=changed_routes,
                chosen_by="announced on the readiness change feed")  # fmt: skip

task = phase_task(PHASE)


@beat_init.connect
def _watch_the_readiness_feed(**_: Any) -> None:
    """Beat starts this phase as soon as the prober announces a readiness change."""
    start_watcher(NAME, lambda: app.adapters.health_store)
