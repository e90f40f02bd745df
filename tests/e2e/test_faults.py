"""Faults on a running modelfleet: a killed worker, two beats, a header task that raises."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa

from tests.e2e.conftest import APP_PROXY_TOKEN, Stack
from tests.factories import make_deployment, make_route
from tests.integration.fake_app_proxy_server import Reply
from workers.adapters.postgres.schema import phase_runs, routes, sessions
from workers.devtools.processes import celery, wait_for
from workers.domain import DeploymentLifecycle, RouteStatus
from workers.phase_runs import PhaseRun, PhaseRunState

ITEMS = 200


def _call(stack: Stack, phase: str) -> None:
    stack.start(f"call-{phase}", celery("call", phase)).popen.wait(timeout=30)


def _runs(stack: Stack, phase: str) -> list[PhaseRun]:
    return [r for r in stack.phase_store.recent_runs(phase=phase, limit=1000)]


def _run(stack: Stack, run_id: UUID) -> PhaseRun:
    found = stack.phase_store.get_run(run_id)
    assert found is not None
    return found


def _count(stack: Stack, statement: sa.Select[Any]) -> int:
    with stack.engine.connect() as conn:
        return int(conn.execute(statement).scalar_one())


def test_a_worker_killed_mid_phase_loses_no_item_and_starts_no_second_session(
    stack: Stack,
) -> None:
    _routes_to_provision(stack)
    crash_env = {
        "MODELFLEET_FANOUT_MAX_TASKS": str(ITEMS),  # one header task per route
        "MODELFLEET_TASK_TIME_LIMIT_S": "6",
        "MODELFLEET_TASK_SOFT_TIME_LIMIT_S": "5",
        "MODELFLEET_BROKER_VISIBILITY_TIMEOUT_S": "8",
        "MODELFLEET_PHASE_DEADLINE_S": "60",
    }
    stack.env.update(crash_env)
    worker = stack.worker("doomed", concurrency=1)
    with _a_route_that_blocks_its_session(stack) as blocked_at:
        _call(stack, "routes.provision")
        at_kill = _wait_blocked(stack, blocked_at)
        worker.kill_hard()
    assert at_kill < ITEMS, "the phase finished before the kill; nothing was in flight"
    [run] = _runs(stack, "routes.provision")
    assert run.state is PhaseRunState.RUNNING

    stack.worker("reborn")
    stack.beat()
    closed = wait_for(
        lambda: _run(stack, run.id),
        lambda r: r.state is not PhaseRunState.RUNNING,
        timeout_s=120,
        what="the interrupted run to close",
    )
    counts = closed.summary.counts
    assert closed.state in {PhaseRunState.SUCCEEDED, PhaseRunState.RECOVERED}
    assert counts.success + counts.error + counts.stale + counts.skipped + counts.missing == ITEMS
    degraded = sa.select(sa.func.count()).where(routes.c.status == RouteStatus.DEGRADED.value)
    wait_for(lambda: _count(stack, degraded) == ITEMS, timeout_s=60, what="every route provisioned")
    _one_live_session_per_route(stack)


DEFAULT_LIMITS = {
    "MODELFLEET_PHASE_DEADLINE_S": "120",
    "MODELFLEET_TASK_TIME_LIMIT_S": "90",
    "MODELFLEET_TASK_SOFT_TIME_LIMIT_S": "60",
    "MODELFLEET_BROKER_VISIBILITY_TIMEOUT_S": "300",
}


def test_a_worker_killed_at_default_limits_holds_nothing_back_until_the_deadline(
    stack: Stack,
) -> None:
    """The killed tasks' messages come back only after 300 s; waiting for them held every
    item back until the sweeper's 120 s deadline. The run now finishes from what arrived
    once nothing can arrive any more, and the next run settles the rest."""
    deployment = _routes_to_provision(stack)
    stack.env.update({**DEFAULT_LIMITS, "MODELFLEET_FANOUT_MAX_TASKS": str(ITEMS)})
    worker = stack.worker("doomed", concurrency=1)
    with _a_route_that_blocks_its_session(stack) as blocked_at:
        _call(stack, "routes.provision")
        _wait_blocked(stack, blocked_at)
        worker.kill_hard()
    [run] = _runs(stack, "routes.provision")
    assert run.state is PhaseRunState.RUNNING

    stack.worker("reborn")
    stack.beat()
    half_the_deadline_s = 60
    closed = wait_for(
        lambda: _run(stack, run.id),
        lambda r: r.state is not PhaseRunState.RUNNING,
        timeout_s=half_the_deadline_s,
        what="the interrupted run to close",
    )
    # Redis: recovered from what arrived; RabbitMQ: redelivered when the connection dropped.
    assert closed.state in {PhaseRunState.RECOVERED, PhaseRunState.SUCCEEDED}
    degraded = sa.select(sa.func.count()).where(
        routes.c.deployment_id == deployment, routes.c.status == RouteStatus.DEGRADED.value
    )
    wait_for(lambda: _count(stack, degraded) == ITEMS, timeout_s=half_the_deadline_s,
             what="every route provisioned by later runs")  # fmt: skip
    _one_live_session_per_route(stack)


@contextmanager
def _a_route_that_blocks_its_session(stack: Stack) -> Iterator[int]:
    """The run is certainly in flight when the test kills its worker: a transaction of
    the test's own holds a session for the route in the middle (uncommitted), so the
    run's enqueue for that route waits on it (the one-live-session index) until the
    test rolls back, after the kill. Yields how many routes come before it."""
    ordered = stack.query(sa.select(routes.c.id).order_by(routes.c.created_at, routes.c.id))
    middle = len(ordered) // 2
    with stack.engine.connect() as conn:
        holding = conn.begin()
        held = {"route_id": ordered[middle]["id"], "name": "held", "spec": {}}
        conn.execute(sessions.insert().values(id=uuid4(), status="PENDING", **held))
        try:
            yield middle
        finally:
            holding.rollback()


def _wait_blocked(stack: Stack, before: int) -> int:
    """Until the routes before the held one have their sessions and the run waits on the
    held one; the sessions made by then."""
    made = sa.select(sa.func.count()).select_from(sessions)
    waiting = (
        sa.select(sa.func.count())
        .select_from(sa.text("pg_stat_activity"))
        .where(
            sa.text("wait_event_type = 'Lock' AND datname = current_database()"),
            sa.text("query ILIKE 'INSERT INTO sessions%'"),
        )
    )
    wait_for(
        lambda: (_count(stack, made), _count(stack, waiting)),
        lambda seen: seen == (before, 1),
        timeout_s=60,
        what="the run to wait on the held route",
    )
    return before


def _routes_to_provision(stack: Stack) -> UUID:
    stack.catalog.create_scaling_group("rg")
    deployment = stack.catalog.create_deployment(
        make_deployment(
            resource_group="rg", lifecycle=DeploymentLifecycle.READY, replica_count=ITEMS
        )
    )
    stack.catalog.add_routes([make_route(deployment) for _ in range(ITEMS)])
    return deployment.id


def _one_live_session_per_route(stack: Stack) -> None:
    live_per_route = stack.query(
        sa.select(sessions.c.route_id, sa.func.count().label("live"))
        .where(sessions.c.status.not_in(["TERMINATED", "ERROR", "CANCELLED"]))
        .group_by(sessions.c.route_id)
    )
    assert len(live_per_route) == ITEMS
    assert {row["live"] for row in live_per_route} == {1}


def test_two_beats_never_run_one_phase_twice_at_once(stack: Stack) -> None:
    stack.catalog.create_scaling_group(
        "rg", app_proxy_addr=stack.proxy.addr, app_proxy_api_token=APP_PROXY_TOKEN
    )
    for _ in range(2):
        stack.catalog.create_deployment(make_deployment(resource_group="rg"))
    # A slow, failing proxy keeps every check_pending run busy for a while.
    stack.proxy.script.default = lambda seen: Reply(status=500, delay_s=0.4)
    worker = stack.worker(concurrency=4)
    stack.beat("beat-1")
    stack.beat("beat-2")
    wait_for(
        lambda: len([r for r in _runs(stack, "deployments.check_pending") if r.finished_at]) >= 5,
        timeout_s=60,
        what="five finished check_pending runs",
    )
    for process in stack.processes:
        process.stop()
    assert "a run holds the lock" in worker.log_path.read_text(), "no tick ever met a held lock"
    for phase in ("deployments.check_pending", "routes.provision", "routes.health_check"):
        runs = sorted(_runs(stack, phase), key=lambda r: r.started_at)
        for earlier, later in itertools.pairwise(runs):
            assert earlier.finished_at is not None
            assert earlier.finished_at <= later.started_at, f"{phase}: runs overlap"


def test_a_header_task_that_raises_still_lets_the_run_close(stack: Stack) -> None:
    stack.catalog.create_scaling_group(
        "rg", app_proxy_addr=stack.proxy.addr, app_proxy_api_token=APP_PROXY_TOKEN
    )
    deployment = stack.catalog.create_deployment(make_deployment(resource_group="rg"))
    # The proxy hangs past the task's hard time limit: the child running the
    # header task is killed and Celery fails the task (no soft limit to catch).
    stack.proxy.script.default = lambda seen: Reply.json({"endpoint": "http://x"}, 200)
    stack.proxy.script.then(Reply(status=200, body="{}", delay_s=8))
    stack.env.update(
        {
            "MODELFLEET_TASK_TIME_LIMIT_S": "2",
            "MODELFLEET_TASK_SOFT_TIME_LIMIT_S": "0",
            "MODELFLEET_BROKER_VISIBILITY_TIMEOUT_S": "30",
        }
    )
    stack.worker()
    _call(stack, "deployments.check_pending")
    [run] = wait_for(
        lambda: _runs(stack, "deployments.check_pending"),
        lambda runs: bool(runs) and runs[0].state is not PhaseRunState.RUNNING,
        timeout_s=60,
        what="the run to close",
    )
    assert run.state is PhaseRunState.FAILED
    assert "TimeLimitExceeded" in (run.summary.error or "")
    assert stack.redis.get(stack.keys.phase_lock("deployments.check_pending")) is None
    with stack.engine.connect() as conn:
        lifecycle = conn.execute(
            sa.text("SELECT lifecycle FROM deployments WHERE id = :id"), {"id": deployment.id}
        ).scalar_one()
    assert lifecycle == "pending"  # nothing applied from a failed run
    assert isinstance(run.id, UUID)
    assert _count(stack, sa.select(sa.func.count()).select_from(phase_runs)) >= 1


def test_a_worker_whose_clock_runs_3_s_ahead_of_beat_runs_every_tick(stack: Stack) -> None:
    """Ticks once expired one interval after beat sent them, by the worker's clock: a
    worker 3 s ahead revoked every tick of the 0.5 s phases. (faketime: libfaketime moves
    this worker's clock, and only its clock.)"""
    faketime = shutil.which("faketime")
    assert faketime, "faketime is not installed: apt-get install faketime (.ci/run does)"
    worker = stack.start(
        "worker-ahead",
        [faketime, "-f", "+3s", *celery("worker", "--pool=prefork", "--concurrency=2",
                                         "--loglevel=INFO", "--without-mingle",
                                         "--without-gossip")],
    )  # fmt: skip
    wait_for(lambda: worker.log_path.read_text(errors="replace"), lambda log: " ready." in log,
             timeout_s=60, what="the worker to be ready")  # fmt: skip
    stack.beat()
    wait_for(lambda: len(_runs(stack, "hosts.check")), lambda runs: runs >= 10,
             timeout_s=60, what="ten runs of hosts.check (every 0.5 s)")  # fmt: skip
    assert "expired" not in worker.log_path.read_text(errors="replace").lower()
