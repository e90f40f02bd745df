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
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from workers.domain import (
    RevisionFailures,
    RolloutOutcome,
    RolloutSpec,
    RolloutState,
    RolloutStep,
    RolloutStrategy,
    RouteData,
    RouteStatus,
    TrafficCounts,
)

_PERCENT = re.compile(r"(\d{1,3})%")
_COUNT = re.compile(r"\d{1,6}")
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
ON_HEALTH_ALONE = "no request in the last minute: judged on health alone"


class SpecError(ValueError):
    """A rollout spec that cannot work (the message names the field)."""


def surge_and_unavailable(spec: RolloutSpec, desired: int) -> tuple[int, int]:
    """Max surge rounded up and max unavailable rounded down, as counts of routes."""
    surge = _amount(spec.max_surge, desired, math.ceil, "--max-surge")
    unavailable = _amount(spec.max_unavailable, desired, math.floor, "--max-unavailable")
    if surge == 0 and unavailable == 0:
        raise SpecError("--max-surge and --max-unavailable: both are 0; nothing could move")
    return surge, unavailable


def check_spec(spec: RolloutSpec) -> None:
    """Refuse a spec that cannot work, whatever the replica count."""
    surge_and_unavailable(spec, 100)
    if spec.failure_threshold < 1:
        raise SpecError("--failure-threshold: must be at least 1")
    if not 0 < spec.progress_deadline_s <= 86_400:
        raise SpecError("--progress-deadline-s: must be in (0, 86400]")
    if not 0 <= spec.promote_delay_s <= 86_400:
        raise SpecError("--promote-delay-s: must be in [0, 86400]")
    _check_analysis(spec)
    steps = spec.canary_steps
    if not steps or any(not 1 <= s <= 99 for s in steps) or list(steps) != sorted(set(steps)):
        raise SpecError("--canary-steps: percentages of traffic, ascending, each 1-99 (10,50)")
    if not 0 < spec.canary_interval_s <= 86_400:
        raise SpecError("--canary-interval-s: must be in (0, 86400]")


def _check_analysis(spec: RolloutSpec) -> None:
    if not 0 <= spec.max_error_rate <= 1:
        raise SpecError("--max-error-rate: a fraction of requests, in [0, 1]")
    if spec.min_requests < 1:
        raise SpecError("--min-requests: must be at least 1")
    ratio = spec.max_p95_latency_ratio
    if ratio is not None and not 1 <= ratio <= 1000:
        raise SpecError("--max-p95-latency-ratio: must be in [1, 1000]")


def parse_steps(text: str) -> tuple[int, ...]:
    """'10,50' -> (10, 50); anything else is a SpecError naming --canary-steps."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise SpecError(f"--canary-steps: {text!r} is not percentages like 10,50") from None


def plan_step(state: RolloutState) -> RolloutStep:
    """The next step of a rollout (see the module docstring)."""
    counts = _counts(state)
    failed = _failure(state)
    if failed:
        return replace(abort_step(state, failed), counts=counts)
    strays = tuple(
        r.id for r in state.routes if r.revision not in {state.old_revision, state.new_revision}
    )
    if state.spec.strategy is RolloutStrategy.BLUE_GREEN:
        step = _blue_green(state, counts)
    elif state.spec.strategy is RolloutStrategy.CANARY:
        step = _canary(state, counts)
    else:
        step = _rolling(state, counts)
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


def _rolling(state: RolloutState, counts: dict[str, int]) -> RolloutStep:
    """Kubernetes' arithmetic: drain old routes while enough serve, start new ones in the room."""
    surge, unavailable = surge_and_unavailable(state.spec, state.desired)
    new = [r for r in state.routes if r.revision == state.new_revision]
    old = [r for r in state.routes if r.revision == state.old_revision]
    new_healthy = _healthy(new)
    summary = _progress(state, counts)
    if new_healthy >= state.desired and not old and _judged(state):
        return RolloutStep(RolloutOutcome.FINISHED, summary=summary, counts=counts)
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
        create=create, drain=tuple(r.id for r in leaving), summary=summary, counts=counts
    )


