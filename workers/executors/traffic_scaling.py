"""The traffic autoscaler's run over a batch of deployments: read what the proxies (or the
engines) saw, decide each count (`workers.policies.traffic_autoscaler`), save it.

A ready deployment whose count changed succeeds (the scale phase follows); one being
rolled out has its rollout's count changed instead (the target applies to the new
revision's replicas) and is skipped, as is one whose count holds. With `min_replicas`
0, a deployment without a request over its stable window goes to zero the way scale
to zero does (a request wakes it: `wake_counts`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from uuid import UUID

from workers.domain import (
    AutoscaleDecision,
    AutoscaleMode,
    DeploymentExecutionError,
    DeploymentExecutionResult,
    DeploymentInfo,
    DeploymentLifecycle,
    Observed,
    Seen,
    TargetTracking,
    TrafficLoad,
)
from workers.policies.traffic_autoscaler import decide, wake_count
from workers.ports import DeploymentRepository, RequestActivity

log = logging.getLogger(__name__)


def autoscale(
    repo: DeploymentRepository, activity: RequestActivity, deployments: Sequence[DeploymentInfo]
) -> DeploymentExecutionResult:
    """Decide and save each tracked deployment's count (see the module docstring)."""
    tracked = [d for d in deployments if d.autoscale is not None and d.zeroed_from is None]
    result = DeploymentExecutionResult(skipped=[d for d in deployments if d not in tracked])
    if not tracked:
        return result
    specs = {d.id: _spec(d) for d in tracked}
    loads = activity.load({i: (s.stable_window_s, s.panic_window_s) for i, s in specs.items()})
    queued = [i for i, s in specs.items() if s.mode is AutoscaleMode.QUEUE]
    engines = repo.fetch_engine_load(set(queued)) if queued else {}
    ready = repo.count_serving({d.id for d in tracked})
    now_s = activity.now_s()
    decisions = {
        d.id: decide(specs[d.id], Seen(
            _observed(specs[d.id], loads.get(d.id), engines.get(d.id)),
            d.target_replica_count, ready.get(d.id, 0), now_s, _watched_for_s(d, now_s)),
            d.autoscale_state)
        for d in tracked
    }  # fmt: skip
    changed = repo.save_autoscale(decisions)
    for deployment in tracked:
        _sort(result, deployment, decisions[deployment.id], deployment.id in changed)
    return result


def wake_counts(
    activity: RequestActivity, deployments: Sequence[DeploymentInfo]
) -> Mapping[UUID, int]:
    """What each tracked deployment at zero wakes to: what the requests held for it need."""
    tracked = {d.id: _spec(d) for d in deployments if d.autoscale is not None}
    held = activity.held(set(tracked)) if tracked else {}
    return {i: wake_count(spec, held.get(i, 0)) for i, spec in tracked.items()}


def _watched_for_s(deployment: DeploymentInfo, now_s: float) -> float:
    """Since its windows began to count: its setting, or its last wake (`idle_counts_from`,
    the database's clock against the store's: one machine's, or near enough)."""
    since = deployment.idle_counts_from
    return math.inf if since is None else max(0.0, now_s - since.timestamp())


def _spec(deployment: DeploymentInfo) -> TargetTracking:
    assert deployment.autoscale is not None
    return deployment.autoscale


def _observed(spec: TargetTracking, load: TrafficLoad | None, engines: float | None) -> Observed:
    """The mode's value for the whole deployment: the proxies' load over both windows, or
    the engines' latest count for both (what they hold now)."""
    if spec.mode is AutoscaleMode.QUEUE:
        return Observed(engines or 0.0, engines or 0.0, engines or 0.0)
    if load is None:
        return Observed(0.0, 0.0, 0.0)
    return load.rps if spec.mode is AutoscaleMode.RPS else load.concurrency


def _sort(
    result: DeploymentExecutionResult,
    deployment: DeploymentInfo,
    decision: AutoscaleDecision,
    changed: bool,
) -> None:
    if not changed or deployment.lifecycle is not DeploymentLifecycle.READY:
        result.skipped.append(deployment)  # holding, or a rollout's count changed
        return
    log.info("deployment %s: %s", deployment.id, decision.said)
    result.successes.append(deployment)
    result.reasons[deployment.id] = DeploymentExecutionError(
        deployment, "autoscaled", decision.said
    )
