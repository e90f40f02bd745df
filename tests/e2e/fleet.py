"""A fleet of the sample model served by the reference world, and the CLI driving it."""

from __future__ import annotations

import subprocess
import uuid
from typing import Any

import requests
import sqlalchemy as sa

from workers.adapters.postgres.schema import deployments, routes, sessions
from workers.devtools import dev, smoke
from workers.devtools.processes import modelfleet, wait_for
from workers.domain import DeploymentInfo, DeploymentLifecycle

TIMEOUT_S = 90
NAME = "steady"


def published(system: dev.DevSystem, deployment_id: uuid.UUID) -> int:
    """Targets of the deployment in the Prometheus service-discovery document (-1: no answer)."""
    try:
        groups = requests.get(system.sd_url, timeout=2).json()
    except (requests.RequestException, ValueError):
        return -1
    return sum(1 for g in groups if g["labels"].get("endpoint_id") == str(deployment_id))


def cli(
    system: dev.DevSystem, *args: str, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(modelfleet(*args), env=system.env, capture_output=True, text=True,
                          timeout=timeout_s, check=False)  # fmt: skip


def rows(system: dev.DevSystem, statement: sa.Select[Any]) -> list[sa.Row[Any]]:
    with system.engine.connect() as conn:
        return list(conn.execute(statement))


def ended_sessions(system: dev.DevSystem, deployment_id: uuid.UUID) -> int:
    query = (
        sa.select(sessions.c.id)
        .join(routes, routes.c.id == sessions.c.route_id)
        .where(routes.c.deployment_id == deployment_id, sessions.c.status == "TERMINATED")
    )
    return len(rows(system, query))


def healthy_addresses(system: dev.DevSystem, deployment_id: uuid.UUID) -> list[str]:
    query = (
        sa.select(sessions.c.host, sessions.c.port)
        .join(routes, routes.c.session_id == sessions.c.id)
        .where(routes.c.deployment_id == deployment_id, routes.c.status == "healthy")
    )
    return [f"http://{row.host}:{row.port}" for row in rows(system, query)]


def lifecycle(system: dev.DevSystem, deployment_id: uuid.UUID) -> str:
    [row] = rows(
        system, sa.select(deployments.c.lifecycle).where(deployments.c.id == deployment_id)
    )
    return str(row[0])


def serving(system: dev.DevSystem, replicas: int, drain_s: float = 3.0) -> DeploymentInfo:
    """A deployment of the sample model with `replicas` routes, every one published."""
    deployment = system.sample_deployment(NAME, replicas, drain_s=drain_s)
    wait_for(lambda: published(system, deployment.id), lambda n: n == replicas,
             timeout_s=TIMEOUT_S, what=f"{replicas} replicas published")  # fmt: skip
    wait_for(lambda: lifecycle(system, deployment.id), lambda s: s == DeploymentLifecycle.READY,
             timeout_s=TIMEOUT_S, what="ready")  # fmt: skip
    return deployment


def endpoint_url(system: dev.DevSystem, deployment_id: uuid.UUID) -> str:
    url: str = wait_for(lambda: smoke.deployment_url(system.engine, deployment_id) or "",
                        timeout_s=TIMEOUT_S, what="the endpoint URL")  # fmt: skip
    return url
