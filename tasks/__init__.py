"""Celery tasks: one module per phase, named as beat_schedule.py names it, plus `runs`.

`routes.provision` lives in `tasks/routes/provision.py`, and so on. Importing
this package registers every task; the worker does it before forking.
"""

from tasks.deployments import (
    autoscale,
    check_pending,
    check_replicas,
    destroy,
    reconcile,
    rollout,
    scale,
    scale_to_zero,
    wake,
)
from tasks.hosts import check as check_hosts
from tasks.hosts import drain as drain_hosts
from tasks.hosts import rebalance
from tasks.phase_runs import sweep
from tasks.routes import (
    check_running,
    check_startup,
    drain,
    evict,
    health_changed,
    health_check,
    provision,
    sync_service_discovery,
    terminate,
)

__all__ = [
    "autoscale",
    "check_hosts",
    "check_pending",
    "check_replicas",
    "check_running",
    "check_startup",
    "destroy",
    "drain",
    "drain_hosts",
    "evict",
    "health_changed",
    "health_check",
    "provision",
    "rebalance",
    "reconcile",
    "rollout",
    "scale",
    "scale_to_zero",
    "sweep",
    "sync_service_discovery",
    "terminate",
    "wake",
]
