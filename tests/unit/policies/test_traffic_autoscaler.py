"""The traffic autoscaler's decision: windows, panic in and out, bounds, half steps down,
the three inputs."""

from __future__ import annotations

import pytest

from workers.domain import AutoscaleMode, AutoscaleState, Observed, Seen, TargetTracking
from workers.policies.traffic_autoscaler import decide, wake_count

SPEC = TargetTracking(AutoscaleMode.CONCURRENCY, target=2.0, min_replicas=1, max_replicas=20)
CALM = AutoscaleState()


def test_steady_load_asks_for_its_stable_count_and_says_why() -> None:
    made = decide(SPEC, Seen(Observed(stable=5.2, panic=5.0, latest=5.0), 3, 3, 100), CALM)
    assert (made.desired, made.panicking) == (3, False)
    assert made.said == ("concurrency 5.2 (requests in flight) over 60 s stable window, "
                         "target 2 per replica, 3, unchanged replicas")  # fmt: skip


def test_a_burst_of_twice_the_capacity_panics_up_at_once() -> None:
    made = decide(SPEC, Seen(Observed(stable=6.0, panic=17.6, latest=17.6), 3, 3, 100), CALM)
    assert (made.desired, made.panicking, made.state.panic_since_s) == (9, True, 100)
    assert made.said.startswith("concurrency 17.6 (requests in flight) over 6 s panic window")
    assert made.said.endswith("3 -> 9 replicas")


def test_a_step_is_sized_by_its_last_second_once_the_panic_window_says_panic() -> None:
    """4 -> 32 in flight, a second in: the 6 s average (8.7) asks for 3 at a target of 4,
    twice the one replica serving (panic); the last second asks for all 8 at once."""
    spec = TargetTracking(AutoscaleMode.CONCURRENCY, target=4.0, max_replicas=20)
    made = decide(spec, Seen(Observed(stable=4.5, panic=8.7, latest=32.0), 1, 1, 100), CALM)
    assert (made.desired, made.panicking) == (8, True)
    assert made.said.endswith("target 4 per replica, 1 -> 8 replicas (32.0 in the last second)")
    spike = Observed(stable=4.0, panic=4.0, latest=32.0)  # one busy second: no panic
    assert decide(spec, Seen(spike, 1, 1, 100), CALM).desired == 1


def test_no_scale_down_while_panicking_and_panic_ends_a_stable_window_after() -> None:
    after_burst = AutoscaleState(panic_since_s=100, scaled_up_s=100)
    quiet = Observed(stable=2.0, panic=0.5, latest=0.5)
    during = decide(SPEC, Seen(quiet, 9, 9, 130), after_burst)
    assert (during.desired, during.panicking) == (9, True)
    ended = decide(SPEC, Seen(quiet, 9, 9, 161), during.state)
    assert ended.panicking is False
    assert ended.state.panic_since_s is None


def test_down_only_a_stable_window_after_an_increase_and_at_most_by_half() -> None:
    low = Observed(stable=1.0, panic=1.0, latest=1.0)
    held = decide(SPEC, Seen(low, 10, 10, 130), AutoscaleState(scaled_up_s=100))
    assert held.desired == 10
    steps = []
    current, state, now = 10, AutoscaleState(scaled_up_s=100), 170.0
    for _ in range(4):
        made = decide(SPEC, Seen(low, current, current, now), state)
        steps.append(made.desired)
        current, state, now = made.desired, made.state, now + 2
    assert steps == [5, 3, 2, 1]


def test_bounds_hold_and_zero_is_allowed_when_min_is_zero() -> None:
    bounded = TargetTracking(AutoscaleMode.RPS, target=10, min_replicas=2, max_replicas=4)
    assert decide(bounded, Seen(Observed(500, 500, 500), 3, 3, 100), CALM).desired == 4
    assert decide(bounded, Seen(Observed(0, 0, 0), 2, 2, 100), CALM).desired == 2
    to_zero = TargetTracking(AutoscaleMode.RPS, target=10, min_replicas=0, max_replicas=4)
    assert decide(to_zero, Seen(Observed(0, 0, 0), 1, 1, 100), CALM).desired == 0


@pytest.mark.parametrize(
    ("mode", "unit"),
    [(AutoscaleMode.CONCURRENCY, "requests in flight"), (AutoscaleMode.RPS, "requests/s"),
     (AutoscaleMode.QUEUE, "requests held by the engines")],
)  # fmt: skip
def test_each_input_is_tracked_per_replica_against_the_target(
    mode: AutoscaleMode, unit: str
) -> None:
    spec = TargetTracking(mode, target=4, max_replicas=50)
    made = decide(spec, Seen(Observed(stable=40.0, panic=40.0, latest=40.0), 10, 10, 100), CALM)
    assert made.desired == 10
    assert unit in made.said
    more = decide(spec, Seen(Observed(stable=48.5, panic=48.5, latest=48.5), 10, 10, 100), CALM)
    assert more.desired == 13


def test_a_wake_brings_back_what_the_waiting_requests_need() -> None:
    spec = TargetTracking(AutoscaleMode.CONCURRENCY, target=2, min_replicas=0, max_replicas=8)
    assert wake_count(spec, 32) == 8  # 16 wanted, 8 at most
    assert wake_count(spec, 5) == 3
    assert wake_count(spec, 0) == 1


def test_nothing_goes_down_before_a_whole_stable_window_was_watched() -> None:
    to_zero = TargetTracking(AutoscaleMode.RPS, target=10, min_replicas=0, max_replicas=4)
    early = decide(to_zero, Seen(Observed(0, 0, 0), 3, 3, 100, 5), CALM)
    assert early.desired == 3
    assert decide(to_zero, Seen(Observed(80, 80, 80), 3, 3, 100, 5), CALM).desired == 4  # up: yes
    assert decide(to_zero, Seen(Observed(0, 0, 0), 1, 1, 100, 61), CALM).desired == 0


def test_a_steady_load_at_a_multiple_of_the_target_does_not_flap() -> None:
    """32 clients +-10 % at a target of 4 (here 16 at 2): ceil() alone says 8 or 9 with the
    noise; once at 9 it goes down only when 8 would stay 10 % under the target."""
    state, counts = AutoscaleState(scaled_up_s=0), []
    for now, value in enumerate([15.2, 16.4, 15.6, 17.0, 14.9, 16.1, 15.3] * 3, start=100):
        counts.append(decide(SPEC, Seen(Observed(value, value, value), 9, 9, now), state).desired)
    assert set(counts) == {9}
    assert decide(SPEC, Seen(Observed(14.0, 14.0, 14.0), 9, 9, 200), state).desired == 8
