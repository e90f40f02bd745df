"""Rollouts through the real repository and executor on PostgreSQL (no Celery): each call
of `rollout_deployment` is one run of deployments.rollout; the test plays the prober."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from click.testing import Result

from tests.factories import make_deployment, make_revision, make_route
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.deployment_repository import PostgresDeploymentRepository
from workers.adapters.postgres.revision_records import RolloutStart
from workers.adapters.postgres.schema import (
    deployment_history,
    deployment_revisions,
    deployments,
    routes,
)
from workers.adapters.postgres.transitions import apply_route_transitions
from workers.adapters.redis.activity import RedisRequestActivity
from workers.domain import (
    DeploymentInfo,
    DeploymentLifecycle,
    OutcomeBucket,
    RolloutSpec,
    RolloutStrategy,
    RouteStatus,
    RouteTransition,
)
from workers.executors import DeploymentExecutor
from workers.policies.rollouts import plan_step

ROLLING = RolloutSpec(max_surge="1")


@pytest.fixture
def executor(repository: PostgresDeploymentRepository) -> DeploymentExecutor:
    return DeploymentExecutor(deployment_repo=repository, app_proxy=None)  # type: ignore[arg-type]


@pytest.fixture
def serving(catalog: Catalog) -> DeploymentInfo:
    """Three healthy routes of revision 1."""
    catalog.create_scaling_group("sg1")
    deployment = catalog.create_deployment(
        make_deployment(replica_count=3, lifecycle=DeploymentLifecycle.READY)
    )
    catalog.add_routes(
        [make_route(deployment, status=RouteStatus.HEALTHY, revision=1) for _ in range(3)]
    )
    return deployment


def _roll(catalog: Catalog, deployment: DeploymentInfo, spec: RolloutSpec, image: str) -> int:
    number = catalog.create_revision(deployment.id, {"image": image})
    assert number is not None
    started = catalog.start_rollout(deployment.id, number, spec, f"update to revision {number}")
    assert started is RolloutStart.STARTED
    return number


def _routes(engine: sa.Engine, deployment_id: UUID) -> list[sa.RowMapping]:
    with engine.connect() as conn:
        query = sa.select(routes).where(routes.c.deployment_id == deployment_id)
        return list(conn.execute(query.order_by(routes.c.created_at)).mappings())


def _make_new_routes_healthy(engine: sa.Engine, deployment_id: UUID, revision: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            routes.update()
            .where(
                routes.c.deployment_id == deployment_id,
                routes.c.revision == revision,
                routes.c.status == RouteStatus.PROVISIONING.value,
            )
            .values(status=RouteStatus.HEALTHY.value)
        )


def _deployment(engine: sa.Engine, deployment_id: UUID) -> sa.RowMapping:
    with engine.connect() as conn:
        query = sa.select(deployments).where(deployments.c.id == deployment_id)
        return conn.execute(query).mappings().one()


def test_a_rolling_update_replaces_every_route_within_its_surge_and_finishes(
    executor: DeploymentExecutor, catalog: Catalog, engine: sa.Engine, serving: DeploymentInfo
) -> None:
    new = _roll(catalog, serving, ROLLING, "registry/echo:2")
    for _ in range(20):
        result = executor.rollout_deployment([serving])
        if result.successes:
            break
        active = [r for r in _routes(engine, serving.id) if r["status"] != "draining"]
        assert len(active) <= 4  # desired 3 + surge 1
        assert sum(r["status"] == "healthy" for r in active) >= 3  # max unavailable 0
        _make_new_routes_healthy(engine, serving.id, new)
    assert result.successes == [serving]
    after = _deployment(engine, serving.id)
    assert (after["current_revision"], after["deploying_revision"]) == (2, None)
    assert after["image"] == "registry/echo:2"
    live = [r for r in _routes(engine, serving.id) if r["status"] == "healthy"]
    assert sorted(r["revision"] for r in live) == [2, 2, 2]
    with engine.connect() as conn:
        steps = conn.execute(
            sa.select(deployment_history.c.message).where(
                deployment_history.c.phase == "deployments.rollout"
            )
        ).scalars()
        assert any("revision 2: 1/3 new healthy" in message for message in steps)


def test_a_revision_that_fails_three_times_is_rolled_back_and_the_old_one_keeps_serving(
    executor: DeploymentExecutor, catalog: Catalog, engine: sa.Engine, serving: DeploymentInfo
) -> None:
    new = _roll(catalog, serving, ROLLING, "registry/echo:broken")
    for phase in ("routes.provision", "routes.check_running", "routes.health_check"):
        executor.rollout_deployment([serving])  # starts a route of the new revision
        [started] = [r for r in _routes(engine, serving.id)
                     if r["revision"] == new and r["status"] == "provisioning"]  # fmt: skip
        with engine.begin() as conn:  # it fails in that phase, and leaves
            apply_route_transitions(conn, [RouteTransition(
                started["id"], frozenset(RouteStatus), RouteStatus.DRAINING, phase,
                OutcomeBucket.ERROR, error_code=phase, message="failed",
                revision_failure=True)])  # fmt: skip
    result = executor.rollout_deployment([serving])
    [error] = result.errors
    assert error.error_detail.startswith("revision 2 rolled back: 3 failures (threshold 3)")
    after = _deployment(engine, serving.id)
    assert (after["current_revision"], after["deploying_revision"]) == (1, None)
    statuses = {(r["revision"], r["status"]) for r in _routes(engine, serving.id)}
    assert statuses == {(1, "healthy"), (2, "draining")}


def test_blue_green_keeps_new_routes_out_of_traffic_until_the_switch(
    executor: DeploymentExecutor,
    catalog: Catalog,
    engine: sa.Engine,
    serving: DeploymentInfo,
    repository: PostgresDeploymentRepository,
) -> None:
    new = _roll(catalog, serving, RolloutSpec(strategy=RolloutStrategy.BLUE_GREEN), "img:2")
    executor.rollout_deployment([serving])
    fresh = [r for r in _routes(engine, serving.id) if r["revision"] == new]
    assert {r["traffic_status"] for r in fresh} == {"standby"}
    assert len(fresh) == 3
    _make_new_routes_healthy(engine, serving.id, new)
    executor.rollout_deployment([serving])  # all healthy, no promote delay: switch
    by_revision = {
        (r["revision"], r["status"], r["traffic_status"]) for r in _routes(engine, serving.id)
    }
    assert by_revision == {(2, "healthy", "active"), (1, "draining", "inactive")}
    assert executor.rollout_deployment([serving]).successes == [serving]


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_cli_updates_rolls_back_and_lists_revisions(
    run: Any, catalog: Catalog, engine: sa.Engine, run_phase: Callable[[str], object]
) -> None:
    catalog.create_scaling_group("sg1")
    catalog.create_deployment(make_deployment(
        name="svc", lifecycle=DeploymentLifecycle.READY, target_revision=make_revision(image="i:1")
    ))  # fmt: skip
    assert _json(run("deployment", "update", "svc", "--image", "i:2", "--json")) == {
        "deployment": "svc",
        "revision": 2,
    }
    states = {
        r["number"]: r["state"] for r in _json(run("deployment", "revisions", "svc", "--json"))
    }
    assert states == {2: "deploying", 1: "current"}
    shown = _json(run("deployment", "show", "svc", "--json"))
    assert (shown["lifecycle"], shown["deploying_revision"], shown["rollout"]) == (
        "deploying", 2, None,  # the controller has not stepped it yet: nothing to say
    )  # fmt: skip
    run_phase("deployments.rollout")  # one step: its own counts, stored for the CLI to read
    shown = _json(run("deployment", "show", "svc", "--json"))
    assert shown["rollout"] == (  # no proxy counted a request of it: health alone decides
        "revision 2: 0/1 new healthy, 0 old remaining; no request in the last minute: judged "
        "on health alone"
    )
    superseding = _json(run("deployment", "update", "svc", "--image", "i:3", "--json"))
    assert superseding["revision"] == 3
    with engine.connect() as conn:
        assert conn.execute(sa.select(deployments.c.deploying_revision)).scalar() == 3


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--image", "i:1"], "DEPLOYMENT: nothing changes"),
        (["--image", "i:2", "--max-surge", "0", "--max-unavailable", "0"], "--max-surge and"),
        (["--image", "i:2", "--max-surge", "lots"], "--max-surge: 'lots'"),
        (["--image", "i:2", "--max-unavailable", "150%"], "--max-unavailable: '150%'"),
        (["--image", "i:2", "--failure-threshold", "0"], "Invalid value for '--failure-threshold'"),
        (["--image", "i:2", "--progress-deadline-s", "nan"], "Invalid value for '--progress-"),
        (["--image", "i:2", "--canary-steps", "50,10"], "--canary-steps: percentages"),
        (["--image", "i:2", "--canary-steps", "0,50"], "--canary-steps: percentages"),
        (["--image", "i:2", "--canary-steps", "10,100"], "--canary-steps: percentages"),
        (["--image", "i:2", "--canary-steps", "ten"], "--canary-steps: 'ten' is not"),
        (["--image", "i:2", "--canary-interval-s", "0"], "Invalid value for '--canary-interval"),
        (["--image", "i:2", "--max-error-rate", "2"], "Invalid value for '--max-error-rate'"),
        (["--image", "i:2", "--max-error-rate", "nan"], "Invalid value for '--max-error-rate'"),
        (["--image", "i:2", "--min-requests", "0"], "Invalid value for '--min-requests'"),
        (["--image", "i:2", "--max-p95-latency-ratio", "0.5"], "Invalid value for '--max-p95"),
    ],
)
def test_a_bad_update_is_one_line_naming_the_field_and_starts_nothing(
    run: Any, catalog: Catalog, engine: sa.Engine, args: list[str], field: str
) -> None:
    catalog.create_scaling_group("sg1")
    catalog.create_deployment(make_deployment(
        name="svc", lifecycle=DeploymentLifecycle.READY, target_revision=make_revision(image="i:1")
    ))  # fmt: skip
    result = run("deployment", "update", "svc", *args)
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"Error: {field}"), line
    with engine.connect() as conn:
        assert conn.execute(sa.select(deployments.c.lifecycle)).scalar() == "ready"
        revisions = sa.select(sa.func.count()).select_from(deployment_revisions)
        assert conn.execute(revisions).scalar() == 1  # its first only: none was created


def test_promote_and_rollback_refuse_what_cannot_be_done(run: Any, catalog: Catalog) -> None:
    catalog.create_scaling_group("sg1")
    catalog.create_deployment(make_deployment(name="svc", lifecycle=DeploymentLifecycle.READY))
    promoted = run("deployment", "promote", "svc")
    assert promoted.exit_code == 2
    assert "no blue-green rollout waiting" in promoted.output
    rolled = run("deployment", "rollback", "svc")
    assert rolled.exit_code == 2
    assert "--to-revision: no revision 0 kept" in rolled.output


CANARY = RolloutSpec(strategy=RolloutStrategy.CANARY, canary_steps=(10, 50),
                     canary_interval_s=1, min_requests=5)  # fmt: skip


@pytest.fixture
def judged(repository: PostgresDeploymentRepository, redis_client: Any,
           redis_keys: Any) -> DeploymentExecutor:  # fmt: skip
    """The executor with what the proxies counted (Redis), as the rollout phase has it."""
    activity = RedisRequestActivity(client=redis_client, keys=redis_keys)
    return DeploymentExecutor(deployment_repo=repository, app_proxy=None,  # type: ignore[arg-type]
                              activity=activity)  # fmt: skip


def _weights(engine: sa.Engine, deployment_id: UUID) -> dict[int, float]:
    """The revisions' shares of the weight of their healthy routes."""
    live = [r for r in _routes(engine, deployment_id) if r["status"] == "healthy"]
    total = sum(r["traffic_ratio"] for r in live)
    shares: dict[int, float] = {}
    for route in live:
        shares[route["revision"]] = (
            shares.get(route["revision"], 0) + route["traffic_ratio"] / total
        )
    return shares


