"""No request fails when replicas leave or join: ~20 requests/s through the dev proxy the
whole time, the reference world only (runner, prober, proxy, sample model), while a
deployment scales 4 -> 1, then 1 -> 4, then loses a replica made sick.

Every answer other than 200, and every connection error, counts as a failure. A
watcher polls the service-discovery endpoint and every published replica's port
every 0.2 s: no replica may be dead while it is still published.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from typing import Any

import requests
import sqlalchemy as sa

from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.schema import routes, sessions
from workers.domain import DeploymentInfo, ModelRevision
from workers.reference import dev
from workers.reference.processes import modelfleet, wait_for
from workers.reference.traffic import LivenessWatch, LoadLoop, between, failures

TIMEOUT_S = 90
DRAIN_S = 3.0


def _published(system: dev.DevSystem, deployment_id: uuid.UUID) -> int:
    try:
        groups = requests.get(system.sd_url, timeout=2).json()
    except (requests.RequestException, ValueError):
        return -1
    return sum(1 for g in groups if g["labels"].get("endpoint_id") == str(deployment_id))


def _scale(system: dev.DevSystem, name: str, replicas: int) -> None:
    done = subprocess.run(
        modelfleet("deployment", "scale", name, str(replicas)),
        env=system.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def _rows(system: dev.DevSystem, statement: sa.Select[Any]) -> list[sa.Row[Any]]:
    with system.engine.connect() as conn:
        return list(conn.execute(statement))


def _ended_sessions(system: dev.DevSystem, deployment_id: uuid.UUID) -> int:
    query = (
        sa.select(sessions.c.id)
        .join(routes, routes.c.id == sessions.c.route_id)
        .where(routes.c.deployment_id == deployment_id, sessions.c.status == "TERMINATED")
    )
    return len(_rows(system, query))


def _healthy_addresses(system: dev.DevSystem, deployment_id: uuid.UUID) -> list[str]:
    query = (
        sa.select(sessions.c.host, sessions.c.port)
        .join(routes, routes.c.session_id == sessions.c.id)
        .where(routes.c.deployment_id == deployment_id, routes.c.status == "healthy")
    )
    return [f"http://{row.host}:{row.port}" for row in _rows(system, query)]


def _serving(system: dev.DevSystem, replicas: int) -> DeploymentInfo:
    catalog = Catalog(engine=system.engine)
    catalog.create_scaling_group(
        dev.DEMO_GROUP, app_proxy_addr=system.proxy_url, app_proxy_api_token=system.proxy_token
    )
    revision = ModelRevision(
        image="sample-model",
        startup_command="python -m workers.reference.model_server",
        environ={"MODEL_NAME": "steady", "MODEL_LATENCY_S": "0.05"},
        health_check=dev.DEMO_HEALTH,
    )
    deployment = catalog.create_deployment(
        DeploymentInfo(uuid.uuid4(), "steady", dev.DEMO_GROUP, replicas, revision, drain_s=DRAIN_S)
    )
    wait_for(lambda: _published(system, deployment.id), lambda n: n == replicas,
             timeout_s=TIMEOUT_S, what=f"{replicas} replicas published")  # fmt: skip
    return deployment


def test_scale_in_scale_out_and_eviction_under_load_fail_no_request(
    system: dev.DevSystem,
) -> None:
    deployment = _serving(system, replicas=4)
    url = wait_for(lambda: dev._deployment_url(system.engine, deployment.id) or "",
                   timeout_s=TIMEOUT_S, what="the endpoint URL")  # fmt: skip
    load, watch = LoadLoop(url, rate_per_s=20), LivenessWatch(system.sd_url)
    with load.running(), watch.running():
        time.sleep(2)  # a baseline: all four serve

        scale_in_at = time.monotonic()
        _scale(system, "steady", 1)
        wait_for(lambda: _ended_sessions(system, deployment.id), lambda n: n == 3,
                 timeout_s=TIMEOUT_S, what="the 3 scaled-in sessions stopped")  # fmt: skip
        time.sleep(1)

        scale_out_at = time.monotonic()
        _scale(system, "steady", 4)
        wait_for(lambda: _published(system, deployment.id), lambda n: n == 4,
                 timeout_s=TIMEOUT_S, what="4 replicas published again")  # fmt: skip
        time.sleep(1)

        sick_at = time.monotonic()
        victim = _healthy_addresses(system, deployment.id)[0]
        requests.post(f"{victim}/admin/fail-health", timeout=5)
        wait_for(lambda: _ended_sessions(system, deployment.id), lambda n: n == 4,
                 timeout_s=TIMEOUT_S, what="the sick replica evicted and stopped")  # fmt: skip
        wait_for(lambda: _published(system, deployment.id), lambda n: n == 4,
                 timeout_s=TIMEOUT_S, what="a replacement published")  # fmt: skip
        end = time.monotonic()

    answers = load.snapshot()
    scale_in, scale_out = (
        between(answers, scale_in_at, scale_out_at),
        between(answers, scale_out_at, sick_at),
    )
    eviction = between(answers, sick_at, end)
    assert len(scale_in) > 50, "the load loop must run through the scale-in"
    assert len(scale_out) > 20, "the load loop must run through the scale-out"
    assert failures(scale_in) == []
    assert failures(scale_out) == []
    # A sick replica still answers completions; its eviction drains it like a scale-in.
    assert failures(eviction) == []
    assert watch.polls > 20
    assert watch.violations == []
