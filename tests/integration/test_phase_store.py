"""What the phase tasks read and write: targets, phase runs, the phase lock and stored outcomes."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
import redis
import sqlalchemy as sa

from tests.factories import add_exited_session, make_deployment, make_revision, make_route, open_run
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.phase_store import PostgresPhaseStore
from workers.adapters.postgres.schema import phase_runs
from workers.adapters.redis.keys import RedisKeys
from workers.adapters.redis.phase_runs import RedisOutcomeStore, RedisPhaseLock
from workers.domain import (
    DeploymentLifecycle,
    EntityKind,
    HealthCheckConfig,
    OutcomeBucket,
    RouteStatus,
)
from workers.phase_runs import Outcome, OutcomeCounts, PhaseRunState, RunSummary


@pytest.fixture
def group(catalog: Catalog) -> str:
    catalog.create_scaling_group(
        "sg1", cleanup_statuses=(RouteStatus.UNHEALTHY, RouteStatus.DEGRADED)
    )
    return "sg1"


def test_load_by_status_and_by_ids(
    phase_store: PostgresPhaseStore, catalog: Catalog, group: str
) -> None:
    pending = catalog.create_deployment(make_deployment())
    ready = catalog.create_deployment(make_deployment(lifecycle=DeploymentLifecycle.READY))
    catalog.add_routes(
        [
            healthy := make_route(ready, status=RouteStatus.HEALTHY),
            degraded := make_route(ready, status=RouteStatus.DEGRADED),
            make_route(ready, status=RouteStatus.TERMINATED),
        ]
    )
    assert phase_store.load(EntityKind.DEPLOYMENT, {DeploymentLifecycle.PENDING}) == [pending]
    both = {RouteStatus.HEALTHY, RouteStatus.DEGRADED}
    assert [r.id for r in phase_store.load(EntityKind.ROUTE, both)] == [healthy.id, degraded.id]
    assert [r.id for r in phase_store.load(EntityKind.ROUTE, both, [degraded.id])] == [degraded.id]
    # By id, but no longer in a target status: not loaded.
    assert phase_store.load(EntityKind.ROUTE, {RouteStatus.PROVISIONING}, [healthy.id]) == []
    assert phase_store.load(EntityKind.DEPLOYMENT, {DeploymentLifecycle.READY}, [pending.id]) == []


def test_eviction_candidates_wait_out_the_initial_delay_of_degraded_routes(
    phase_store: PostgresPhaseStore, catalog: Catalog, group: str
) -> None:
    revision = make_revision(health_check=HealthCheckConfig(initial_delay_s=60.0))
    deployment = catalog.create_deployment(make_deployment(target_revision=revision))
    now = datetime.now(UTC)
    catalog.add_routes(
        [
            unhealthy := make_route(deployment, status=RouteStatus.UNHEALTHY, ever_healthy=True),
            long_degraded := make_route(
                deployment,
                status=RouteStatus.DEGRADED,
                status_changed_at=now - timedelta(seconds=61),
            ),
            make_route(
                deployment,
                status=RouteStatus.DEGRADED,
                status_changed_at=now - timedelta(seconds=30),
            ),
            make_route(deployment, status=RouteStatus.HEALTHY),  # not named by the config
        ]
    )
    found = {route.id for route in phase_store.load_eviction_candidates()}
    assert found == {unhealthy.id, long_degraded.id}


def test_a_run_opens_closes_once_and_reports_its_counts(phase_store: PostgresPhaseStore) -> None:
    run = open_run(
        phase_store, "routes.provision", item_count=3, task_count=2, lock_token="t", deadline_s=60
    )
    assert run.state is PhaseRunState.RUNNING
    assert timedelta(seconds=59) < run.deadline_at - run.started_at <= timedelta(seconds=61)
    assert phase_store.is_running(run.id)
    summary = RunSummary(
        counts=OutcomeCounts(success=2, error=1),
        transition_count=3,
        error_samples=[{"id": "x", "bucket": "error"}],
    )
    with phase_store.transaction() as conn:
        claimed = phase_store.claim_running(conn, run.id)
        assert claimed is not None
        phase_store.close_run(conn, run.id, PhaseRunState.SUCCEEDED, summary)
    with phase_store.transaction() as conn:
        assert phase_store.claim_running(conn, run.id) is None  # a second closer finds nothing
    closed = phase_store.get_run(run.id)
    assert closed is not None
    assert closed.state is PhaseRunState.SUCCEEDED
    assert closed.summary == summary
    assert (closed.duration_s or -1) >= 0
    assert not phase_store.is_running(run.id)
    assert [r.id for r in phase_store.latest_run_per_phase()] == [run.id]


def test_only_runs_past_their_deadline_are_overdue(phase_store: PostgresPhaseStore) -> None:
    overdue = open_run(phase_store, "a", item_count=0, task_count=0, lock_token="t", deadline_s=0)
    open_run(phase_store, "b", item_count=0, task_count=0, lock_token="t", deadline_s=60)
    time.sleep(0.01)  # the database clock must move past a zero deadline
    assert phase_store.overdue_run_ids() == [overdue.id]


def test_the_phase_lock_is_held_by_one_token_and_released_only_by_it(
    redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    lock = RedisPhaseLock(client=redis_client, keys=redis_keys)
    token = lock.acquire("routes.provision", ttl_s=30)
    assert token is not None
    assert lock.acquire("routes.provision", ttl_s=30) is None
    assert lock.release("routes.provision", "someone-else") is False
    assert lock.holder("routes.provision") == token
    assert 0 < redis_client.pttl(redis_keys.phase_lock("routes.provision")) <= 30_000
    assert lock.release("routes.provision", token) is True
    assert lock.release("routes.provision", token) is False
    assert lock.acquire("routes.provision", ttl_s=30) is not None


def test_outcomes_are_stored_per_task_and_expire(
    redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    store = RedisOutcomeStore(client=redis_client, keys=redis_keys)
    run_id, item, other = uuid4(), uuid4(), uuid4()
    failed = Outcome(
        item, OutcomeBucket.ERROR, "Boom", "it broke\nin two lines", "unexpected_error"
    )
    store.save(run_id, [Outcome(item, OutcomeBucket.SUCCESS)], ttl_s=60, part="task-1")
    store.save(run_id, [failed], ttl_s=60, part="task-1")  # redelivered: replaces the first
    store.save(run_id, [], ttl_s=60, part="task-2")
    store.save(run_id, [Outcome(other, OutcomeBucket.STALE)], ttl_s=60, part="task-3")
    assert sorted(store.load(run_id), key=lambda o: o.id == other) == [
        failed,
        Outcome(other, OutcomeBucket.STALE),
    ]
    assert redis_client.hlen(redis_keys.phase_outcomes(run_id)) == 2  # a field per task
    redis_client.hset(redis_keys.phase_outcomes(run_id), "junk", f"{{not json\n{item} success")
    assert len(store.load(run_id)) == 2  # the unreadable line skipped, the repeat once
    store.expire_soon(run_id)
    assert 0 < redis_client.ttl(redis_keys.phase_outcomes(run_id)) <= 120


def test_closed_runs_past_the_retention_are_forgotten_and_open_ones_kept(
    phase_store: PostgresPhaseStore, engine: sa.Engine
) -> None:
    old, recent, still_open = (
        open_run(phase_store, f"p{i}", item_count=0, task_count=0, lock_token="t", deadline_s=60)
        for i in range(3)
    )
    with phase_store.transaction() as conn:
        for run in (old, recent):
            phase_store.claim_running(conn, run.id)
            phase_store.close_run(conn, run.id, PhaseRunState.SUCCEEDED, RunSummary())
    with engine.begin() as conn:
        conn.execute(
            phase_runs.update()
            .where(phase_runs.c.id.in_([old.id, still_open.id]))
            .values(finished_at=sa.func.now() - sa.text("interval '3 days'"))
        )
    assert phase_store.forget_runs_finished_before(48 * 3600) == 1
    assert phase_store.get_run(old.id) is None
    assert phase_store.get_run(recent.id) is not None
    assert phase_store.get_run(still_open.id) is not None  # running: never forgotten


def test_routes_of_a_deployment_in_crash_loop_back_off_wait_to_be_provisioned(
    phase_store: PostgresPhaseStore, catalog: Catalog, engine: sa.Engine
) -> None:
    catalog.create_scaling_group("sg1")
    looping, once, long_ago = (catalog.create_deployment(make_deployment()) for _ in range(3))
    exits = [(looping, [5, 30, 60]), (once, [5]), (long_ago, [700, 800, 900])]
    catalog.add_routes([make_route(deployment) for deployment, _ in exits])
    for deployment, ages_s in exits:
        for age_s in ages_s:
            add_exited_session(catalog, engine, deployment, age_s=age_s)
    found = {route.endpoint_id for route in phase_store.load_routes_to_provision()}
    # 3 exits, the last 5 s ago: 20 s to wait. One exit: replaced at once. Old exits: forgotten.
    assert found == {once.id, long_ago.id}