def test_a_canary_walks_its_steps_by_route_weights_and_ends_on_the_new_revision(
    catalog: Catalog, judged: DeploymentExecutor, engine: sa.Engine, serving: DeploymentInfo,
) -> None:  # fmt: skip
    new = _roll(catalog, serving, CANARY, "img:2")
    judged.rollout_deployment([serving])
    assert [(r["revision"], r["traffic_ratio"]) for r in _routes(engine, serving.id)][3:] == [
        (new, 0.0)] * 3  # fmt: skip
    _make_new_routes_healthy(engine, serving.id, new)
    judged.rollout_deployment([serving])
    assert _weights(engine, serving.id)[new] == pytest.approx(0.10)
    assert _deployment(engine, serving.id)["rollout_step"] == 0
    time.sleep(1.1)
    judged.rollout_deployment([serving])
    assert _weights(engine, serving.id)[new] == pytest.approx(0.50)
    time.sleep(1.1)
    judged.rollout_deployment([serving])  # the last step held: old routes drain
    assert _weights(engine, serving.id) == {new: pytest.approx(1.0)}
    result = judged.rollout_deployment([serving])
    assert result.successes == [serving]
    assert _deployment(engine, serving.id)["current_revision"] == new


def test_a_revision_whose_requests_fail_is_rolled_back_with_the_numbers(
    catalog: Catalog, judged: DeploymentExecutor, engine: sa.Engine, serving: DeploymentInfo,
    redis_client: Any, redis_keys: Any,
) -> None:  # fmt: skip
    new = _roll(catalog, serving, CANARY, "img:2")
    judged.rollout_deployment([serving])
    _make_new_routes_healthy(engine, serving.id, new)
    judged.rollout_deployment([serving])
    window_s = int(float(redis_client.time()[0]) // 10) * 10
    redis_client.hset(redis_keys.request_window(serving.id, window_s), mapping={
        f"{new}|2xx": 3, f"{new}|5xx": 4, f"{new}|error": 1, "1|2xx": 90, "1|5xx": 1,
    })  # fmt: skip
    result = judged.rollout_deployment([serving])
    [failed] = result.errors
    assert failed.error_detail == (
        f"revision {new} rolled back: 5xx rate 0.62 over 8 requests (limit 0.05); revision 1: 0.01"
    )
    assert all(r["status"] in {"draining", "healthy"} for r in _routes(engine, serving.id))
    assert {r["revision"] for r in _routes(engine, serving.id) if r["status"] == "healthy"} == {1}


def test_an_update_at_zero_makes_the_revision_current_without_a_rollout(
    catalog: Catalog, engine: sa.Engine, run: Callable[..., Result]
) -> None:
    """At zero the rollout's 25 % surge of nothing was 0 and it refused itself at once."""
    catalog.create_scaling_group("sg1")
    parked = catalog.create_deployment(
        make_deployment(name="parked", replica_count=0, lifecycle=DeploymentLifecycle.READY)
    )
    done = run("deployment", "update", "parked", "--image", "img:2", "--wait", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output) == {"deployment": "parked", "revision": 2}
    with engine.connect() as conn:
        row = conn.execute(sa.select(deployments).where(deployments.c.id == parked.id)).one()
    assert (row.lifecycle, row.current_revision, row.deploying_revision, row.image) == (
        "ready", 2, None, "img:2")  # fmt: skip
    shown = json.loads(run("deployment", "show", "parked", "--json").output)
    assert shown["reason"].endswith("at zero, revision 2 is current; the next wake starts it")


def test_two_runs_planning_from_one_state_never_both_start_a_surge(
    serving: DeploymentInfo, catalog: Catalog, repository: PostgresDeploymentRepository,
    engine: sa.Engine,
) -> None:  # fmt: skip
    _roll(catalog, serving, ROLLING, "img:2")
    [state] = repository.fetch_rollout_states([serving]).values()
    step = plan_step(state)
    assert step.create == 1
    assert repository.apply_rollout_step(serving.id, state, step) is True
    assert repository.apply_rollout_step(serving.id, state, step) is False  # planned from the same
    with engine.connect() as conn:
        new = conn.execute(sa.select(sa.func.count()).where(
            routes.c.deployment_id == serving.id, routes.c.revision == 2)).scalar_one()  # fmt: skip
    assert new == 1
