"""Guarded status transitions with history, in one transaction, on real PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa

from tests.factories import make_deployment, make_route
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.phase_store import PostgresPhaseStore
from workers.adapters.postgres.schema import deployment_history, deployments, route_history, routes
from workers.domain import (
    DeploymentInfo,
    DeploymentLifecycle,
    DeploymentTransition,
    EntityKind,
    OutcomeBucket,
    RouteStatus,
    RouteTransition,
)

H = RouteStatus.HEALTHY
U = RouteStatus.UNHEALTHY
D = RouteStatus.DEGRADED


@pytest.fixture
def deployment(catalog: Catalog) -> DeploymentInfo:
    catalog.create_scaling_group("sg1")
    return catalog.create_deployment(make_deployment())


def _history(engine: sa.Engine, table: sa.Table) -> list[dict[str, Any]]:
    columns = ["phase", "from_status", "to_status", "result", "error_code", "message", "attempts"]
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*(table.c[c] for c in columns)).order_by(table.c.id))
        return [dict(row._mapping) for row in rows]


def _route(engine: sa.Engine, route_id: UUID) -> sa.RowMapping:
    with engine.connect() as conn:
        return conn.execute(sa.select(routes).where(routes.c.id == route_id)).mappings().one()


def _health_check(
    route_id: UUID, to: RouteStatus | None, result: OutcomeBucket, **kw: Any
) -> RouteTransition:
    return RouteTransition(
        entity_id=route_id,
        expected=frozenset({H, U, D}),
        to_status=to,
        phase="routes.health_check",
        result=result,
        **kw,
    )


def test_a_transition_moves_the_route_and_records_history(
    phase_store: PostgresPhaseStore,
    catalog: Catalog,
    engine: sa.Engine,
    deployment: DeploymentInfo,
) -> None:
    route = make_route(deployment, status=D)
    catalog.add_routes([route])
    before = _route(engine, route.id)["status_changed_at"]
    applied = phase_store.apply(
        EntityKind.ROUTE, [_health_check(route.id, H, OutcomeBucket.SUCCESS)]
    )
    assert applied == [route.id]
    after = _route(engine, route.id)
    assert after["status"] == "healthy"
    assert after["status_changed_at"] > before
    assert _history(engine, route_history) == [
        {
            "phase": "routes.health_check",
            "from_status": "degraded",
            "to_status": "healthy",
            "result": "success",
            "error_code": None,
            "message": "",
            "attempts": 1,
        }
    ]


def test_a_route_no_longer_in_an_expected_status_is_left_alone(
    phase_store: PostgresPhaseStore,
    catalog: Catalog,
    engine: sa.Engine,
    deployment: DeploymentInfo,
) -> None:
    moved_on = make_route(deployment, status=RouteStatus.TERMINATING)
    catalog.add_routes([moved_on])
    applied = phase_store.apply(
        EntityKind.ROUTE, [_health_check(moved_on.id, H, OutcomeBucket.SUCCESS)]
    )
    assert applied == []
    assert _route(engine, moved_on.id)["status"] == "terminating"
    assert _history(engine, route_history) == []


def test_a_repeated_outcome_bumps_attempts_instead_of_adding_rows(
    phase_store: PostgresPhaseStore,
    catalog: Catalog,
    engine: sa.Engine,
    deployment: DeploymentInfo,
) -> None:
    route = make_route(deployment, status=H)
    catalog.add_routes([route])
    for message in ("probe 1 failed", "probe 2 failed", "probe 3 failed"):
        phase_store.apply(
            EntityKind.ROUTE,
            [
                _health_check(
                    route.id, U, OutcomeBucket.ERROR, error_code="route_unhealthy", message=message
                )
            ],
        )
    phase_store.apply(EntityKind.ROUTE, [_health_check(route.id, H, OutcomeBucket.SUCCESS)])
    history = _history(engine, route_history)
    assert [(h["from_status"], h["to_status"], h["attempts"], h["message"]) for h in history] == [
        ("healthy", "unhealthy", 3, "probe 3 failed"),
        ("unhealthy", "healthy", 1, ""),
    ]


def test_an_error_keeps_its_data_on_the_route_until_a_later_success(
    phase_store: PostgresPhaseStore,
    catalog: Catalog,
    engine: sa.Engine,
    deployment: DeploymentInfo,
) -> None:
    route = make_route(deployment, status=H)
    catalog.add_routes([route])
    phase_store.apply(
        EntityKind.ROUTE,
        [
            _health_check(
                route.id, U, OutcomeBucket.ERROR, error_code="route_unhealthy", message="down"
            )
        ],
    )
    assert _route(engine, route.id)["error_data"] == {
        "phase": "routes.health_check",
        "error_code": "route_unhealthy",
        "message": "down",
    }
    phase_store.apply(EntityKind.ROUTE, [_health_check(route.id, H, OutcomeBucket.SUCCESS)])
    assert _route(engine, route.id)["error_data"] is None


def test_staying_put_writes_history_without_touching_the_status_clock(
    phase_store: PostgresPhaseStore,
    catalog: Catalog,
    engine: sa.Engine,
    deployment: DeploymentInfo,
) -> None:
    route = make_route(deployment, status=D)
    catalog.add_routes([route])
    before = _route(engine, route.id)["status_changed_at"]
    phase_store.apply(EntityKind.ROUTE, [_health_check(route.id, None, OutcomeBucket.STALE)])
    assert _route(engine, route.id)["status_changed_at"] == before
    assert [
        (h["from_status"], h["to_status"], h["result"]) for h in _history(engine, route_history)
    ] == [("degraded", "degraded", "stale")]


def _destroy(
    deployment_id: UUID, to: DeploymentLifecycle | None, result: OutcomeBucket
) -> DeploymentTransition:
    return DeploymentTransition(
        entity_id=deployment_id,
        expected=frozenset({DeploymentLifecycle.DESTROYING}),
        to_status=to,
        phase="deployments.destroy",
        result=result,
        error_code="app_proxy_request_failed" if result is OutcomeBucket.ERROR else None,
        message="HTTP 500" if result is OutcomeBucket.ERROR else "",
    )


def _deployment_row(engine: sa.Engine, deployment_id: UUID) -> sa.RowMapping:
    with engine.connect() as conn:
        query = sa.select(deployments).where(deployments.c.id == deployment_id)
        return conn.execute(query).mappings().one()


def test_deployment_errors_count_retries_and_a_move_resets_them(
    phase_store: PostgresPhaseStore, catalog: Catalog, engine: sa.Engine
) -> None:
    catalog.create_scaling_group("sg1")
    doomed = catalog.create_deployment(make_deployment(lifecycle=DeploymentLifecycle.DESTROYING))
    for _ in range(2):
        phase_store.apply(EntityKind.DEPLOYMENT, [_destroy(doomed.id, None, OutcomeBucket.ERROR)])
    assert _deployment_row(engine, doomed.id)["retry_count"] == 2
    assert (
        phase_store.load(EntityKind.DEPLOYMENT, {DeploymentLifecycle.DESTROYING})[0].retry_count
        == 2
    )
    phase_store.apply(
        EntityKind.DEPLOYMENT,
        [_destroy(doomed.id, DeploymentLifecycle.DESTROYED, OutcomeBucket.SUCCESS)],
    )
    row = _deployment_row(engine, doomed.id)
    assert (row["lifecycle"], row["retry_count"]) == ("destroyed", 0)
    assert row["destroyed_at"] is not None
    assert [
        (h["to_status"], h["result"], h["attempts"]) for h in _history(engine, deployment_history)
    ] == [
        ("destroying", "error", 2),
        ("destroyed", "success", 1),
    ]


def test_transitions_and_history_commit_or_roll_back_together(
    phase_store: PostgresPhaseStore,
    catalog: Catalog,
    engine: sa.Engine,
    deployment: DeploymentInfo,
) -> None:
    route = make_route(deployment, status=D)
    catalog.add_routes([route])

    def callback_that_fails_after_the_transitions() -> None:
        with engine.begin() as conn:
            phase_store.apply(
                EntityKind.ROUTE, [_health_check(route.id, H, OutcomeBucket.SUCCESS)], conn=conn
            )
            raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError, match="callback failed"):
        callback_that_fails_after_the_transitions()
    assert _route(engine, route.id)["status"] == "degraded"
    assert _history(engine, route_history) == []


def test_a_concurrent_change_wins_over_a_stale_guard(
    phase_store: PostgresPhaseStore,
    catalog: Catalog,
    engine: sa.Engine,
    deployment: DeploymentInfo,
) -> None:
    """A run that moved the route first (holding its lock) makes the second run's guard fail."""
    route = make_route(deployment, status=H)
    catalog.add_routes([route])
    evict = RouteTransition(
        entity_id=route.id,
        expected=frozenset({U}),
        to_status=RouteStatus.TERMINATING,
        phase="routes.evict",
        result=OutcomeBucket.SUCCESS,
    )
    second_applied: list[UUID] = []
    with engine.begin() as first:
        phase_store.apply(
            EntityKind.ROUTE, [_health_check(route.id, U, OutcomeBucket.ERROR)], conn=first
        )
        racer = threading.Thread(
            target=lambda: second_applied.extend(
                phase_store.apply(
                    EntityKind.ROUTE, [_health_check(route.id, H, OutcomeBucket.SUCCESS)]
                )
            )
        )
        racer.start()
        racer.join(timeout=0.5)
        assert racer.is_alive(), "the second run must wait for the first one's row lock"
    racer.join(timeout=10)
    # The second run saw 'unhealthy' after the lock was released: its guard (H, U, D) held.
    assert second_applied == [route.id]
    assert phase_store.apply(EntityKind.ROUTE, [evict]) == []


