"""Every phase's name, once: beat's schedule, the phase rows, their follow-ups, the
adapters that write history under a phase and the metrics all use these.

A name is what beat and `celery call` start a phase by and what history rows and
`phase_runs` record, so a rename is a migration, not a refactoring.
"""

from __future__ import annotations

from enum import StrEnum


class PhaseName(StrEnum):
    CHECK_PENDING = "deployments.check_pending"
    CHECK_REPLICAS = "deployments.check_replicas"
    SCALE = "deployments.scale"
    RECONCILE = "deployments.reconcile"
    DESTROY = "deployments.destroy"
    ROLLOUT = "deployments.rollout"
    SCALE_TO_ZERO = "deployments.scale_to_zero"
    AUTOSCALE = "deployments.autoscale"
    WAKE = "deployments.wake"
    PROVISION = "routes.provision"
    CHECK_RUNNING = "routes.check_running"
    CHECK_STARTUP = "routes.check_startup"
    HEALTH_CHECK = "routes.health_check"
    HEALTH_CHANGED = "routes.health_changed"
    EVICT = "routes.evict"
    DRAIN = "routes.drain"
    TERMINATE = "routes.terminate"
    SYNC_SERVICE_DISCOVERY = "routes.sync_service_discovery"
    CHECK_HOSTS = "hosts.check"
    DRAIN_HOSTS = "hosts.drain"
    REBALANCE = "hosts.rebalance"


# Housekeeping beat also runs: finishing runs whose chord never fired (not a phase).
SWEEP = "phase_runs.sweep"
# The `phase` of history rows written for an operator's command, not by a phase.
OPERATOR = "operator"
# ... and of those a host's agent writes (its host back after it stopped what was given up).
AGENT = "agent"
