"""The one table of phases and their cadence: what beat enqueues, and how often.

Intervals follow Backend.AI's short cycles (2-10 s) so a new deployment serves
within seconds; `deployments.reconcile` is the slow safety sweep. Each tick
expires after one interval, so a backlog of ticks never piles up behind a slow
worker. `workers.config` reads an override per entry from the environment
(`MODELFLEET_INTERVAL_<TASK>_S`) and the Celery app feeds the result to beat.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

PHASE_INTERVALS_S: Final[Mapping[str, float]] = MappingProxyType(
    {
        "deployments.check_pending": 2.0,
        "deployments.check_replicas": 10.0,
        "deployments.scale": 2.0,
        "deployments.reconcile": 30.0,
        "deployments.destroy": 2.0,
        "deployments.rollout": 1.0,
        "routes.provision": 2.0,
        "routes.check_running": 5.0,
        "routes.check_startup": 1.0,
        "routes.health_check": 5.0,
        "routes.health_changed": 1.0,  # also started by beat's watcher as changes land
        "routes.evict": 5.0,
        "routes.drain": 1.0,
        "routes.terminate": 2.0,
        "routes.sync_service_discovery": 10.0,
    }
)


# Housekeeping that is not a phase of its own: finishing runs whose chord never fired.
MAINTENANCE_INTERVALS_S: Final[Mapping[str, float]] = MappingProxyType({"phase_runs.sweep": 10.0})

SCHEDULED_INTERVALS_S: Final[Mapping[str, float]] = MappingProxyType(
    {**PHASE_INTERVALS_S, **MAINTENANCE_INTERVALS_S}
)


def beat_schedule(
    intervals_s: Mapping[str, float] = SCHEDULED_INTERVALS_S,
) -> dict[str, dict[str, Any]]:
    """Celery's `beat_schedule` setting: each phase task every interval, expiring after it."""
    return {
        phase: {"task": phase, "schedule": interval_s, "options": {"expires": interval_s}}
        for phase, interval_s in intervals_s.items()
    }
