"""Outcome records: what header tasks return and store, and the seed results rebuilt from them."""

from __future__ import annotations

from uuid import uuid4

import pytest

from tests.factories import make_deployment, make_route
from workers.domain import (
    DeploymentExecutionError,
    DeploymentExecutionResult,
    OutcomeBucket,
    RouteExecutionError,
    RouteExecutionResult,
)
from workers.phase_runs import (
    ERROR_SAMPLE_SIZE,
    Outcome,
    OutcomeCounts,
    RunProgress,
    deployment_outcomes,
    error_samples,
    route_outcomes,
)


def test_an_outcome_survives_json_and_only_errors_and_explained_skips_carry_a_reason() -> None:
    failed = Outcome(uuid4(), OutcomeBucket.ERROR, "Boom", "it broke", "code")
    assert Outcome.from_json(failed.to_json()) == failed
    fine = Outcome(uuid4(), OutcomeBucket.SUCCESS)
    assert fine.to_json() == {"id": str(fine.id), "bucket": "success"}
    assert Outcome.from_json(fine.to_json()) == fine
    # A pending deployment waiting for an app proxy says why through Redis too.
    waiting = Outcome(uuid4(), OutcomeBucket.SKIPPED, "no app proxy", "waiting", "no_app_proxy")
    assert Outcome.from_json(waiting.to_json()) == waiting


def test_counts_per_bucket_and_the_items_without_an_outcome() -> None:
    outcomes = [
        Outcome(uuid4(), OutcomeBucket.SUCCESS),
        Outcome(uuid4(), OutcomeBucket.SUCCESS),
        Outcome(uuid4(), OutcomeBucket.STALE),
    ]
    assert OutcomeCounts.of(outcomes, item_count=5) == OutcomeCounts(success=2, stale=1, missing=2)
    assert OutcomeCounts.of(outcomes, item_count=3).missing == 0


def test_error_samples_keep_the_first_errors_only() -> None:
    errors = [Outcome(uuid4(), OutcomeBucket.ERROR, "r", "d") for _ in range(30)]
    samples = error_samples([Outcome(uuid4(), OutcomeBucket.SUCCESS), *errors])
    assert len(samples) == ERROR_SAMPLE_SIZE
    assert samples[0]["id"] == str(errors[0].id)


def test_a_route_result_becomes_one_record_per_route_saying_why_it_failed() -> None:
    ok, sick, stale = (make_route() for _ in range(3))
    result = RouteExecutionResult(
        successes=[ok],
        errors=[RouteExecutionError(sick, "RouteUnhealthy", "failed its probe", "route_unhealthy")],
        stale=[stale],
    )
    records = [
        Outcome.from_json(o.to_json()) for o in route_outcomes(result)
    ]  # as Redis keeps them
    assert records == [
        Outcome(ok.id, OutcomeBucket.SUCCESS),
        Outcome(
            sick.id, OutcomeBucket.ERROR, "RouteUnhealthy", "failed its probe", "route_unhealthy"
        ),
        Outcome(stale.id, OutcomeBucket.STALE),
    ]
    assert records[1].message == "RouteUnhealthy: failed its probe"


def test_skipped_means_nothing_to_do_and_waiting_says_what_it_waits_for() -> None:
    done, idle, waits = (make_deployment() for _ in range(3))
    why = DeploymentExecutionError(waits, "no app proxy", "endpoint not registered", "no_app_proxy")
    result = DeploymentExecutionResult(
        successes=[done], skipped=[idle], waiting=[waits], reasons={waits.id: why}
    )
    records = deployment_outcomes(result)
    assert [(o.bucket, o.says_why) for o in records] == [
        (OutcomeBucket.SUCCESS, False),
        (OutcomeBucket.SKIPPED, False),
        (OutcomeBucket.WAITING, True),
    ]
    assert records[2].message == "no app proxy: endpoint not registered"
    assert OutcomeCounts.of(records, 4) == OutcomeCounts(success=1, skipped=1, waiting=1, missing=1)


@pytest.mark.parametrize(
    ("quiet_s", "claims", "live", "stalled"),
    [
        (5, {}, set(), False),  # moved 5 s ago: wait
        (11, {}, set(), True),  # nothing in flight, nothing moved: tasks lost (or never taken)
        (11, {"t1": "w1"}, {"w1"}, False),  # a live worker still runs a task
        (11, {"t1": "w1", "t2": "w2"}, {"w2"}, False),
        (11, {"t1": "w1"}, {"w2"}, True),  # its task died with its worker
        (300, {"t1": "w1"}, {"w1"}, False),  # a slow task on a live worker is waited for
    ],
)
def test_a_run_is_stalled_when_quiet_for_stall_s_and_no_live_worker_holds_a_task(
    quiet_s: float, claims: dict[str, str], live: set[str], stalled: bool
) -> None:
    progress = RunProgress(
        now_s=1000.0, last_progress_s=1000.0 - quiet_s, claims=claims, live_workers=frozenset(live)
    )
    assert progress.stalled(started_s=0.0, stall_s=10) is stalled


def test_a_run_with_no_progress_yet_counts_from_its_start() -> None:
    fresh = RunProgress(now_s=1000.0, last_progress_s=None, claims={}, live_workers=frozenset())
    assert not fresh.stalled(started_s=995.0, stall_s=10)
    assert fresh.stalled(started_s=985.0, stall_s=10)


def test_a_run_older_than_the_redis_server_is_stalled_at_once() -> None:
    """Redis restarted: the run's chord and queued tasks are gone, whatever its claims say."""
    progress = RunProgress(now_s=1000.0, last_progress_s=999.0, claims={"t": "w"},
                           live_workers=frozenset({"w"}), store_started_s=995.0)  # fmt: skip
    assert progress.stalled(started_s=990.0, stall_s=10)
    assert not progress.stalled(started_s=996.0, stall_s=10)
