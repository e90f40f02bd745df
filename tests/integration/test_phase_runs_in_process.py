"""The run machinery of `tasks.runs`, called in this process against real PostgreSQL and Redis.

The e2e tests drive the same code through real workers; these pin down the
contracts that are hard to provoke from outside: an executor that raises, a
header task whose database is down, and a run closed by the sweeper path.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import distinct_on

import tasks  # noqa: F401  # registers every phase
from tasks.phase import ROUTES, AnyPhase, Move, Phase
from tasks.phase_runs.sweep import sweep
from tasks.run_close import close_run
from tasks.runs import PHASES, execute_items, run_items, start_run
from tests.factories import make_deployment, make_route, open_run
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.schema import deployment_history, route_history, routes
from workers.celery import app
from workers.composition import Adapters
from workers.config import PhaseSettings, Settings
from workers.domain import EntityKind, OutcomeBucket, RouteData, RouteExecutionResult, RouteStatus
from workers.errors import InfrastructureUnavailable
from workers.phase_names import PhaseName
from workers.phase_runs import Outcome, PhaseRun, PhaseRunState, RunSummary


@pytest.fixture(autouse=True)
def follow_ups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Phases a closing run starts, recorded instead of published.

    Here the app is configured from this process's environment, not the test's
    broker; the e2e tests check real follow-ups through real workers.
    """
    started: list[str] = []
    monkeypatch.setattr(app, "send_task", lambda name, **_: started.append(name))
    return started


@pytest.fixture
def degraded_routes(catalog: Catalog) -> list[RouteData]:
    catalog.create_scaling_group("sg1")
    deployment = catalog.create_deployment(make_deployment(replica_count=2))
    routes = [make_route(deployment, status=RouteStatus.DEGRADED) for _ in range(2)]
    catalog.add_routes(routes)
    return routes


def _boom(adapters: Adapters, items: list[RouteData]) -> RouteExecutionResult:
    raise RuntimeError("the executor broke")


def test_an_executor_that_raises_turns_every_item_into_an_error_outcome(
    adapters: Adapters, degraded_routes: list[RouteData]
) -> None:
    phase = Phase(
        name=PhaseName.EVICT,  # any name: only its items are executed here
        kind=ROUTES,
        targets=frozenset({RouteStatus.DEGRADED}),
        execute=_boom,
        on={OutcomeBucket.ERROR: Move(RouteStatus.UNHEALTHY)},
    )
    gone = uuid4()  # not a route at all: reported, not silently dropped
    outcomes = execute_items(phase, adapters, [r.id for r in degraded_routes] + [gone])
    expected_errors = {
        Outcome(r.id, OutcomeBucket.ERROR, "RuntimeError", "the executor broke", "unexpected_error")
        for r in degraded_routes
    }
    assert set(outcomes) == expected_errors | {Outcome(gone, OutcomeBucket.SKIPPED)}


def test_close_run_applies_outcomes_once_and_releases_the_lock(
    adapters: Adapters, degraded_routes: list[RouteData], follow_ups: list[str]
) -> None:
    phase = PHASES["routes.health_check"]
    token = adapters.phase_lock.acquire(phase.name, ttl_s=60)
    assert token is not None
    run = open_run(
        adapters.phase_store,
        phase.name,
        item_count=2,
        task_count=1,
        lock_token=token,
        deadline_s=60,
    )
    first, second = degraded_routes
    adapters.outcomes.save(run.id, [Outcome(second.id, OutcomeBucket.SUCCESS)], 60, part="t")
    # The chord delivered only the first outcome: the second comes from Redis.
    closed = close_run(
        phase,
        adapters,
        run.id,
        [Outcome(first.id, OutcomeBucket.SUCCESS)],
        PhaseRunState.SUCCEEDED,
    )
    assert closed is not None
    assert (closed.summary.counts.success, closed.summary.transition_count) == (2, 2)
    assert adapters.phase_lock.holder(phase.name) is None
    statuses = {
        r.status for r in adapters.phase_store.load(EntityKind.ROUTE, frozenset(RouteStatus))
    }
    assert statuses == {RouteStatus.HEALTHY}
    again = close_run(phase, adapters, run.id, [], PhaseRunState.RECOVERED)
    assert again is None  # a redelivered callback, or the sweeper, finds it closed
    # newly healthy: publish them now, and let a rollout waiting for them step on
    assert follow_ups == ["deployments.rollout", "routes.sync_service_discovery"]


