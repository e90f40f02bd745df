"""Canary releases and analysis by the requests, under ~20 requests/s through the proxy (the
reference world; the sample model says which revision answered and can be told to fail a
share of its completions, MODEL_ERROR_RATE, with a passing health check).

One world for three rollouts in a row: a good canary walks 10 % then 50 % of the traffic
and finishes; a canary answering half its requests 500 is rolled back in its first step;
a rolling update whose every answer is 500 is rolled back by its requests.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from tests.e2e.fleet import NAME, TIMEOUT_S, cli, endpoint_url, rows, serving
from workers.adapters.postgres.schema import deployment_revisions, deployments
from workers.devtools import dev
from workers.devtools.traffic import Answer, LoadLoop, between, failures

STEP_S = 10  # each canary step holds this long
SETTLE_S = 1.5  # a weight change reaches the proxies: a sync and the change feed
SHARE_TOLERANCE = 0.05


def test_a_canary_walks_its_steps_and_bad_revisions_are_rolled_back_by_their_requests(
    system: dev.DevSystem,
) -> None:
    deployment = serving(system, replicas=2)
    load = LoadLoop(endpoint_url(system, deployment.id), rate_per_s=20)
    with load.running(), _steps_seen(system) as steps:
        time.sleep(2)
        started = time.monotonic()
        good = _update(system, "--env", "MODEL_VARIANT=2", "--strategy", "canary",
                       "--canary-steps", "10,50", "--canary-interval-s", str(STEP_S))  # fmt: skip
        assert good.returncode == 0, good.stderr
        good_done = time.monotonic()
        time.sleep(2)
        bad_started = time.monotonic()
        bad = _update(system, "--env", "MODEL_ERROR_RATE=0.5", "--strategy", "canary",
                      "--canary-steps", "10,50", "--canary-interval-s", "120")  # fmt: skip
        bad_done = time.monotonic()
        time.sleep(3)
        rolling_started = time.monotonic()
        broken = _update(system, "--env", "MODEL_ERROR_RATE=1", "--max-surge", "1")
        rolling_done = time.monotonic()
        time.sleep(3)
    answers = load.snapshot()

    # The good canary: each step's share within 5 points, then revision 2 alone; no failure.
    [step_10, step_50] = [at for at in steps if started <= at < good_done][:2]
    assert _share(between(answers, step_10 + SETTLE_S, step_50), 2) == _near(0.10)
    assert _share(between(answers, step_50 + SETTLE_S, step_50 + STEP_S), 2) == _near(0.50)
    assert failures(between(answers, started, bad_started)) == []
    assert {a.revision for a in between(answers, good_done + SETTLE_S, bad_started)} == {2}

    # Half its answers 500: rolled back in its first step, having cost at most 20 requests.
    assert bad.returncode == 1
    # Every second answer of its failed: about half of those counted when it was judged.
    assert re.search(r"rolled back: 5xx rate 0\.[45]\d over \d+ requests \(limit 0\.05\); "
                     r"revision 2: 0\.00$", bad.stderr.strip()), bad.stderr  # fmt: skip
    bad_failed = failures(between(answers, bad_started, rolling_started))
    assert 0 < len(bad_failed) <= 20, f"{len(bad_failed)} failed requests"
    assert {a.revision for a in between(answers, bad_done + SETTLE_S, rolling_started)} == {2}

    # Every answer 500 with a passing health check: rolled back by the requests.
    assert broken.returncode == 1
    assert "rolled back: 5xx rate 1.00" in broken.stderr, broken.stderr
    assert failures(between(answers, rolling_done + SETTLE_S, time.monotonic())) == []
    assert _revision_states(system) == {1: "", 2: "current", 3: "failed", 4: "failed"}


def _update(system: dev.DevSystem, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(system, "deployment", "update", NAME, *args, "--wait", "--timeout-s",
               str(TIMEOUT_S * 2), timeout_s=TIMEOUT_S * 3)  # fmt: skip


@contextmanager
def _steps_seen(system: dev.DevSystem) -> Iterator[list[float]]:
    """When (time.monotonic()) each canary step was entered, polled every 0.1 s."""
    seen: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        last = None
        while not stop.wait(0.1):
            [row] = rows(system, sa.select(deployments.c.rollout_step_started_at)
                         .where(deployments.c.name == NAME,
                                deployments.c.lifecycle != "destroyed"))  # fmt: skip
            if row[0] is not None and row[0] != last:
                last = row[0]
                seen.append(time.monotonic())

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(timeout=5)


def _share(answers: list[Answer], revision: int) -> float:
    assert len(answers) > 50, "too few answers in the step to judge its share"
    return sum(1 for a in answers if a.revision == revision) / len(answers)


class _near:  # noqa: N801  # reads as a value in the assertions above
    __hash__ = None  # type: ignore[assignment]  # compares by tolerance: not hashable

    def __init__(self, expected: float) -> None:
        self.expected = expected

    def __eq__(self, actual: object) -> bool:
        return isinstance(actual, float) and abs(actual - self.expected) <= SHARE_TOLERANCE

    def __repr__(self) -> str:
        return f"{self.expected:.2f} +- {SHARE_TOLERANCE}"


def _revision_states(system: dev.DevSystem) -> dict[int, str]:
    query = (
        sa.select(deployment_revisions.c.number, deployment_revisions.c.failed_reason,
                  deployments.c.current_revision)
        .join(deployments, deployments.c.id == deployment_revisions.c.deployment_id)
        .where(deployments.c.name == NAME, deployments.c.lifecycle != "destroyed")
    )  # fmt: skip
    return {
        row.number: "current" if row.number == row.current_revision
        else "failed" if row.failed_reason else ""
        for row in rows(system, query)
    }  # fmt: skip
