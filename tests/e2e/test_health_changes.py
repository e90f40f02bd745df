"""Readiness to traffic through the change feed: with the full health pass and the feed's
own tick both set to two minutes, only beat's watcher can have acted on the change."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa

from tests.e2e.conftest import Stack
from tests.factories import make_deployment, make_route
from workers.adapters.postgres.schema import routes, sessions
from workers.adapters.redis.discovery import RedisServiceDiscovery
from workers.config import interval_variable
from workers.devtools.processes import celery, wait_for
from workers.domain import DeploymentLifecycle, RouteStatus

SLOW = {interval_variable(p): "120" for p in ("routes.health_check", "routes.health_changed")}


def test_a_readiness_change_reaches_service_discovery_without_waiting_for_a_tick(
    stack: Stack,
) -> None:
    stack.catalog.create_scaling_group("rg")
    deployment = stack.catalog.create_deployment(
        make_deployment(resource_group="rg", replica_count=3, lifecycle=DeploymentLifecycle.READY)
    )
    ready = [make_route(deployment, status=RouteStatus.DEGRADED) for _ in range(3)]
    stack.catalog.add_routes(ready)
    with stack.engine.begin() as conn:
        for port, route in enumerate(ready, start=20001):
            session_id = uuid.uuid4()
            conn.execute(sessions.insert().values(
                id=session_id, route_id=route.id, name="s", spec={}, status="RUNNING",
                host="127.0.0.1", port=port, started_at=datetime.now(UTC),
            ))  # fmt: skip
            conn.execute(routes.update().where(routes.c.id == route.id)
                         .values(session_id=session_id))  # fmt: skip
    stack.ready_worker(**SLOW)
    schedule = f"--schedule={stack.log_dir / 'beat-schedule'}"
    beat = stack.start("beat", celery("beat", "--loglevel=INFO", schedule), **SLOW)
    wait_for(lambda: beat.log_path.read_text(errors="replace"), lambda log: "Starting" in log,
             timeout_s=60, what="beat to start")  # fmt: skip
    discovery = RedisServiceDiscovery(client=stack.redis, keys=stack.keys)
    ids = [str(r.id) for r in ready]
    stack.health.update_readiness(dict.fromkeys(ids, True), changed=ids)
    published = wait_for(discovery.published_route_ids, lambda found: len(found) == 3,
                         timeout_s=60, what="the three routes published")  # fmt: skip
    assert published == {r.id for r in ready}
    statuses = {row["status"] for row in stack.query(sa.select(routes.c.status))}
    assert statuses == {"healthy"}
    assert stack.phase_store.recent_runs(phase="routes.health_check") == []  # never ticked