def _blue_green(state: RolloutState, counts: dict[str, int]) -> RolloutStep:
    new = [r for r in state.routes if r.revision == state.new_revision]
    old = [r for r in state.routes if r.revision == state.old_revision]
    summary = _progress(state, counts)
    if not state.promoted:
        if len(new) < state.desired:
            return RolloutStep(create=state.desired - len(new), create_in_traffic=False,
                               summary=summary, counts=counts)  # fmt: skip
        if _healthy(new) < state.desired or not _may_promote(state):
            return RolloutStep(summary=summary, counts=counts)
        return RolloutStep(
            promote=True, drain=tuple(r.id for r in old), summary=summary, counts=counts
        )
    if old:
        return RolloutStep(drain=tuple(r.id for r in old), summary=summary, counts=counts)
    if _healthy(new) >= state.desired and _judged(state):
        return RolloutStep(RolloutOutcome.FINISHED, summary=summary, counts=counts)
    # Promoted but short of healthy routes (one was evicted): replace it, in traffic.
    return RolloutStep(create=max(0, state.desired - len(new)), summary=summary, counts=counts)


def _canary(state: RolloutState, counts: dict[str, Any]) -> RolloutStep:
    new = [r for r in state.routes if r.revision == state.new_revision]
    old = [r for r in state.routes if r.revision == state.old_revision]
    steps, at = state.spec.canary_steps, state.canary_step
    last_done = at is not None and at >= len(steps) - 1 and _step_done(state)
    if state.promote_requested or last_done or (at is not None and not old):
        return _canary_finish(state, counts, new, old)
    summary = describe_progress(counts)
    if len(new) < state.desired:  # beside the old ones, with no traffic yet
        return RolloutStep(create=state.desired - len(new), create_weight=0.0,
                           summary=summary, counts=counts)  # fmt: skip
    if _healthy(new) < state.desired:
        return RolloutStep(summary=summary, counts=counts)
    step, entering = _canary_position(state)
    weights = _changed(_split(new, old, steps[step]), state.routes)
    return RolloutStep(weights=weights, canary_step=step if entering else None,
                       summary=summary, counts=counts)  # fmt: skip


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
    state: RolloutState, counts: dict[str, Any], new: list[RouteData], old: list[RouteData]
) -> RolloutStep:
    """After the last step (or a promote): as a rolling update ends, old routes drain."""
    full = _changed(dict.fromkeys((r.id for r in new), 1.0), new)
    summary = describe_progress(counts)
    if old or full:
        return RolloutStep(weights=full, drain=tuple(r.id for r in old), summary=summary,
                           counts=counts)  # fmt: skip
    if _healthy(new) >= state.desired and _judged(state):
        return RolloutStep(RolloutOutcome.FINISHED, summary=summary, counts=counts)
    return RolloutStep(create=max(0, state.desired - len(new)), summary=summary, counts=counts)


def _changed(weights: Mapping[Any, float], routes: Sequence[RouteData]) -> dict[Any, float]:
    """The weights that differ from the routes' own (a step writes only those)."""
    now = {r.id: r.traffic_ratio for r in routes}
    return {i: w for i, w in weights.items() if not math.isclose(now.get(i, -1.0), w)}


def _hold(state: RolloutState) -> float:
    return state.spec.canary_interval_s


def _split(new: Sequence[RouteData], old: Sequence[RouteData], percent: int) -> dict[Any, float]:
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


