"""The one table of phases and their cadence: what beat enqueues, and how often.

Intervals follow Backend.AI's short cycles (2-10 s) so a new deployment serves
within seconds; `deployments.reconcile` is the slow safety sweep. A phase's tick
carries `tick=True` and no expiry: an absolute expiry is read against the worker's
clock, and a worker a second ahead of beat revoked every tick of the 1-second
phases. A backlog of ticks (workers that were down) runs once: a tick that finds a
run of its phase started less than half an interval ago does nothing (Redis' clock,
the one every process shares). `workers.config` reads an override per entry from
the environment (`MODELFLEET_INTERVAL_<TASK>_S`) and the Celery app feeds it to beat.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from workers.phase_names import SWEEP, PhaseName

PHASE_INTERVALS_S: Final[Mapping[str, float]] = MappingProxyType(
    {
        PhaseName.CHECK_PENDING: 2.0,
        PhaseName.CHECK_REPLICAS: 10.0,
        PhaseName.SCALE: 2.0,
        PhaseName.RECONCILE: 30.0,
        PhaseName.DESTROY: 2.0,
        PhaseName.ROLLOUT: 1.0,
        PhaseName.SCALE_TO_ZERO: 2.0,
        PhaseName.AUTOSCALE: 2.0,
        PhaseName.WAKE: 1.0,  # also started by beat's watcher as wakes are announced
        PhaseName.PROVISION: 2.0,
        PhaseName.CHECK_RUNNING: 5.0,
        PhaseName.CHECK_STARTUP: 1.0,
        PhaseName.HEALTH_CHECK: 5.0,
        PhaseName.HEALTH_CHANGED: 1.0,  # also started by beat's watcher as changes land
        PhaseName.EVICT: 5.0,
        PhaseName.DRAIN: 1.0,
        PhaseName.TERMINATE: 2.0,
        PhaseName.SYNC_SERVICE_DISCOVERY: 10.0,
        PhaseName.CHECK_HOSTS: 1.0,
        PhaseName.DRAIN_HOSTS: 2.0,
        PhaseName.REBALANCE: 5.0,
    }
)


# Housekeeping that is not a phase of its own: finishing runs whose chord never fired.
MAINTENANCE_INTERVALS_S: Final[Mapping[str, float]] = MappingProxyType({SWEEP: 10.0})

SCHEDULED_INTERVALS_S: Final[Mapping[str, float]] = MappingProxyType(
    {**PHASE_INTERVALS_S, **MAINTENANCE_INTERVALS_S}
)


def beat_schedule(
    intervals_s: Mapping[str, float] = SCHEDULED_INTERVALS_S,
) -> dict[str, dict[str, Any]]:
    """Celery's `beat_schedule` setting: each phase task every interval (as a tick)."""
    return {
        str(name): {
            "task": str(name),
            "schedule": interval_s,
            "kwargs": {"tick": True} if name in PHASE_INTERVALS_S else {},
        }
        for name, interval_s in intervals_s.items()
    }
