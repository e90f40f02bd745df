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
routes drain. A rollout fails, and rolls back, when its new revision failed
`failure_threshold` times (sessions that did not start or exited, routes that
went unhealthy), or when `progress_deadline_s` passes.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace

from workers.domain import (
    RevisionFailures,
    RolloutOutcome,
    RolloutSpec,
    RolloutState,
    RolloutStep,
    RolloutStrategy,
    RouteData,
    RouteStatus,
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
    else:
        step = _rolling(state, counts)
    if strays:  # routes of a rollout this one superseded: it cannot finish with them
        step = replace(step, outcome=RolloutOutcome.IN_PROGRESS, drain=strays + step.drain)
    return step


def abort_step(state: RolloutState, why: str) -> RolloutStep:
    """Fail the rollout now: its new routes drain, the current revision stays."""
    new_routes = tuple(r.id for r in state.routes if r.revision == state.new_revision)
    summary = f"revision {state.new_revision} rolled back: {why}"
    return RolloutStep(RolloutOutcome.FAILED, drain=new_routes, summary=summary)


def _rolling(state: RolloutState, counts: dict[str, int]) -> RolloutStep:
    """Kubernetes' arithmetic: drain old routes while enough serve, start new ones in the room."""
    surge, unavailable = surge_and_unavailable(state.spec, state.desired)
    new = [r for r in state.routes if r.revision == state.new_revision]
    old = [r for r in state.routes if r.revision == state.old_revision]
    new_healthy = _healthy(new)
    summary = _progress(state, counts)
    if new_healthy >= state.desired and not old:
        return RolloutStep(RolloutOutcome.FINISHED, summary=summary, counts=counts)
    # Draining k old routes leaves at least desired - unavailable serving, counting
    # only healthy routes, and whatever is not healthy yet as not serving.
    budget = len(old) + new_healthy - (state.desired - unavailable)
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
    if _healthy(new) >= state.desired:
        return RolloutStep(RolloutOutcome.FINISHED, summary=summary, counts=counts)
    # Promoted but short of healthy routes (one was evicted): replace it, in traffic.
    return RolloutStep(create=max(0, state.desired - len(new)), summary=summary, counts=counts)


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
    if state.elapsed_s > spec.progress_deadline_s:
        return f"no progress within the deadline of {spec.progress_deadline_s:g}s"
    return ""


def _healthy(routes: Sequence[RouteData]) -> int:
    return sum(1 for r in routes if r.status is RouteStatus.HEALTHY)


def _counts(state: RolloutState) -> dict[str, int]:
    tally = Counter(
        ("new" if r.revision == state.new_revision else "old", r.status is RouteStatus.HEALTHY)
        for r in state.routes
    )
    return {
        "new_healthy": tally[("new", True)],
        "new_total": tally[("new", True)] + tally[("new", False)],
        "old_total": tally[("old", True)] + tally[("old", False)],
        "desired": state.desired,
        "revision": state.new_revision,
    }


def _progress(state: RolloutState, counts: dict[str, int]) -> str:
    return describe_progress(counts)


def describe_progress(progress: Mapping[str, int]) -> str:
    """Where a rollout stands, from its step's counts (stored as `rollout_progress`):
    'revision 3: 2/3 new healthy, 1 old remaining'."""
    return (
        f"revision {progress['revision']}: {progress['new_healthy']}/{progress['desired']} "
        f"new healthy, {progress['old_total']} old remaining"
    )


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
