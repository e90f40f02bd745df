"""How many replicas a deployment's traffic asks for (pure): target tracking with a stable
and a panic window, the way Knative's autoscaler works.

- Wanted = ceil(observed / target), observed being the whole deployment's concurrency,
  requests per second or engine queue, averaged over a window.
- **Stable:** over the stable window (60 s): the count it settles on.
- **Panic:** when the panic window (6 s) asks for at least `panic_threshold` (2) times
  the replicas serving, the count goes up at once to what the panic window asks, or the
  last whole second if it asks more (a step from 4 to 32 in flight reaches twice the
  capacity in the 6 s average after a second, when that average asks for 3 and the
  last second for 8: waiting for the window to fill would cost its 6 s); it stays in
  panic for a stable window after the last time that held, and never goes down while
  in panic (a burst is not followed by a drop, Knative #8682 aside). Entering panic
  still takes the window's average: one busy second alone does not.
- **Down, slowly:** not within a stable window after the last increase (nor before its
  windows have counted for a whole stable window: since its setting or its last wake),
  at most by half per decision, and only to a count that stays `DOWN_BAND` (10 %)
  under the target: a steady load near a multiple of the target would otherwise flip
  ceil() between two counts with its noise (Kubernetes' HPA calls this band its
  tolerance).
- **Bounds:** never below `min_replicas` (0 allowed: no request over a whole stable
  window it was watched for scales it to zero, and a wake brings back what the waiting
  requests need) nor above `max_replicas`.
"""

from __future__ import annotations

import math

from workers.domain import (
    UNITS,
    AutoscaleDecision,
    AutoscaleState,
    Observed,
    Seen,
    TargetTracking,
)

DOWN_BAND = 0.1


def decide(spec: TargetTracking, seen: Seen, state: AutoscaleState) -> AutoscaleDecision:
    """The count to ask for now, from what was seen and what the autoscaler remembers."""
    observed, current, now_s = seen.observed, seen.current, seen.now_s
    stable_wants, panic_wants = _wanted(observed.stable, spec), _wanted(observed.panic, spec)
    panic_since = state.panic_since_s
    if panic_wants >= spec.panic_threshold * max(seen.ready, 1) and panic_wants > current:
        panic_since = now_s
    panicking = panic_since is not None and now_s - panic_since < spec.stable_window_s
    if panicking:
        desired = max(current, panic_wants, stable_wants, _wanted(observed.latest, spec))
    else:
        desired = _settled(spec, observed.stable, current, now_s, state)
    if seen.watched_for_s < spec.stable_window_s:
        desired = max(desired, current)  # its windows do not cover a whole one yet: no drop
    desired = min(max(desired, spec.min_replicas), spec.max_replicas)
    scaled_up = now_s if desired > current else state.scaled_up_s
    said = _said(spec, observed, current, desired, panicking)
    value = observed.panic if panicking else observed.stable
    state = AutoscaleState(panic_since if panicking else None, scaled_up)
    return AutoscaleDecision(desired, state, panicking, said, value)


def wake_count(spec: TargetTracking, waiting: float) -> int:
    """What a deployment at zero wakes to: what the requests waiting for it need."""
    return min(max(_wanted(waiting, spec), 1, spec.min_replicas), spec.max_replicas)


def _settled(
    spec: TargetTracking, value: float, current: int, now_s: float, state: AutoscaleState
) -> int:
    wanted = _wanted(value, spec)
    if wanted >= current:
        return wanted
    recently_up = state.scaled_up_s is not None and now_s - state.scaled_up_s < spec.stable_window_s
    if recently_up:
        return current
    if wanted == 0:
        return 0  # no request over the whole stable window: as low as its minimum allows
    keeps = _wanted(value / (1 - DOWN_BAND), spec)  # fewer, yet 10 % under the target
    return min(current, max(keeps, math.ceil(current / 2)))  # at most half per decision


def _wanted(value: float, spec: TargetTracking) -> int:
    return math.ceil(round(value / spec.target, 6)) if value > 0 else 0


def _said(
    spec: TargetTracking, observed: Observed, current: int, desired: int, panicking: bool
) -> str:
    """'concurrency 17.6 over 6 s panic window, target 2, 3 -> 9 replicas'."""
    value, window = (observed.panic, spec.panic_window_s) if panicking else (
        observed.stable, spec.stable_window_s)  # fmt: skip
    which = "panic window" if panicking else "stable window"
    change = f"{current} -> {desired}" if desired != current else f"{current}, unchanged"
    said = (f"{spec.mode.value} {value:.1f} ({UNITS[spec.mode]}) over {window:g} s {which}, "
            f"target {spec.target:g} per replica, {change} replicas")  # fmt: skip
    if panicking and _wanted(observed.latest, spec) > _wanted(observed.panic, spec):
        said += f" ({observed.latest:.1f} in the last second)"
    return said
