"""Shipping revisions under ~20 requests/s through the dev proxy, the reference world only
(runner, prober, proxy, sample model). Every answer other than 200, and every connection
error, is a failure; the sample model says which revision answered each request."""

from __future__ import annotations

import json
import time

import sqlalchemy as sa

from tests.e2e.fleet import NAME, TIMEOUT_S, cli, endpoint_url, published, rows, serving
from workers.adapters.postgres.schema import deployment_history, deployments, routes
from workers.devtools import dev
from workers.devtools.processes import wait_for
from workers.devtools.traffic import Answer, LoadLoop, failures

ROLLOUT_TIMEOUT_S = "240"


def _revisions(answers: list[Answer]) -> list[int | None]:
    return [a.revision for a in sorted(answers, key=lambda a: a.sent_at)]


def _update(system: dev.DevSystem, *args: str) -> dict[str, int]:
    done = cli(system, "deployment", "update", NAME, *args, "--json", timeout_s=300)
    assert done.returncode == 0, done.stderr
    document: dict[str, int] = json.loads(done.stdout)
    return document


def _current(system: dev.DevSystem) -> tuple[int, int | None, str]:
    [row] = rows(
        system,
        sa.select(
            deployments.c.current_revision,
            deployments.c.deploying_revision,
            deployments.c.lifecycle,
        ).where(deployments.c.name == NAME, deployments.c.lifecycle != "destroyed"),
    )
    return row.current_revision, row.deploying_revision, row.lifecycle


def test_rolling_update_rollback_and_a_superseding_update_fail_no_request(
    system: dev.DevSystem,
) -> None:
    deployment = serving(system, replicas=3)
    load = LoadLoop(endpoint_url(system, deployment.id), rate_per_s=20)
    with load.running():
        time.sleep(2)
        started = time.monotonic()
        shipped = _update(system, "--image", "sample-model:2", "--max-surge", "1", "--wait",
                          "--timeout-s", ROLLOUT_TIMEOUT_S)  # fmt: skip
        assert shipped == {"deployment": NAME, "revision": 2}
        rolled = time.monotonic()
        time.sleep(2)
        rollback_started = time.monotonic()
        back = cli(system, "deployment", "rollback", NAME, "--wait", "--json", timeout_s=300)
        assert back.returncode == 0, back.stderr
        assert json.loads(back.stdout)["revision"] == 1
        time.sleep(2)
        superseded = _update(system, "--image", "sample-model:3")["revision"]
        last = _update(system, "--image", "sample-model:4", "--wait", "--timeout-s",
                       ROLLOUT_TIMEOUT_S)["revision"]  # fmt: skip
        time.sleep(2)
    answers = load.snapshot()
    assert len(answers) > 200, "the load loop must run through every rollout"
    assert failures(answers) == []
    before = [a for a in answers if a.sent_at < started]
    during_update = [a for a in answers if started <= a.sent_at < rolled]
    after_update = [a for a in answers if rolled <= a.sent_at < rollback_started]
    assert set(_revisions(before)) == {1}
    # Answers move from revision 1 to 2 and, once the rollout ended, never go back.
    assert set(_revisions(during_update)) <= {1, 2}
    assert set(_revisions(after_update)) <= {2}
    assert (superseded, last) == (3, 4)  # a rollback makes no new revision
    assert _revisions(answers)[-20:] == [last] * 20
    assert _current(system) == (last, None, "ready")


def test_blue_green_serves_nothing_new_before_the_switch_and_nothing_old_after(
    system: dev.DevSystem,
) -> None:
    deployment = serving(system, replicas=3)
    load = LoadLoop(endpoint_url(system, deployment.id), rate_per_s=20)
    with load.running():
        time.sleep(2)
        _update(
            system, "--image", "sample-model:2", "--strategy", "blue-green", "--no-auto-promote"
        )
        wait_for(lambda: rows(system, _standby_healthy()), lambda found: len(found) == 3,
                 timeout_s=TIMEOUT_S, what="3 new routes healthy and waiting")  # fmt: skip
        time.sleep(2)  # the new routes are healthy: still no traffic for them
        promoted_at = time.monotonic()
        done = cli(system, "deployment", "promote", NAME)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: _current(system), lambda c: c == (2, None, "ready"),
                 timeout_s=TIMEOUT_S, what="revision 2 serving")  # fmt: skip
        wait_for(lambda: published(system, deployment.id), lambda n: n == 3,
                 timeout_s=TIMEOUT_S, what="the old routes out of service discovery")  # fmt: skip
        switched_at = time.monotonic()
        time.sleep(3)
    answers = load.snapshot()
    assert failures(answers) == []
    assert set(_revisions([a for a in answers if a.sent_at < promoted_at])) == {1}
    assert set(_revisions([a for a in answers if a.sent_at > switched_at])) == {2}


def _standby_healthy() -> sa.Select[tuple[object]]:
    return sa.select(routes.c.id).where(
        routes.c.traffic_status == "standby", routes.c.status == "healthy"
    )


NEVER_HEALTHY_TRIES = 10
# The sample deployment's health budget: 5 s initial delay, then 2 probes 1 s apart.
BUDGET_S = 7
# Generous against the product's bound (failure_threshold x budget + 15 s = 36 s): a
# rollout stuck for minutes, as before, fails; the timing itself is bench/rollout.py's.
SICK_TIMEOUT_S = "90"


def test_a_revision_that_crashes_and_one_that_is_never_healthy_roll_back_by_themselves(
    system: dev.DevSystem,
) -> None:
    deployment = serving(system, replicas=3)
    load = LoadLoop(endpoint_url(system, deployment.id), rate_per_s=20)
    with load.running():
        time.sleep(2)
        crashing = cli(system, "deployment", "update", NAME,
                       "--command", "python -c \"import sys; print('no weights'); sys.exit(3)\"",
                       "--wait", "--timeout-s", ROLLOUT_TIMEOUT_S, timeout_s=300)  # fmt: skip
        # The same never-healthy revision, shipped again and again: rolled back every time,
        # within its health budget (three new routes at once, each failing in one budget).
        sick = [
            cli(system, "deployment", "update", NAME, "--health-path", "/nowhere",
                "--max-surge", "100%", "--wait", "--timeout-s", SICK_TIMEOUT_S, timeout_s=300)
            for _ in range(NEVER_HEALTHY_TRIES)
        ]  # fmt: skip
        time.sleep(2)
    assert crashing.returncode == 1, crashing.stderr
    assert "sessions exited with code 3: no weights" in crashing.stderr
    for tried in sick:
        assert tried.returncode == 1, tried.stderr
        assert "rolled back: 3 failures" in tried.stderr
        assert (
            f"3 routes never became healthy within {BUDGET_S} s "
            "(health path /nowhere answered 404)" in tried.stderr
        )
    answers = load.snapshot()
    assert failures(answers) == []
    assert set(_revisions(answers)) == {1}  # the old revision served throughout
    assert _current(system) == (1, None, "ready")
    assert published(system, deployment.id) == 3
    reasons = rows(system, sa.select(deployment_history.c.message).where(
        deployment_history.c.result == "error", deployment_history.c.phase == "deployments.rollout"
    ).order_by(deployment_history.c.id))  # fmt: skip
    assert len(reasons) == 1 + NEVER_HEALTHY_TRIES
    assert "exited with code 3" in reasons[0][0]
