"""Scale to zero: when an idle deployment gives its replicas back, and what a request that
wakes it restores. Pure: the times come from the caller (the request store's clock).

A deployment is idle from its latest request (the proxies and the metrics collector
record it) or from when its idle time started counting (its creation, a change of the
setting, its last wake), whichever is later. Autoscaling rules' minimum does not keep
it up (idleness is the stronger signal); their maximum bounds the wake.
"""

from __future__ import annotations

from collections.abc import Sequence

from workers.domain import AutoScalingRule, DeploymentInfo, DeploymentLifecycle


def idle_for_s(deployment: DeploymentInfo, last_request_s: float | None, now_s: float) -> float:
    """Seconds since the deployment last saw a request (or since idleness began counting)."""
    counted_from = deployment.idle_counts_from.timestamp() if deployment.idle_counts_from else 0.0
    since = max(last_request_s or 0.0, counted_from)
    return max(0.0, now_s - since)


def due_for_zero(deployment: DeploymentInfo, idle_s: float) -> bool:
    """Idle past its setting, serving (not in a rollout), and not at zero already."""
    after_s = deployment.scale_to_zero_after_s
    return (
        after_s is not None
        and deployment.lifecycle is DeploymentLifecycle.READY
        and deployment.zeroed_from is None
        and deployment.target_replica_count > 0
        and idle_s >= after_s
    )


def wake_count(zeroed_from: int, rules: Sequence[AutoScalingRule]) -> int:
    """The replicas a wake restores: the count it had, within its rules' maximum."""
    ceilings = [rule.max_replicas for rule in rules if rule.max_replicas is not None]
    return max(1, min([zeroed_from, *ceilings]))


def zeroed_note(idle_s: float, replicas: int) -> str:
    return f"after {idle_s:.0f} s idle ({replicas} replicas before); wakes on request"


def woken_note(replicas: int, at_zero_s: float | None) -> str:
    since = "" if at_zero_s is None else f" after {at_zero_s:.0f} s at zero"
    return f"{replicas} replicas{since}"


def at_zero_reason(target: int, zeroed_from: int | None, after_s: float | None) -> str:
    """REASON of a deployment with no replica asked for ('' when some are)."""
    if target > 0:
        return ""
    if zeroed_from is not None and after_s is not None:
        return f"scaled to zero after {after_s:g} s idle; wakes on request"
    return "scaled to 0 by an operator"
