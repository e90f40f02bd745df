"""SessionTableScheduler: the sessions table as the contract with the session runner."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from tests.factories import context_of, make_deployment, make_route
from tests.integration.session_runner_side import report_session, session_row
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.engine import create_database_engine
from workers.adapters.postgres.scheduler import SessionTableScheduler
from workers.adapters.postgres.schema import sessions
from workers.domain import RouteData, SessionSpec, SessionStatus
from workers.executors.payloads import session_spec


@pytest.fixture
def route(catalog: Catalog) -> RouteData:
    catalog.create_scaling_group("sg1")
    deployment = catalog.create_deployment(make_deployment())
    route = make_route(deployment)
    catalog.add_routes([route])
    return route


@pytest.fixture
def spec(route: RouteData, catalog: Catalog) -> SessionSpec:
    return session_spec(route, context_of(make_deployment(id=route.endpoint_id), GROUP="g"))


def _session_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(sessions)).scalar_one()


def test_enqueue_writes_a_pending_session_with_its_spec(
    scheduler: SessionTableScheduler, engine: sa.Engine, spec: SessionSpec
) -> None:
    session_id = scheduler.enqueue_session(spec)
    row = session_row(engine, session_id)
    assert (row["route_id"], row["status"], row["name"]) == (spec.route_id, "PENDING", spec.name)
    assert row["spec"]["image"] == spec.image
    assert row["spec"]["environ"] == {"GROUP": "g", "MODEL_NAME": "echo"}


def test_enqueue_again_returns_the_live_session(
    scheduler: SessionTableScheduler, engine: sa.Engine, spec: SessionSpec
) -> None:
    first = scheduler.enqueue_session(spec)
    report_session(engine, first, SessionStatus.RUNNING, host="h", port=1)
    assert scheduler.enqueue_session(spec) == first
    assert _session_count(engine) == 1


def test_a_finished_session_makes_room_for_a_new_one(
    scheduler: SessionTableScheduler, engine: sa.Engine, spec: SessionSpec
) -> None:
    first = scheduler.enqueue_session(spec)
    report_session(engine, first, SessionStatus.ERROR)
    second = scheduler.enqueue_session(spec)
    assert second != first
    assert session_row(engine, second)["status"] == "PENDING"


def test_concurrent_enqueues_start_one_session(
    scheduler: SessionTableScheduler, engine: sa.Engine, spec: SessionSpec
) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = set(pool.map(lambda _: scheduler.enqueue_session(spec), range(16)))
    assert len(ids) == 1
    assert _session_count(engine) == 1


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (SessionStatus.PENDING, "CANCELLED"),
        (SessionStatus.SCHEDULED, "CANCELLED"),
        (SessionStatus.PREPARING, "TERMINATING"),
        (SessionStatus.RUNNING, "TERMINATING"),
        (SessionStatus.TERMINATING, "TERMINATING"),
        (SessionStatus.TERMINATED, "TERMINATED"),
        (SessionStatus.ERROR, "ERROR"),
    ],
)
def test_termination_cancels_unstarted_sessions_and_stops_live_ones(
    scheduler: SessionTableScheduler,
    engine: sa.Engine,
    spec: SessionSpec,
    status: SessionStatus,
    expected: str,
) -> None:
    session_id = scheduler.enqueue_session(spec)
    report_session(engine, session_id, status)
    scheduler.mark_sessions_for_termination([session_id])
    row = session_row(engine, session_id)
    assert row["status"] == expected
    assert (row["terminated_at"] is not None) == (expected == "CANCELLED")


def test_enqueue_still_finds_its_partial_index_once_psycopg_prepares_the_statement(
    engine: sa.Engine, catalog: Catalog
) -> None:
    """psycopg prepares a statement once it has run a few times on one connection; the ON CONFLICT
    predicate must still match the partial index then (a bound parameter would not)."""
    one_connection = create_database_engine(
        engine.url.render_as_string(hide_password=False), pool_size=1
    )
    try:
        scheduler = SessionTableScheduler(engine=one_connection)
        catalog.create_scaling_group("sg1")
        deployment = catalog.create_deployment(make_deployment())
        routes = [make_route(deployment) for _ in range(30)]
        catalog.add_routes(routes)
        for route in routes:
            scheduler.enqueue_session(session_spec(route, context_of(deployment)))
    finally:
        one_connection.dispose()
    assert _session_count(engine) == 30
