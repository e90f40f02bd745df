"""Rollouts: moving a deployment from one revision to another, one step at a time (pure).

`plan_step` looks at the routes by revision and status and at the rollout's
spec, and says what to do now: start new routes, drain old ones, switch
traffic (blue-green), or stop because the rollout finished or failed.
`deployments.rollout` applies one step per run, so a rollout advances as fast
as its routes become healthy and never faster than its limits allow.

Rolling: at most `desired + max_surge` routes take part at once, and the
routes that serve (healthy, in traffic) never drop below `desired -
max_unavailable`; only healthy routes of the new revision count as available
new ones. Old routes leave through draining. Blue-green: every new route
starts outside the traffic set; once all are healthy (and `promote_delay_s`
has passed, or an operator promoted it) traffic switches at once, then the old
routes drain. Canary: every new route starts at weight 0 beside the old ones;
once all are healthy, route weights give the new revision each step's share of
the traffic in turn (10 %, then 50 %), each held `canary_interval_s` and until
its requests in that step were judged; after the last (or `deployment promote`)
it finishes as a rolling update would: the new routes at full weight, the old
ones drain. A rollout fails, and rolls back, when its new revision failed
`failure_threshold` times (sessions that did not start or exited, routes that
went unhealthy), when its own requests say it is bad (`judge_traffic`: what the
proxies counted since the step, or the rollout, began), or when
`progress_deadline_s` passes (said as "not enough traffic to judge" when that is
what held it).

Judged on evidence (Flagger's rule: no data is no verdict): a step does not
advance, and a rollout does not finish, before the new revision's requests in it
reach `min_requests`; a deployment that got no request at all in the last minute
rolls on health alone, and says so.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from uuid import UUID

from workers.domain import (
    CanaryPosition,
    RolloutOutcome,
    RolloutProgress,
    RolloutState,
    RolloutStep,
    RolloutStrategy,
    RouteData,
    RouteStatus,
    TrafficCounts,
)
from workers.policies.rollout_notes import describe_progress
from workers.policies.rollout_specs import surge_and_unavailable

# Old routes leave in this order: the least useful first.
_LEAVE_ORDER = {
    RouteStatus.UNHEALTHY: 0,
    RouteStatus.PROVISIONING: 1,
    RouteStatus.DEGRADED: 2,
    RouteStatus.FAILED_TO_START: 3,
    RouteStatus.HEALTHY: 4,
}
# Routes that take part in a rollout (draining and later ones have left).
TAKING_PART = frozenset(_LEAVE_ORDER)


def plan_step(state: RolloutState) -> RolloutStep:
    """The next step of a rollout (see the module docstring)."""
    progress = _progress(state)
    failed = _failure(state)
    if failed:
        return replace(abort_step(state, failed), progress=progress)
    strays = tuple(
        r.id for r in state.routes if r.revision not in {state.old_revision, state.new_revision}
    )
    if state.spec.strategy is RolloutStrategy.BLUE_GREEN:
        step = _blue_green(state, progress)
    elif state.spec.strategy is RolloutStrategy.CANARY:
        step = _canary(state, progress)
    else:
        step = _rolling(state, progress)
    if strays:  # routes of a rollout this one superseded: it cannot finish with them
        step = replace(step, outcome=RolloutOutcome.IN_PROGRESS, drain=strays + step.drain)
    return step


def abort_step(state: RolloutState, why: str) -> RolloutStep:
    """Fail the rollout now: its new routes drain, the current revision stays (at full
    weight again, if a canary had shifted it)."""
    new_routes = tuple(r.id for r in state.routes if r.revision == state.new_revision)
    old_routes = [r for r in state.routes if r.revision == state.old_revision]
    summary = f"revision {state.new_revision} rolled back: {why}"
    weights = _changed(dict.fromkeys((r.id for r in old_routes), 1.0), old_routes)
    return RolloutStep(RolloutOutcome.FAILED, drain=new_routes, summary=summary,
                       weights=weights)  # fmt: skip


def _rolling(state: RolloutState, progress: RolloutProgress) -> RolloutStep:
    """Kubernetes' arithmetic: drain old routes while enough serve, start new ones in the room."""
    surge, unavailable = surge_and_unavailable(state.spec, state.desired)
    new = [r for r in state.routes if r.revision == state.new_revision]
    old = [r for r in state.routes if r.revision == state.old_revision]
    new_healthy = _healthy(new)
    summary = describe_progress(progress)
    if new_healthy >= state.desired and not old and _judged(state):
        return RolloutStep(RolloutOutcome.FINISHED, summary=summary, progress=progress)
    # Draining k old routes leaves at least desired - unavailable serving, counting
    # only healthy routes, and whatever is not healthy yet as not serving; the last old
    # one stays until the new revision's requests have been judged (a fallback).
    budget = len(old) + new_healthy - (state.desired - unavailable)
    if not _judged(state):
        budget = min(budget, len(old) - 1)
    leaving = sorted(old, key=lambda r: _LEAVE_ORDER.get(r.status, 0))[: max(0, budget)]
    room = state.desired + surge - len(new) - (len(old) - len(leaving))
    create = max(0, min(state.desired - len(new), room))
    return RolloutStep(
        create=create, drain=tuple(r.id for r in leaving), summary=summary, progress=progress
    )