def _counts(state: RolloutState) -> dict[str, Any]:
    tally = Counter(
        ("new" if r.revision == state.new_revision else "old", r.status is RouteStatus.HEALTHY)
        for r in state.routes
    )
    new = state.traffic.get(state.new_revision, TrafficCounts())
    counts: dict[str, Any] = {
        "new_healthy": tally[("new", True)],
        "new_total": tally[("new", True)] + tally[("new", False)],
        "old_total": tally[("old", True)] + tally[("old", False)],
        "desired": state.desired,
        "revision": state.new_revision,
        # the live analysis: the new revision's requests in the last window
        "requests": new.requests,
        "min_requests": state.spec.min_requests,
        "error_rate": round(new.error_rate, 3),
        "max_error_rate": state.spec.max_error_rate,
    }
    if state.quiet:
        counts["quiet"] = True
    if state.spec.strategy is RolloutStrategy.CANARY and state.canary_step is not None:
        steps = state.spec.canary_steps
        counts.update(
            step=state.canary_step + 1,
            steps=len(steps),
            share=steps[state.canary_step],
            held_s=round(state.step_for_s),
            hold_s=state.spec.canary_interval_s,
        )
    return counts


def _progress(state: RolloutState, counts: dict[str, Any]) -> str:
    return describe_progress(counts)


def describe_progress(progress: Mapping[str, Any]) -> str:
    """Where a rollout stands, from its step's counts (stored as `rollout_progress`):
    'revision 3: 2/3 new healthy, 1 old remaining; canary step 1/2 (10 % of traffic,
    14/60 s); its requests: 40, error rate 0.00 (limit 0.05)'."""
    said = (
        f"revision {progress['revision']}: {progress['new_healthy']}/{progress['desired']} "
        f"new healthy, {progress['old_total']} old remaining"
    )
    if "step" in progress:
        said += (f"; canary step {progress['step']}/{progress['steps']} ({progress['share']} % "
                 f"of traffic, {progress['held_s']:g}/{progress['hold_s']:g} s)")  # fmt: skip
    requests, wanted = progress.get("requests", 0), progress.get("min_requests", 0)
    if progress.get("quiet"):
        return f"{said}; {ON_HEALTH_ALONE}"
    rate, limit = progress.get("error_rate", 0.0), progress.get("max_error_rate", 0.0)
    if requests < wanted:
        said += f"; {requests} of {wanted} requests so far"
        return f"{said}, error rate {rate:.2f} (limit {limit:g})" if requests else said
    if requests:
        said += f"; its requests: {requests}, error rate {rate:.2f} (limit {limit:g})"
    return said


def _amount(text: str, desired: int, rounding: object, option: str) -> int:
    text = text.strip()
    if (match := _PERCENT.fullmatch(text)) is not None:
        percent = int(match.group(1))
        if percent > 100:
            raise SpecError(f"{option}: {text!r} is over 100%")
        return int(rounding(desired * percent / 100))  # type: ignore[operator]
    if _COUNT.fullmatch(text) is not None:
        return int(text)
    raise SpecError(f"{option}: {text!r} is neither a count nor a percentage like 25%")


def describe_failures(failures: RevisionFailures) -> str:
    """Why a revision failed, for people: '3 sessions exited with code 1: weights not
    found' or '3 routes never became healthy within 7 s (health path /x answered 404)'."""
    said = [part for part in (_exits(failures), _never_healthy(failures)) if part]
    return "; ".join(said)


def never_healthy_note(revision: int, budget_s: float, probe_saw: str | None) -> str:
    """Why a deployment that cannot roll back does not serve: no route became healthy."""
    seen = f": {probe_saw}" if probe_saw else ""
    return f"no route of revision {revision} became healthy within {budget_s:g} s{seen}"


def _exits(failures: RevisionFailures) -> str:
    ordered = sorted(failures.exit_codes.items(), key=lambda item: -item[1])
    said = " and ".join(
        f"{count} session{'s' if count > 1 else ''} exited with code {code}"
        for code, count in ordered
    )
    return f"{said}: {failures.last_output}" if said and failures.last_output else said


def _never_healthy(failures: RevisionFailures) -> str:
    count = failures.never_healthy
    if not count:
        return ""
    within = f" within {failures.budget_s:g} s" if failures.budget_s is not None else ""
    said = f"{count} route{'s' if count > 1 else ''} never became healthy{within}"
    if failures.probe_saw:
        seen = failures.probe_saw
        if failures.health_path and seen.startswith(failures.health_path):
            seen = f"health path {seen}"
        said = f"{said} ({seen})"
    return said
