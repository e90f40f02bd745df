"""Builders for domain values with sensible defaults; tests override what they care about."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import sqlalchemy as sa

from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.schema import sessions
from workers.domain import (
    DeploymentContext,
    DeploymentInfo,
    HealthCheckConfig,
    ModelRevision,
    RouteData,
    RouteStatus,
    SessionId,
)
from workers.phase_runs import PhaseRun
from workers.ports import PhaseStore


def make_revision(**overrides: Any) -> ModelRevision:
    fields: dict[str, Any] = {
        "image": "registry.local/echo-model:1.0",
        "runtime_variant": "custom",
        "startup_command": "python -m echo_model",
        "environ": {"MODEL_NAME": "echo"},
        "health_check": HealthCheckConfig(path="/health", initial_delay_s=30.0),
    }
    return ModelRevision(**(fields | overrides))


def revision_of(deployment: DeploymentInfo) -> ModelRevision:
    assert deployment.target_revision is not None
    return deployment.target_revision


def make_deployment(**overrides: Any) -> DeploymentInfo:
    ident = uuid4()
    fields: dict[str, Any] = {
        "id": ident,
        "name": f"svc-{ident.hex[:6]}",
        "resource_group": "sg1",
        "replica_count": 1,
        "target_revision": make_revision(),
        "owner": "user-1",
        "project": "project-1",
    }
    return DeploymentInfo(**(fields | overrides))


def make_route(deployment: DeploymentInfo | None = None, **overrides: Any) -> RouteData:
    fields: dict[str, Any] = {
        "id": uuid4(),
        "endpoint_id": deployment.id if deployment else uuid4(),
        "created_at": datetime.now(UTC),
    }
    return RouteData(**(fields | overrides))


def new_session_id() -> SessionId:
    return SessionId(uuid4())


def context_of(deployment: DeploymentInfo, **environ: str) -> DeploymentContext:
    return DeploymentContext(
        deployment=deployment, revision=revision_of(deployment), environ=environ
    )


def open_run(
    store: PhaseStore,
    phase: str,
    *,
    item_count: int = 0,
    task_count: int = 0,
    lock_token: str = "t",
    deadline_s: float = 60.0,
) -> PhaseRun:
    """A new open run of `phase` (fails the test if one is open already)."""
    run = store.open_run(
        phase,
        item_count=item_count,
        task_count=task_count,
        lock_token=lock_token,
        deadline_s=deadline_s,
    )
    assert run is not None, f"a run of {phase} is open already"
    return run


def add_exited_session(
    catalog: Catalog,
    engine: sa.Engine,
    deployment: DeploymentInfo,
    *,
    age_s: float,
    revision: int | None = None,
) -> None:
    """A terminated route of `deployment` whose session exited on its own `age_s` ago."""
    dead = make_route(deployment, status=RouteStatus.TERMINATED, revision=revision)
    catalog.add_routes([dead])
    ended = sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, age_s)
    with engine.begin() as conn:
        conn.execute(
            sessions.insert().values(
                id=uuid4(), route_id=dead.id, name="s", spec={}, status="ERROR", terminated_at=ended
            )
        )