def _blue_green(state: RolloutState, progress: RolloutProgress) -> RolloutStep:
    new = [r for r in state.routes if r.revision == state.new_revision]
    old = [r for r in state.routes if r.revision == state.old_revision]
    summary = describe_progress(progress)
    if not state.promoted:
        return _before_promotion(state, progress, new, old)
    if old:
        return RolloutStep(drain=tuple(r.id for r in old), summary=summary, progress=progress)
    if _healthy(new) >= state.desired and _judged(state):
        return RolloutStep(RolloutOutcome.FINISHED, summary=summary, progress=progress)
    # Promoted but short of healthy routes (one was evicted): replace it, in traffic.
    return RolloutStep(create=max(0, state.desired - len(new)), summary=summary, progress=progress)


def _before_promotion(
    state: RolloutState, progress: RolloutProgress, new: list[RouteData], old: list[RouteData]
) -> RolloutStep:
    """Blue-green: the new routes start out of traffic; once all are healthy (and the
    promote delay passed, or an operator promoted), traffic switches and the old drain."""
    summary = describe_progress(progress)
    if len(new) < state.desired:
        return RolloutStep(create=state.desired - len(new), create_in_traffic=False,
                           summary=summary, progress=progress)  # fmt: skip
    if _healthy(new) < state.desired:
        return RolloutStep(summary=summary, progress=progress)
    if not _may_promote(state):
        return RolloutStep(summary=summary, progress=progress, again_in_s=_promote_in_s(state))
    return RolloutStep(
        promote=True, drain=tuple(r.id for r in old), summary=summary, progress=progress
    )


def _canary(state: RolloutState, progress: RolloutProgress) -> RolloutStep:
    new = [r for r in state.routes if r.revision == state.new_revision]
    old = [r for r in state.routes if r.revision == state.old_revision]
    steps, at = state.spec.canary_steps, state.canary_step
    last_done = at is not None and at >= len(steps) - 1 and _step_done(state)
    if state.promote_requested or last_done or (at is not None and not old):
        return _canary_finish(state, progress, new, old)
    summary = describe_progress(progress)
    if len(new) < state.desired:  # beside the old ones, with no traffic yet
        return RolloutStep(create=state.desired - len(new), create_weight=0.0,
                           summary=summary, progress=progress)  # fmt: skip
    if _healthy(new) < state.desired:
        return RolloutStep(summary=summary, progress=progress)
    step, entering = _canary_position(state)
    weights = _changed(_split(new, old, steps[step]), state.routes)
    held_s = 0.0 if entering else state.step_for_s
    return RolloutStep(weights=weights, canary_step=step if entering else None,
                       summary=summary, progress=progress,
                       again_in_s=max(_hold(state) - held_s, 0.0) or None)  # fmt: skip


def _canary_position(state: RolloutState) -> tuple[int, bool]:
    """The step the canary is at now, and whether it enters it now (its clock restarts)."""
    at = state.canary_step
    if at is None:
        return 0, True
    if _step_done(state):
        return at + 1, True
    return at, False


def _step_done(state: RolloutState) -> bool:
    """A canary step is done once held its interval and its requests were judged."""
    return state.step_for_s >= _hold(state) and _judged(state)


def _canary_finish(
    state: RolloutState, progress: RolloutProgress, new: list[RouteData], old: list[RouteData]
) -> RolloutStep:
    """After the last step (or a promote): as a rolling update ends, old routes drain."""
    full = _changed(dict.fromkeys((r.id for r in new), 1.0), new)
    summary = describe_progress(progress)
    if old or full:
        return RolloutStep(weights=full, drain=tuple(r.id for r in old), summary=summary,
                           progress=progress)  # fmt: skip
    if _healthy(new) >= state.desired and _judged(state):
        return RolloutStep(RolloutOutcome.FINISHED, summary=summary, progress=progress)
    return RolloutStep(create=max(0, state.desired - len(new)), summary=summary, progress=progress)


def _changed(weights: Mapping[UUID, float], routes: Sequence[RouteData]) -> dict[UUID, float]:
    """The weights that differ from the routes' own (a step writes only those)."""
    now = {r.id: r.traffic_ratio for r in routes}
    return {i: w for i, w in weights.items() if not math.isclose(now.get(i, -1.0), w)}


