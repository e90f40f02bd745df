"""The rollout step as a table: what one run of deployments.rollout does in each situation."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.factories import make_route
from workers.domain import (
    RolloutOutcome as Outcome,
)
from workers.domain import (
    RolloutProgress,
    RolloutSpec,
    RolloutState,
    RouteData,
    RouteStatus,
    TrafficCounts,
)
from workers.domain import (
    RolloutStrategy as Strategy,
)
from workers.policies.rollout_specs import (
    SpecError,
    check_spec,
    parse_steps,
    surge_and_unavailable,
)
from workers.policies.rollouts import plan_step

H, D, P, U = (
    RouteStatus.HEALTHY,
    RouteStatus.DEGRADED,
    RouteStatus.PROVISIONING,
    RouteStatus.UNHEALTHY,
)
OLD, NEW = 1, 2


def _routes(revision: int, *statuses: RouteStatus) -> list[RouteData]:
    return [make_route(status=status, revision=revision) for status in statuses]


def _state(old: list[RouteData], new: list[RouteData], **overrides: object) -> RolloutState:
    """A rollout's state; without traffic given, a deployment that got no request at all
    in the last minute (judged on health alone)."""
    spec = overrides.pop("spec", RolloutSpec())
    fields: dict[str, object] = {"desired": 3, "old_revision": OLD, "new_revision": NEW,
                                 "quiet": not overrides.get("traffic")}  # fmt: skip
    return RolloutState(spec=spec, routes=[*old, *new], **(fields | overrides))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("surge", "unavailable", "desired", "expected"),
    [
        ("25%", "0", 3, (1, 0)),  # surge rounds up
        ("25%", "50%", 3, (1, 1)),  # unavailable rounds down
        ("50%", "0", 10, (5, 0)),
        ("1", "0", 3, (1, 0)),
        ("0", "1", 3, (0, 1)),
        ("100%", "100%", 4, (4, 4)),
        ("25%", "0", 1, (1, 0)),
    ],
)
def test_surge_and_unavailable_arithmetic(
    surge: str, unavailable: str, desired: int, expected: tuple[int, int]
) -> None:
    spec = RolloutSpec(max_surge=surge, max_unavailable=unavailable)
    assert surge_and_unavailable(spec, desired) == expected


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (RolloutSpec(max_surge="0", max_unavailable="0"), "both are 0"),
        (RolloutSpec(max_surge="0%", max_unavailable="0%"), "both are 0"),
        (RolloutSpec(max_surge="150%"), "--max-surge"),
        (RolloutSpec(max_surge="lots"), "--max-surge"),
        (RolloutSpec(max_unavailable="-1"), "--max-unavailable"),
        (RolloutSpec(failure_threshold=0), "--failure-threshold"),
        (RolloutSpec(progress_deadline_s=0), "--progress-deadline-s"),
    ],
)
def test_specs_that_cannot_work_are_refused_naming_the_option(
    spec: RolloutSpec, field: str
) -> None:
    with pytest.raises(SpecError, match=field):
        check_spec(spec)


def test_rolling_starts_one_new_route_within_the_surge_and_drains_nothing_yet() -> None:
    step = plan_step(_state(_routes(OLD, H, H, H), []))
    assert (step.outcome, step.create, step.drain, step.create_in_traffic) == (
        Outcome.IN_PROGRESS, 1, (), True,
    )  # fmt: skip


@pytest.mark.parametrize("status", [P, D, U])
def test_rolling_waits_while_the_new_route_is_not_healthy(status: RouteStatus) -> None:
    """Only healthy routes of the new revision count as available."""
    step = plan_step(_state(_routes(OLD, H, H, H), _routes(NEW, status)))
    assert (step.create, step.drain) == (0, ())


def test_rolling_drains_an_old_route_once_a_new_one_is_healthy_and_fills_the_room() -> None:
    old = _routes(OLD, H, H, H)
    step = plan_step(_state(old, _routes(NEW, H)))
    assert len(step.drain) == 1
    assert step.drain[0] in {r.id for r in old}
    assert step.create == 1  # the drained route's place is free at once


def test_rolling_drains_old_routes_that_serve_nothing_first() -> None:
    sick = _routes(OLD, U)
    step = plan_step(_state([*_routes(OLD, H, H), *sick], _routes(NEW, H)))
    assert step.drain == (sick[0].id,)


def test_rolling_with_max_unavailable_drains_first_and_never_below_the_floor() -> None:
    spec = RolloutSpec(max_surge="0", max_unavailable="1")
    first = plan_step(_state(_routes(OLD, H, H, H), [], spec=spec))
    assert (len(first.drain), first.create) == (1, 1)
    waiting = plan_step(_state(_routes(OLD, H, H), _routes(NEW, D), spec=spec))
    assert (waiting.drain, waiting.create) == ((), 0)  # 2 serve: the floor


def test_rolling_finishes_when_every_new_route_is_healthy_and_no_old_one_is_left() -> None:
    judged = {NEW: _traffic(20, 0)}
    step = plan_step(_state([], _routes(NEW, H, H, H), traffic=judged))
    assert step.outcome is Outcome.FINISHED
    assert step.summary == (
        "revision 2: 3/3 new healthy, 0 old remaining; its requests: 20, error rate 0.00 "
        "(limit 0.05)"
    )


def test_a_rollout_fails_at_its_failure_threshold_and_drains_its_new_routes() -> None:
    new = _routes(NEW, U, P)
    step = plan_step(_state(_routes(OLD, H, H, H), new, failures=3))
    assert step.outcome is Outcome.FAILED
    assert set(step.drain) == {r.id for r in new}
    assert step.summary.startswith("revision 2 rolled back: 3 failures (threshold 3)")


def test_a_rollback_says_what_failed() -> None:
    state = _state(_routes(OLD, H), _routes(NEW, U), failures=3,
                   evidence="3 sessions exited with code 1: no weights")  # fmt: skip
    assert plan_step(state).summary == (
        "revision 2 rolled back: 3 failures (threshold 3): "
        "3 sessions exited with code 1: no weights"
    )


def test_a_rollout_fails_past_its_progress_deadline() -> None:
    step = plan_step(_state(_routes(OLD, H, H, H), _routes(NEW, D), elapsed_s=601))
    assert step.outcome is Outcome.FAILED
    assert "deadline" in step.summary


def test_a_superseded_rollouts_routes_drain() -> None:
    superseded = _routes(7, H, D)
    step = plan_step(_state(_routes(OLD, H, H, H), superseded, new_revision=8))
    assert set(step.drain) >= {r.id for r in superseded}
    assert step.create == 1


BLUE_GREEN = RolloutSpec(strategy=Strategy.BLUE_GREEN)


def test_blue_green_starts_every_new_route_outside_the_traffic_set() -> None:
    step = plan_step(_state(_routes(OLD, H, H, H), [], spec=BLUE_GREEN))
    assert (step.create, step.create_in_traffic, step.drain, step.promote) == (3, False, (), False)


def test_blue_green_waits_until_every_new_route_is_healthy() -> None:
    step = plan_step(_state(_routes(OLD, H, H, H), _routes(NEW, H, H, D), spec=BLUE_GREEN))
    assert (step.create, step.promote, step.drain) == (0, False, ())


def test_blue_green_switches_traffic_at_once_and_drains_the_old_routes() -> None:
    old = _routes(OLD, H, H, H)
    step = plan_step(_state(old, _routes(NEW, H, H, H), spec=BLUE_GREEN))
    assert step.promote
    assert set(step.drain) == {r.id for r in old}


@pytest.mark.parametrize(
    ("spec", "healthy_for_s", "requested", "promote"),
    [
        (replace(BLUE_GREEN, promote_delay_s=30), 10.0, False, False),
        (replace(BLUE_GREEN, promote_delay_s=30), 31.0, False, True),
        (replace(BLUE_GREEN, auto_promote=False), 999.0, False, False),
        (replace(BLUE_GREEN, auto_promote=False), 0.0, True, True),  # deployment promote
    ],
)
def test_blue_green_promotes_after_its_delay_or_when_an_operator_asks(
    spec: RolloutSpec, healthy_for_s: float, requested: bool, promote: bool
) -> None:
    state = _state(_routes(OLD, H, H, H), _routes(NEW, H, H, H), spec=spec,
                   all_new_healthy_for_s=healthy_for_s, promote_requested=requested)  # fmt: skip
    assert plan_step(state).promote is promote


def test_blue_green_finishes_once_promoted_and_the_old_routes_are_gone() -> None:
    step = plan_step(_state([], _routes(NEW, H, H, H), spec=BLUE_GREEN, promoted=True))
    assert step.outcome is Outcome.FINISHED


def test_blue_green_replaces_a_lost_route_in_traffic_after_the_switch() -> None:
    step = plan_step(_state([], _routes(NEW, H, H), spec=BLUE_GREEN, promoted=True))
    assert (step.create, step.create_in_traffic) == (1, True)


# -- canary, and the analysis of every rollout by its requests --

CANARY = RolloutSpec(strategy=Strategy.CANARY, canary_steps=(10, 50), canary_interval_s=30)


def _weighted(routes: list[RouteData], weight: float) -> list[RouteData]:
    return [replace(route, traffic_ratio=weight) for route in routes]


def test_a_canary_starts_its_routes_at_weight_0_then_gives_them_the_first_share() -> None:
    old = _routes(OLD, H, H, H)
    start = plan_step(_state(old, [], spec=CANARY))
    assert (start.create, start.create_weight, start.create_in_traffic) == (3, 0.0, True)
    starting = _weighted(_routes(NEW, H, D, H), 0.0)
    assert plan_step(_state(old, starting, spec=CANARY)).weights == {}  # waits: not all healthy
    ready = _weighted(_routes(NEW, H, H, H), 0.0)
    first = plan_step(_state(old, ready, spec=CANARY))
    assert first.canary_step == 0
    new_share = sum(w for r, w in first.weights.items() if r in {x.id for x in ready})
    assert new_share / sum(first.weights.values()) == pytest.approx(0.10)


def test_a_canary_holds_each_step_for_its_interval_then_moves_to_the_next() -> None:
    old, new = _routes(OLD, H, H), _routes(NEW, H, H)
    at_10 = {**{r.id: 45.0 for r in old}, **{r.id: 5.0 for r in new}}
    old, new = [replace(r, traffic_ratio=at_10[r.id]) for r in old], [
        replace(r, traffic_ratio=at_10[r.id]) for r in new]  # fmt: skip
    holding = plan_step(_state(old, new, spec=CANARY, desired=2, canary_step=0, step_for_s=29))
    assert (holding.canary_step, holding.weights, holding.drain) == (None, {}, ())
    second = plan_step(_state(old, new, spec=CANARY, desired=2, canary_step=0, step_for_s=30))
    assert second.canary_step == 1
    assert {second.weights[r.id] for r in new} == {25.0}  # 50 % over two new routes
    assert {second.weights[r.id] for r in old} == {25.0}


@pytest.mark.parametrize("how", ["last step held", "promoted"])
def test_after_its_last_step_or_a_promote_a_canary_ends_as_a_rolling_update(how: str) -> None:
    old, new = _routes(OLD, H, H), _weighted(_routes(NEW, H, H), 25.0)
    state = _state(old, new, spec=CANARY, desired=2, canary_step=1 if how == "last step held"
                   else 0, step_for_s=30 if how == "last step held" else 1,
                   promote_requested=how == "promoted")  # fmt: skip
    ending = plan_step(state)
    assert set(ending.drain) == {r.id for r in old}
    assert ending.weights == {r.id: 1.0 for r in new}
    done = plan_step(_state([], _weighted(new, 1.0), spec=CANARY, desired=2, canary_step=1))
    assert done.outcome is Outcome.FINISHED


def _traffic(requests: int, failed: int, within: dict[float, int] | None = None) -> TrafficCounts:
    return TrafficCounts(requests, failed, within or {})


@pytest.mark.parametrize("strategy", [Strategy.CANARY, Strategy.ROLLING, Strategy.BLUE_GREEN])
def test_the_new_revisions_own_requests_roll_it_back_once_there_are_enough(
    strategy: Strategy,
) -> None:
    spec = RolloutSpec(strategy=strategy, max_error_rate=0.05, min_requests=20)
    old, new = _routes(OLD, H, H, H), _routes(NEW, H)
    few = _state(old, new, spec=spec, traffic={NEW: _traffic(19, 19), OLD: _traffic(100, 0)})
    assert plan_step(few).outcome is Outcome.IN_PROGRESS
    bad = _state(old, new, spec=spec, traffic={NEW: _traffic(52, 16), OLD: _traffic(400, 0)})
    step = plan_step(bad)
    assert step.outcome is Outcome.FAILED
    assert step.summary == (
        "revision 2 rolled back: 5xx rate 0.31 over 52 requests (limit 0.05); revision 1: 0.00"
    )
    fine = _state(old, new, spec=spec, traffic={NEW: _traffic(100, 5), OLD: _traffic(100, 4)})
    assert plan_step(fine).outcome is Outcome.IN_PROGRESS  # 0.05 is not over 0.05


def test_a_latency_ratio_judges_the_p95_against_the_old_revisions() -> None:
    spec = RolloutSpec(max_p95_latency_ratio=2.0, min_requests=20)
    old, new = _routes(OLD, H, H, H), _routes(NEW, H)
    fast = _traffic(100, 0, {0.05: 96, 0.1: 100})
    slow = _traffic(40, 0, {0.05: 0, 0.1: 10, 0.25: 39, 0.5: 40})
    assert fast.p95_s == 0.05
    assert slow.p95_s == 0.25
    step = plan_step(_state(old, new, spec=spec, traffic={NEW: slow, OLD: fast}))
    assert step.summary == (
        "revision 2 rolled back: p95 latency 0.25 s over 2x revision 1's 0.05 s (40 requests)"
    )
    off = plan_step(_state(old, new, spec=RolloutSpec(), traffic={NEW: slow, OLD: fast}))
    assert off.outcome is Outcome.IN_PROGRESS


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (replace(CANARY, canary_steps=(50, 10)), "--canary-steps"),
        (replace(CANARY, canary_steps=(0, 50)), "--canary-steps"),
        (replace(CANARY, canary_steps=(10, 100)), "--canary-steps"),
        (replace(CANARY, canary_steps=(10, 10)), "--canary-steps"),
        (replace(CANARY, canary_steps=()), "--canary-steps"),
        (replace(CANARY, canary_interval_s=0), "--canary-interval-s"),
        (RolloutSpec(max_error_rate=2), "--max-error-rate"),
        (RolloutSpec(min_requests=0), "--min-requests"),
        (RolloutSpec(max_p95_latency_ratio=0.5), "--max-p95-latency-ratio"),
    ],
)
def test_a_canary_or_analysis_spec_that_cannot_work_is_refused(
    spec: RolloutSpec, field: str
) -> None:
    with pytest.raises(SpecError, match=field):
        check_spec(spec)
    with pytest.raises(SpecError, match="--canary-steps"):
        parse_steps("10;50")
    assert parse_steps("10,50") == (10, 50)


def test_a_rolling_update_keeps_its_last_old_route_until_the_new_revision_is_judged() -> None:
    spec = RolloutSpec(max_surge="1", min_requests=20)
    old, new = _routes(OLD, H), _routes(NEW, H, H, H)
    busy = {OLD: _traffic(40, 0), NEW: _traffic(5, 0)}  # traffic flows; too little of it new
    assert plan_step(_state(old, new, spec=spec, traffic=busy)).drain == ()
    judged = {OLD: _traffic(40, 0), NEW: _traffic(25, 0)}
    assert plan_step(_state(old, new, spec=spec, traffic=judged)).drain == (old[0].id,)
    trickle = {OLD: _traffic(3, 0), NEW: _traffic(1, 0)}  # few, but requests: still held
    assert plan_step(_state(old, new, spec=spec, traffic=trickle)).drain == ()
    waiting = plan_step(_state([], new, spec=spec, traffic=busy))
    assert waiting.outcome is Outcome.IN_PROGRESS
    assert plan_step(_state([], new, spec=spec, traffic=judged)).outcome is Outcome.FINISHED


def test_a_deployment_without_a_request_in_a_minute_rolls_on_health_alone_and_says_so() -> None:
    spec = RolloutSpec(max_surge="1", min_requests=20)
    old, new = _routes(OLD, H), _routes(NEW, H, H, H)
    trickle = {OLD: _traffic(15, 0), NEW: _traffic(10, 0)}
    held = _state(old, new, spec=spec, traffic=trickle, all_new_healthy_for_s=3600)
    assert plan_step(held).drain == ()  # held however long: no timeout stands for a verdict
    quiet = plan_step(replace(held, traffic={}, quiet=True))
    assert quiet.drain == (old[0].id,)
    assert quiet.summary.endswith("no request in the last minute: judged on health alone")


def test_a_canary_step_holds_until_its_requests_were_judged_and_says_how_many_so_far() -> None:
    spec = replace(CANARY, min_requests=20)
    old, new = _routes(OLD, H, H), _weighted(_routes(NEW, H, H), 5.0)
    few = _state(old, new, spec=spec, desired=2, canary_step=0, step_for_s=300,
                 traffic={OLD: _traffic(63, 0), NEW: _traffic(7, 7)})  # fmt: skip
    held = plan_step(few)
    assert (held.canary_step, held.outcome) == (None, Outcome.IN_PROGRESS)
    assert "canary step 1/2 (10 % of traffic, 300/30 s); 7 of 20 requests so far" in held.summary
    late = plan_step(replace(few, elapsed_s=601))
    assert late.outcome is Outcome.FAILED
    assert late.summary == ("revision 2 rolled back: not enough traffic to judge: 7 of 20 "
                            "requests within the deadline of 600s")  # fmt: skip
    enough = plan_step(replace(few, traffic={OLD: _traffic(180, 0), NEW: _traffic(20, 0)}))
    assert enough.canary_step == 1


def test_a_rollback_gives_the_old_routes_their_full_weight_back() -> None:
    old = [replace(r, traffic_ratio=45.0) for r in _routes(OLD, H, H)]
    new = [replace(r, traffic_ratio=5.0) for r in _routes(NEW, H, H)]
    bad = {NEW: _traffic(30, 30), OLD: _traffic(200, 0)}
    step = plan_step(_state(old, new, spec=CANARY, desired=2, canary_step=0, traffic=bad))
    assert step.outcome is Outcome.FAILED
    assert step.weights == {r.id: 1.0 for r in old}
    assert set(step.drain) == {r.id for r in new}


def test_a_steps_progress_reads_back_equal_from_its_stored_form() -> None:
    spec = replace(CANARY, min_requests=20)
    old, new = _routes(OLD, H, H), _weighted(_routes(NEW, H, U), 5.0)
    state = _state(old, new, spec=spec, desired=2, canary_step=0, step_for_s=12,
                   traffic={OLD: _traffic(63, 0), NEW: _traffic(7, 1)})  # fmt: skip
    progress = plan_step(state).progress
    assert progress is not None
    assert progress.canary is not None
    assert (progress.new_healthy, progress.new_total, progress.canary.step) == (1, 2, 1)
    stored = json.loads(json.dumps(progress.to_json()))
    assert RolloutProgress.from_json(stored) == progress
    rolling = plan_step(_state(old, [], spec=RolloutSpec(max_surge="1"))).progress
    assert rolling is not None
    assert "step" not in rolling.to_json()
    assert RolloutProgress.from_json(rolling.to_json()) == rolling


def test_a_wait_that_ends_at_a_known_time_says_when_to_look_again() -> None:
    delayed = replace(BLUE_GREEN, promote_delay_s=30)
    old, new = _routes(OLD, H, H, H), _routes(NEW, H, H, H)
    waiting = plan_step(_state(old, new, spec=delayed, all_new_healthy_for_s=10.0))
    assert (waiting.promote, waiting.again_in_s) == (False, 20.0)
    by_hand = replace(BLUE_GREEN, auto_promote=False)  # an operator's: no time to name
    assert plan_step(_state(old, new, spec=by_hand, all_new_healthy_for_s=10.0)).again_in_s is None
    canary_old, canary_new = _routes(OLD, H, H), _weighted(_routes(NEW, H, H), 5.0)
    judged = {OLD: _traffic(900, 0), NEW: _traffic(100, 0)}
    holding = _state(canary_old, canary_new, spec=CANARY, desired=2, canary_step=0,
                     step_for_s=12, traffic=judged)  # fmt: skip
    assert plan_step(holding).again_in_s == CANARY.canary_interval_s - 12
    entering = plan_step(replace(holding, step_for_s=CANARY.canary_interval_s + 1))
    assert (entering.canary_step, entering.again_in_s) == (1, CANARY.canary_interval_s)