def test_a_callback_missing_outcomes_leaves_the_run_to_the_sweeper(
    adapters: Adapters, degraded_routes: list[RouteData]
) -> None:
    phase = PHASES["routes.health_check"]
    run = open_run(
        adapters.phase_store, phase.name, item_count=2, task_count=2, lock_token="t", deadline_s=60
    )
    early = [Outcome(degraded_routes[0].id, OutcomeBucket.SUCCESS)]
    assert close_run(phase, adapters, run.id, early, PhaseRunState.SUCCEEDED) is None
    assert adapters.phase_store.is_running(run.id)
    recovered = close_run(phase, adapters, run.id, early, PhaseRunState.RECOVERED)
    assert recovered is not None
    assert (recovered.state, recovered.summary.counts.missing) == (PhaseRunState.RECOVERED, 1)


def test_a_header_task_retries_a_dead_database_with_backoff_then_fails(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    dead = Settings(
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/nowhere",
        redis_url=redis_url,
        phases=PhaseSettings(item_retries=2),
    )
    monkeypatch.setattr(app, "_settings", dead)
    monkeypatch.setattr(app, "_adapters", None)
    caplog.set_level(logging.WARNING, logger="tasks.runs")
    try:
        result = run_items.apply(args=("routes.provision", str(uuid4()), [str(uuid4())]))
    finally:
        app.close_adapters()
    assert result.state == "FAILURE"
    assert isinstance(result.result, InfrastructureUnavailable)
    waits = [r.getMessage().split(":")[0] for r in caplog.records if r.name == "tasks.runs"]
    assert waits == ["retrying in 1s", "retrying in 2s", "giving up after 2 retries"]
    assert isinstance(UUID(result.id), UUID)


def test_the_sweeper_recovers_overdue_runs_and_fails_runs_of_unknown_phases(
    adapters: Adapters,
    degraded_routes: list[RouteData],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    overdue = open_run(
        adapters.phase_store,
        "routes.health_check",
        item_count=2,
        task_count=1,
        lock_token="t",
        deadline_s=0,
    )
    stored = [Outcome(degraded_routes[0].id, OutcomeBucket.SUCCESS)]
    adapters.outcomes.save(overdue.id, stored, 60, part="t")
    orphan = open_run(
        adapters.phase_store,
        "routes.retired",
        item_count=0,
        task_count=0,
        lock_token="t",
        deadline_s=0,
    )
    monkeypatch.setattr(app, "_adapters", adapters)
    monkeypatch.setattr(app, "_adapters_pid", os.getpid())
    assert sweep.apply().get() == 1
    recovered = adapters.phase_store.get_run(overdue.id)
    failed = adapters.phase_store.get_run(orphan.id)
    assert recovered is not None
    assert failed is not None
    assert (recovered.state, recovered.summary.counts.success) == (PhaseRunState.RECOVERED, 1)
    assert recovered.summary.counts.missing == 1
    assert failed.state is PhaseRunState.FAILED
    assert "unknown phase 'routes.retired'" in (failed.summary.error or "")


def _held(adapters: Adapters, phase_name: str) -> PhaseRun:
    """A run of `phase_name` that holds its lock and is open, as one in progress would."""
    token = adapters.phase_lock.acquire(phase_name, ttl_s=60)
    assert token is not None
    return open_run(adapters.phase_store, phase_name, lock_token=token)


def test_a_follow_up_that_finds_the_phase_busy_is_run_when_the_busy_run_closes(
    adapters: Adapters, follow_ups: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scale-in's sync must not be lost to a sync run that loaded its set just before."""
    phase = PHASES["routes.sync_service_discovery"]
    monkeypatch.setattr(app, "_adapters", adapters)
    monkeypatch.setattr(app, "_adapters_pid", os.getpid())
    busy = _held(adapters, phase.name)
    assert start_run(phase) is None  # a beat tick: nothing to remember
    assert close_run(phase, adapters, busy.id, [], PhaseRunState.SUCCEEDED) is not None
    assert follow_ups == []

    busy = _held(adapters, phase.name)
    assert start_run(phase, rerun_if_busy=True) is None  # a follow-up: remembered
    assert close_run(phase, adapters, busy.id, [], PhaseRunState.SUCCEEDED) is not None
    assert follow_ups == [phase.name]


def test_drained_routes_are_those_out_of_traffic_for_their_deployments_drain_s(
    adapters: Adapters, catalog: Catalog, engine: sa.Engine
) -> None:
    catalog.create_scaling_group("sg1")
    slow = catalog.create_deployment(make_deployment(drain_s=30))
    instant = catalog.create_deployment(make_deployment(drain_s=0))
    waiting, long_ago = (make_route(slow, status=RouteStatus.DRAINING) for _ in range(2))
    done = make_route(instant, status=RouteStatus.DRAINING)
    catalog.add_routes([waiting, long_ago, done, make_route(instant, status=RouteStatus.HEALTHY)])
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE routes SET status_changed_at = now() - interval '31 s' WHERE id = :id"),
            {"id": long_ago.id},
        )
    drained = {route.id for route in adapters.phase_store.load_drained_routes()}
    assert drained == {long_ago.id, done.id}


def test_the_database_allows_one_open_run_per_phase(adapters: Adapters) -> None:
    """The Redis lock can vanish with a Redis restart; the open row cannot."""
    store = adapters.phase_store
    first = open_run(store, "routes.provision")
    assert (
        store.open_run(
            "routes.provision", item_count=0, task_count=0, lock_token="x", deadline_s=60
        )
        is None
    )
    open_run(store, "routes.terminate")  # another phase is not held back
    with store.transaction() as conn:
        store.claim_running(conn, first.id)
        store.close_run(conn, first.id, PhaseRunState.SUCCEEDED, RunSummary())
    open_run(store, "routes.provision")


@pytest.fixture
def quick_stall(adapters: Adapters, monkeypatch: pytest.MonkeyPatch) -> Adapters:
    """The app's adapters, with a run stalled after 0.3 s without progress."""
    quick = dataclasses.replace(
        adapters,
        settings=dataclasses.replace(
            adapters.settings, phases=dataclasses.replace(adapters.settings.phases, stall_s=0.3)
        ),
    )
    monkeypatch.setattr(app, "_adapters", quick)
    monkeypatch.setattr(app, "_adapters_pid", os.getpid())
    return quick


def test_a_new_run_recovers_a_run_whose_tasks_died_with_their_worker(
    quick_stall: Adapters, degraded_routes: list[RouteData]
) -> None:
    phase = PHASES["routes.provision"]
    orphan = open_run(quick_stall.phase_store, phase.name, item_count=2, lock_token="gone")
    quick_stall.run_progress.claim(orphan.id, "task-1", ttl_s=60)
    quick_stall.redis.delete(quick_stall.run_progress.worker_alive_key)  # the worker dies
    time.sleep(0.5)
    assert start_run(phase) is not None  # no provisioning routes: the new run closes at once
    recovered = quick_stall.phase_store.get_run(orphan.id)
    assert recovered is not None
    assert (recovered.state, recovered.summary.counts.missing) == (PhaseRunState.RECOVERED, 2)


def test_a_run_whose_task_runs_on_a_live_worker_is_waited_for(
    quick_stall: Adapters, degraded_routes: list[RouteData]
) -> None:
    phase = PHASES["routes.provision"]
    busy = open_run(quick_stall.phase_store, phase.name, item_count=2, lock_token="busy")
    quick_stall.run_progress.claim(busy.id, "task-1", ttl_s=60)  # this process: alive
    time.sleep(0.5)
    assert start_run(phase) is None
    assert quick_stall.phase_store.is_running(busy.id)
    assert quick_stall.phase_lock.holder(phase.name) is None  # the tick let go of the lock
    quick_stall.run_progress.release(busy.id, "task-1", ttl_s=60)
    time.sleep(0.5)
    assert sweep.apply().get() == 1  # nothing left in flight and nothing moving: finished
    assert not quick_stall.phase_store.is_running(busy.id)


def test_a_lock_left_by_a_dead_worker_is_taken_over_and_a_live_ones_is_kept(
    quick_stall: Adapters, degraded_routes: list[RouteData]
) -> None:
    phase, lock = PHASES["routes.provision"], quick_stall.phase_lock
    # Taken by a worker that died before it opened its run: no run row, no claim.
    assert lock.acquire(phase.name, ttl_s=60, owner="gone-host:4242") is not None
    assert start_run(phase) is not None  # not blocked until the lock's 60 s TTL
    assert lock.holder(phase.name) is None  # the new run closed and let go
    live = lock.acquire(phase.name, ttl_s=60, owner=quick_stall.run_progress.worker_id)
    assert start_run(phase) is None
    assert lock.holder(phase.name) == live


def test_a_lock_whose_release_failed_after_its_run_closed_is_taken_over_at_the_next_tick(
    quick_stall: Adapters, degraded_routes: list[RouteData], monkeypatch: pytest.MonkeyPatch
) -> None:
    phase, lock = PHASES["routes.provision"], quick_stall.phase_lock
    real_release = lock.release

    def refused(*_: Any) -> bool:
        raise InfrastructureUnavailable("redis unavailable: the release's reply was lost")

    monkeypatch.setattr(lock, "release", refused)
    with pytest.raises(InfrastructureUnavailable):
        start_run(phase)  # the run closes, then letting go of the lock fails
    monkeypatch.setattr(lock, "release", real_release)
    held = lock.holder(phase.name)
    assert held is not None  # the owner (this process) is alive, but its run is closed
    closed = quick_stall.phase_store.get_run(lock.run_of(held))  # type: ignore[arg-type]
    assert closed is not None
    assert closed.state is PhaseRunState.SUCCEEDED
    assert start_run(phase) is not None  # not blocked for the lock's TTL (the deadline)


def test_a_lock_taken_for_a_run_that_never_opened_is_kept_a_while_then_taken_over(
    quick_stall: Adapters, degraded_routes: list[RouteData]
) -> None:
    phase, lock = PHASES["routes.provision"], quick_stall.phase_lock
    opening = lock.acquire(phase.name, ttl_s=120, owner=quick_stall.run_progress.worker_id,
                           run_id=uuid4())  # fmt: skip
    assert start_run(phase) is None  # its owner lives and may be opening it right now
    assert lock.holder(phase.name) == opening
    time.sleep(0.5)  # longer than the stall time (0.3 s here): nobody is opening it
    assert start_run(phase) is not None


def test_a_run_in_its_phases_own_task_reads_its_routes_once(
    quick_stall: Adapters, degraded_routes: list[RouteData]
) -> None:
    """Counted, then loaded whole once, then only the guard's locked read of the rows it
    changes: not ids and then rows by id, nor a second read of every status (each cost
    milliseconds at 1,000 routes)."""
    adapters = quick_stall  # the app's adapters (nothing here stalls)
    adapters.health_store.update_readiness({str(route.id): True for route in degraded_routes})
    reads: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("SELECT") and "\nFROM routes" in statement:
            reads.append(statement)

    sa.event.listen(adapters.engine, "before_cursor_execute", record)
    try:
        run_id = start_run(PHASES["routes.health_check"])
    finally:
        sa.event.remove(adapters.engine, "before_cursor_execute", record)

    assert run_id is not None
    run = adapters.phase_store.get_run(UUID(run_id))
    assert run is not None
    assert (run.state, run.task_count, run.summary.transition_count) == (
        PhaseRunState.SUCCEEDED, 1, 2,
    )  # fmt: skip
    kinds = sorted("locked" if "FOR UPDATE" in s else "count" if "count(*)" in s else "rows"
                   for s in reads)  # fmt: skip
    assert kinds == ["count", "locked", "rows"], reads


def _run_once(adapters: Adapters, phase: AnyPhase, ids: list[UUID]) -> PhaseRun | None:
    token = adapters.phase_lock.acquire(phase.name, ttl_s=60)
    assert token is not None
    run = open_run(adapters.phase_store, phase.name, item_count=len(ids), task_count=1,
                   lock_token=token, deadline_s=60)  # fmt: skip
    outcomes = execute_items(phase, adapters, ids)
    return close_run(phase, adapters, run.id, outcomes, PhaseRunState.SUCCEEDED)


def test_a_deployment_waiting_for_an_app_proxy_says_why_in_its_history_once(
    adapters: Adapters, catalog: Catalog, engine: sa.Engine
) -> None:
    """It once sat `pending` for ever with nothing said."""
    catalog.create_scaling_group("no-proxy")
    waiting = catalog.create_deployment(make_deployment(resource_group="no-proxy"))
    phase = PHASES["deployments.check_pending"]
    for _ in range(2):
        closed = _run_once(adapters, phase, [waiting.id])
        assert closed is not None
        assert closed.summary.counts.waiting == 1
    with engine.connect() as conn:
        history = conn.execute(
            sa.select(deployment_history).where(deployment_history.c.deployment_id == waiting.id)
        ).mappings().all()  # fmt: skip
    [row] = history  # the second run counted an attempt instead of adding a row
    assert (row["result"], row["error_code"], row["attempts"]) == ("waiting", "no_app_proxy", 2)
    assert row["message"] == (
        "resource group no-proxy has no app proxy address: endpoint not registered; waiting"
    )
    assert row["to_status"] == "pending"


def test_a_callback_of_20000_outcomes_writes_exactly_their_transitions_and_history(
    adapters: Adapters, catalog: Catalog, engine: sa.Engine
) -> None:
    """routes.health_check's callback on 20,000 stored outcomes, in four kinds of 5,000:
    degraded and answering (-> healthy), healthy and answering (nothing to write),
    healthy and failing (-> unhealthy; half of them repeat their latest history row,
    which is bumped), terminated (the guard refuses)."""
    phase, count = PHASES["routes.health_check"], 20_000
    catalog.create_scaling_group("sg1")
    deployment = catalog.create_deployment(make_deployment(replica_count=count))
    kinds = ["degraded", "healthy", "healthy", "terminated"]
    ids = [uuid4() for _ in range(count)]
    with engine.begin() as conn:
        conn.execute(routes.insert(), [
            {"id": route_id, "deployment_id": deployment.id, "status": kinds[n % 4]}
            for n, route_id in enumerate(ids)
        ])  # fmt: skip
        conn.execute(route_history.insert(), [
            {"route_id": route_id, "phase": phase.name, "from_status": "degraded",
             "to_status": "unhealthy", "result": "error", "error_code": "probe_failed",
             "message": "an earlier failure"}
            for n, route_id in enumerate(ids) if n % 8 == 2
        ])  # fmt: skip

    def outcome(n: int, route_id: UUID) -> Outcome:
        if n % 4 == 2:
            return Outcome(route_id, OutcomeBucket.ERROR, "probe", f"no answer {n}", "probe_failed")
        return Outcome(route_id, OutcomeBucket.SUCCESS)

    outcomes = [outcome(n, route_id) for n, route_id in enumerate(ids)]
    run = open_run(adapters.phase_store, phase.name, item_count=count, task_count=2)
    for task, half in enumerate((outcomes[: count // 2], outcomes[count // 2 :])):  # two tasks
        adapters.outcomes.save(run.id, half, ttl_s=60, part=f"task-{task}")

    closed = close_run(phase, adapters, run.id, [], PhaseRunState.SUCCEEDED)

    assert closed is not None
    assert closed.summary.transition_count == 10_000
    with engine.connect() as conn:
        statuses, histories = (
            _counted(conn, routes.c.status),
            _counted(conn, route_history.c.attempts),
        )
        sample = ids[::997]
        written = {row.id: row for row in conn.execute(
            sa.select(routes.c.id, routes.c.status, routes.c.error_data)
            .where(routes.c.id.in_(sample)))}  # fmt: skip
        latest = {row.route_id: row for row in conn.execute(
            sa.select(route_history).where(route_history.c.route_id.in_(sample))
            .order_by(route_history.c.route_id, route_history.c.id.desc())
            .ext(distinct_on(route_history.c.route_id)))}  # fmt: skip
    assert statuses == {"healthy": 10_000, "unhealthy": 5_000, "terminated": 5_000}
    # 5,000 degraded -> healthy and 2,500 new failures, 2,500 failures repeated (attempts 2)
    assert histories == {1: 7_500, 2: 2_500}
    for n, route_id in zip(range(0, count, 997), sample, strict=True):
        assert _written(written[route_id], latest.get(route_id)) == _expected(n), n


def _counted(conn: sa.Connection, column: sa.Column[Any]) -> dict[Any, int]:
    query = sa.select(column, sa.func.count()).group_by(column)
    return {value: count for value, count in conn.execute(query)}


def _written(route: Any, history: Any) -> tuple[Any, ...]:
    said = None if history is None else (
        history.from_status, history.to_status, history.result, history.message, history.attempts
    )  # fmt: skip
    return route.status, route.error_data, said


def _expected(n: int) -> tuple[Any, ...]:
    """What route number `n` of the 20,000 must look like after the callback."""
    failure = {"phase": "routes.health_check", "error_code": "probe_failed",
               "message": f"probe: no answer {n}"}  # fmt: skip
    if n % 4 == 0:
        return "healthy", None, ("degraded", "healthy", "success", "", 1)
    if n % 4 == 1:
        return "healthy", None, None
    if n % 8 == 2:
        return "unhealthy", failure, ("degraded", "unhealthy", "error", failure["message"], 2)
    if n % 4 == 2:
        return "unhealthy", failure, ("healthy", "unhealthy", "error", failure["message"], 1)
    return "terminated", None, None


def test_a_waiting_item_that_says_when_to_look_again_runs_its_phase_again_then(
    adapters: Adapters, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sooner than its next tick: the run that closes sends the phase with that countdown;
    a wait later than the tick leaves it to the tick. The time crosses Redis as it came."""
    sent: list[tuple[str, float | None]] = []

    def send_task(name: str, countdown: float | None = None, **_: object) -> None:
        sent.append((name, countdown))

    monkeypatch.setattr(app, "send_task", send_task)
    catalog.create_scaling_group("sg1")
    deployment = catalog.create_deployment(make_deployment())
    phase = PHASES["deployments.rollout"]  # every second
    for again_in_s in (0.4, 5.0):
        token = adapters.phase_lock.acquire(phase.name, ttl_s=60)
        assert token is not None
        run = open_run(adapters.phase_store, phase.name, item_count=1, task_count=1,
                       lock_token=token, deadline_s=60)  # fmt: skip
        waiting = Outcome(deployment.id, OutcomeBucket.WAITING, again_in_s=again_in_s)
        adapters.outcomes.save(run.id, [waiting], 60, part="t")
        assert close_run(phase, adapters, run.id, [], PhaseRunState.RECOVERED) is not None
    # (a waiting rollout's own follow-ups go at once, as before)
    assert [(name, countdown) for name, countdown in sent if countdown is not None] == [
        ("deployments.rollout", 0.4)
    ]