def _hold(state: RolloutState) -> float:
    return state.spec.canary_interval_s


def _split(new: Sequence[RouteData], old: Sequence[RouteData], percent: int) -> dict[UUID, float]:
    """Route weights that give the new routes `percent` of the traffic together."""
    serving_old = [r for r in old if r.status is RouteStatus.HEALTHY] or list(old)
    weights = {r.id: percent / len(new) for r in new}
    weights.update({r.id: (100 - percent) / len(serving_old) for r in serving_old})
    return weights


def _judged(state: RolloutState) -> bool:
    """Whether the new revision's requests have had their say: `min_requests` of them
    counted (since its canary step, or its rollout, began), or the deployment got no
    request at all in the last minute (there is nothing to wait for)."""
    return _new_requests(state) >= state.spec.min_requests or state.quiet


def _new_requests(state: RolloutState) -> int:
    return state.traffic.get(state.new_revision, TrafficCounts()).requests


def judge_traffic(state: RolloutState) -> str:
    """Why the new revision's own requests say it is bad ('' when they do not, or are too
    few): its 5xx-or-no-answer rate, or its p95 latency against the old revision's."""
    spec = state.spec
    new = state.traffic.get(state.new_revision, TrafficCounts())
    old = state.traffic.get(state.old_revision, TrafficCounts())
    if new.requests < spec.min_requests:
        return ""
    rate, old_rate = new.error_rate, old.error_rate
    if rate > spec.max_error_rate or rate > old_rate + spec.max_error_rate:
        limit = spec.max_error_rate
        return (
            f"5xx rate {rate:.2f} over {new.requests} requests (limit {limit:g}); "
            f"revision {state.old_revision}: {old_rate:.2f}"
        )
    ratio = spec.max_p95_latency_ratio
    new_p95, old_p95 = new.p95_s, old.p95_s
    if ratio is not None and new_p95 and old_p95 and new_p95 > ratio * old_p95:
        return (f"p95 latency {new_p95:g} s over {ratio:g}x revision {state.old_revision}'s "
                f"{old_p95:g} s ({new.requests} requests)")  # fmt: skip
    return ""


def _promote_in_s(state: RolloutState) -> float | None:
    """When the promote delay ends (None: it waits for an operator, or has ended)."""
    healthy_for_s = state.all_new_healthy_for_s
    if not state.spec.auto_promote or healthy_for_s is None:
        return None
    return max(state.spec.promote_delay_s - healthy_for_s, 0.0) or None


def _may_promote(state: RolloutState) -> bool:
    if state.promote_requested:
        return True
    healthy_for_s = state.all_new_healthy_for_s or 0.0
    return state.spec.auto_promote and healthy_for_s >= state.spec.promote_delay_s


def _failure(state: RolloutState) -> str:
    spec = state.spec
    if state.failures >= spec.failure_threshold:
        why = f"{state.failures} failures (threshold {spec.failure_threshold})"
        return f"{why}: {state.evidence}" if state.evidence else why
    if judged := judge_traffic(state):
        return judged
    if state.elapsed_s > spec.progress_deadline_s:
        if not _judged(state):
            return (f"not enough traffic to judge: {_new_requests(state)} of "
                    f"{spec.min_requests} requests within the deadline of "
                    f"{spec.progress_deadline_s:g}s")  # fmt: skip
        return f"no progress within the deadline of {spec.progress_deadline_s:g}s"
    return ""


def _healthy(routes: Sequence[RouteData]) -> int:
    return sum(1 for r in routes if r.status is RouteStatus.HEALTHY)


def _progress(state: RolloutState) -> RolloutProgress:
    tally = Counter(
        ("new" if r.revision == state.new_revision else "old", r.status is RouteStatus.HEALTHY)
        for r in state.routes
    )
    new = state.traffic.get(state.new_revision, TrafficCounts())
    return RolloutProgress(
        revision=state.new_revision,
        desired=state.desired,
        new_healthy=tally[("new", True)],
        new_total=tally[("new", True)] + tally[("new", False)],
        old_total=tally[("old", True)] + tally[("old", False)],
        requests=new.requests,
        min_requests=state.spec.min_requests,
        error_rate=round(new.error_rate, 3),
        max_error_rate=state.spec.max_error_rate,
        quiet=state.quiet,
        canary=_canary_position_now(state),
    )


def _canary_position_now(state: RolloutState) -> CanaryPosition | None:
    if state.spec.strategy is not RolloutStrategy.CANARY or state.canary_step is None:
        return None
    steps = state.spec.canary_steps
    return CanaryPosition(
        step=state.canary_step + 1,
        steps=len(steps),
        share=steps[state.canary_step],
        held_s=round(state.step_for_s),
        hold_s=state.spec.canary_interval_s,
    )