def test_ten_thousand_guarded_transitions_in_one_batch(
    phase_store: PostgresPhaseStore, engine: sa.Engine, deployment: DeploymentInfo
) -> None:
    """Correctness at bench size (timing lives in bench/transitions.py, not here)."""
    many = [make_route(deployment, status=D) for _ in range(10_000)]
    with engine.begin() as conn:
        conn.execute(
            routes.insert(),
            [{"id": r.id, "deployment_id": deployment.id, "status": "degraded"} for r in many],
        )
    changes = [_health_check(r.id, H, OutcomeBucket.SUCCESS) for r in many[:9_000]]
    changes += [
        RouteTransition(
            entity_id=r.id,
            expected=frozenset({U}),  # guard fails: these are degraded
            to_status=RouteStatus.TERMINATING,
            phase="routes.evict",
            result=OutcomeBucket.SUCCESS,
        )
        for r in many[9_000:]
    ]
    applied = phase_store.apply(EntityKind.ROUTE, changes)
    assert len(applied) == 9_000
    with engine.connect() as conn:
        counts: dict[str, int] = dict(
            conn.execute(
                sa.select(routes.c.status, sa.func.count()).group_by(routes.c.status)
            ).all()
        )
        history_rows = conn.execute(sa.select(sa.func.count()).select_from(route_history)).scalar()
    assert counts == {"healthy": 9_000, "degraded": 1_000}
    assert history_rows == 9_000
