"""Routes that never became healthy, on the real PostgreSQL: what `routes.check_startup`
loads and reads, the note a deployment gets, when a route first turned healthy, and
the crash-loop back-off a rollout's new revision does not wait out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import sqlalchemy as sa

from tests.factories import add_exited_session, make_deployment, make_revision, make_route
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.deployment_repository import PostgresDeploymentRepository
from workers.adapters.postgres.phase_store import PostgresPhaseStore
from workers.adapters.postgres.schema import deployment_history, deployments, routes, sessions
from workers.adapters.postgres.transitions import apply_route_transitions
from workers.domain import (
    Condition,
    DeploymentInfo,
    DeploymentLifecycle,
    HealthCheckConfig,
    OutcomeBucket,
    RouteData,
    RouteStatus,
    RouteTransition,
)

SEVEN_S = HealthCheckConfig(path="/nowhere", interval_s=1, max_retries=2, initial_delay_s=5)


def _deployment(catalog: Catalog, health: HealthCheckConfig | None = SEVEN_S) -> DeploymentInfo:
    return catalog.create_deployment(
        make_deployment(
            resource_group="sg1",
            lifecycle=DeploymentLifecycle.READY,
            target_revision=make_revision(health_check=health),
        )
    )


def _starting(
    engine: sa.Engine, catalog: Catalog, deployment: DeploymentInfo, *, age_s: float,
    session: str = "RUNNING", **route: object,
) -> RouteData:  # fmt: skip
    """A route of revision 1 (degraded unless said) whose session started `age_s` ago."""
    added = make_route(deployment, **{"status": RouteStatus.DEGRADED, "revision": 1, **route})
    catalog.add_routes([added])
    session_id = uuid4()
    with engine.begin() as conn:
        conn.execute(
            sessions.insert().values(
                id=session_id, route_id=added.id, name="s", spec={}, status=session,
                host="127.0.0.1", port=1, started_at=datetime.now(UTC) - timedelta(seconds=age_s),
            )
        )  # fmt: skip
        conn.execute(routes.update().where(routes.c.id == added.id).values(session_id=session_id))
    return added


def test_only_routes_never_healthy_with_a_running_session_and_a_health_check_are_judged(
    engine: sa.Engine, catalog: Catalog, phase_store: PostgresPhaseStore
) -> None:
    catalog.create_scaling_group("sg1")
    checked, unchecked = _deployment(catalog), _deployment(catalog, health=None)
    judged = _starting(engine, catalog, checked, age_s=3)
    _starting(engine, catalog, checked, age_s=30, ever_healthy=True)  # passed once: as today
    _starting(engine, catalog, checked, age_s=30, session="PREPARING")  # not running yet
    _starting(engine, catalog, unchecked, age_s=30)  # ready once running, nothing to judge
    assert [r.id for r in phase_store.load_routes_starting()] == [judged.id]


def test_an_unhealthy_route_never_healthy_is_left_to_its_budget_not_evicted_on_sight(
    engine: sa.Engine, catalog: Catalog, phase_store: PostgresPhaseStore
) -> None:
    catalog.create_scaling_group("sg1")
    deployment = _deployment(catalog)
    starting = _starting(engine, catalog, deployment, age_s=2, status=RouteStatus.UNHEALTHY)
    served = _starting(engine, catalog, deployment, age_s=2, status=RouteStatus.UNHEALTHY,
                       ever_healthy=True)  # fmt: skip
    assert [r.id for r in phase_store.load_eviction_candidates()] == [served.id]
    assert starting.id in {r.id for r in phase_store.load_routes_starting()}


def test_startup_progress_is_measured_by_the_database_clock_against_its_revisions_budget(
    engine: sa.Engine, catalog: Catalog, repository: PostgresDeploymentRepository
) -> None:
    catalog.create_scaling_group("sg1")
    route = _starting(engine, catalog, _deployment(catalog), age_s=8)
    [progress] = repository.fetch_startup_progress({route.id}).values()
    assert (progress.budget_s, progress.health_path) == (7, "/nowhere")
    assert 8 <= progress.started_for_s < 20
    assert progress.overdue


def test_a_deployment_that_cannot_roll_back_notes_why_once_and_counts_repeats(
    engine: sa.Engine, catalog: Catalog, repository: PostgresDeploymentRepository
) -> None:
    catalog.create_scaling_group("sg1")
    deployment = _deployment(catalog)
    note = "no route of revision 1 became healthy within 7 s: /nowhere answered 404"
    repository.note_conditions({deployment.id: Condition("never_healthy", note)})
    repository.note_conditions({deployment.id: Condition("never_healthy", note)})
    with engine.connect() as conn:
        [row] = conn.execute(
            sa.select(deployment_history).where(deployment_history.c.error_code == "never_healthy")
        ).mappings()
        lifecycle = conn.execute(
            sa.select(deployments.c.lifecycle).where(deployments.c.id == deployment.id)
        ).scalar_one()
    assert (row["message"], row["attempts"], row["phase"]) == (note, 2, "routes.check_startup")
    assert lifecycle == "ready"  # it says why; it does not move


def test_a_route_remembers_when_it_first_turned_healthy(
    engine: sa.Engine, catalog: Catalog
) -> None:
    catalog.create_scaling_group("sg1")
    route = _starting(engine, catalog, _deployment(catalog), age_s=1)

    def move(to: RouteStatus) -> datetime | None:
        with engine.begin() as conn:
            apply_route_transitions(conn, [RouteTransition(
                route.id, frozenset(RouteStatus), to, "test", OutcomeBucket.SUCCESS)])  # fmt: skip
            first: datetime | None = conn.execute(
                sa.select(routes.c.first_healthy_at).where(routes.c.id == route.id)
            ).scalar_one()
            return first

    assert move(RouteStatus.DEGRADED) is None
    first = move(RouteStatus.HEALTHY)
    assert first is not None
    assert move(RouteStatus.UNHEALTHY) == first
    assert move(RouteStatus.HEALTHY) == first  # the first time, not the latest


def test_a_rollouts_new_revision_skips_the_crash_loop_back_off_and_does_not_cause_one(
    engine: sa.Engine, catalog: Catalog, phase_store: PostgresPhaseStore
) -> None:
    catalog.create_scaling_group("sg1")
    deployment = _deployment(catalog)
    with engine.begin() as conn:
        conn.execute(
            deployments.update()
            .where(deployments.c.id == deployment.id)
            .values(lifecycle="deploying", deploying_revision=2)
        )
    for age_s in (5, 30, 60):  # three exits of the new revision: a steady fleet would wait
        add_exited_session(catalog, engine, deployment, revision=2, age_s=age_s)
    new, old = make_route(deployment, revision=2), make_route(deployment, revision=1)
    catalog.add_routes([new, old])
    assert {r.id for r in phase_store.load_routes_to_provision()} == {new.id, old.id}


def test_never_healthy_is_the_deployments_condition_until_a_replica_turns_healthy(
    engine: sa.Engine, catalog: Catalog, repository: PostgresDeploymentRepository
) -> None:
    catalog.create_scaling_group("sg1")
    deployment = _deployment(catalog)
    route = _starting(engine, catalog, deployment, age_s=9)
    note = "no route of revision 1 became healthy within 7 s: /nowhere answered 404"
    repository.note_conditions({deployment.id: Condition("never_healthy", note)})

    def condition() -> tuple[str | None, str | None]:
        with engine.connect() as conn:
            row = conn.execute(
                sa.select(deployments.c.condition_reason, deployments.c.condition_message).where(
                    deployments.c.id == deployment.id
                )
            ).one()
        return row.condition_reason, row.condition_message

    assert condition() == ("never_healthy", note)
    catalog.scale_deployment(deployment.id, 2)  # ready -> scaling: a plain move keeps it
    assert condition() == ("never_healthy", note)
    with engine.begin() as conn:
        healthy = RouteTransition(
            route.id, frozenset(RouteStatus), RouteStatus.HEALTHY, "test", OutcomeBucket.SUCCESS
        )
        apply_route_transitions(conn, [healthy])
    assert condition() == (None, None)
