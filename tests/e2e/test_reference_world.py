"""The whole system with nothing played by the test: runner, prober, collector and proxy
are the reference processes `modelfleet dev` starts, on the test's own database and Redis."""

from __future__ import annotations

import subprocess
import threading
import uuid
from typing import Any

import requests
import sqlalchemy as sa

from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.schema import (
    autoscaling_rules,
    deployment_history,
    deployments,
    routes,
    sessions,
)
from workers.devtools import dev, smoke
from workers.devtools.processes import modelfleet, process_alive, wait_for
from workers.domain import (
    AutoScalingRule,
    Comparator,
    DeploymentInfo,
    MetricSource,
    ModelRevision,
)

TIMEOUT_S = 90


def _query(system: dev.DevSystem, statement: sa.Select[Any]) -> list[sa.Row[Any]]:
    with system.engine.connect() as conn:
        return list(conn.execute(statement))


def _lifecycle(system: dev.DevSystem, deployment_id: uuid.UUID) -> str:
    [row] = _query(
        system, sa.select(deployments.c.lifecycle).where(deployments.c.id == deployment_id)
    )
    return str(row[0])


def _ask(url: str) -> str | None:
    try:
        answer = requests.post(f"{url}/v1/completions", json={"prompt": "to be"}, timeout=5)
    except requests.RequestException:
        return None
    return str(answer.json()["choices"][0]["text"]) if answer.ok else None


def _active_count(system: dev.DevSystem, deployment_id: uuid.UUID) -> int:
    rows = _query(
        system,
        sa.select(routes.c.status).where(
            routes.c.deployment_id == deployment_id,
            routes.c.status.in_(["provisioning", "degraded", "healthy", "unhealthy"]),
        ),
    )
    return len(rows)


def test_SC_DE_INT_001_full_lifecycle_with_only_the_reference_pieces(
    system: dev.DevSystem,
) -> None:
    demo = system.demo()
    url = wait_for(
        lambda: smoke.deployment_url(system.engine, demo.id) or "",
        timeout_s=TIMEOUT_S,
        what="ready with a URL",
    )
    assert wait_for(lambda: _ask(url), timeout_s=TIMEOUT_S, what="an answer") == "echo: be to"
    moves = _query(
        system,
        sa.select(deployment_history.c.to_status)
        .where(deployment_history.c.deployment_id == demo.id)
        .order_by(deployment_history.c.id),
    )
    assert [m[0] for m in moves][:2] == ["scaling", "ready"]
    pids = [
        r[0] for r in _query(system, sa.select(sessions.c.pid).where(sessions.c.pid.is_not(None)))
    ]
    assert len(pids) == 2

    done = subprocess.run(
        modelfleet("deployment", "destroy", dev.DEMO_DEPLOYMENT),
        env=system.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    wait_for(lambda: _lifecycle(system, demo.id), lambda s: s == "destroyed", timeout_s=TIMEOUT_S,
             what="destroyed")  # fmt: skip
    wait_for(
        lambda: {r[0] for r in _query(system, sa.select(sessions.c.status))},
        lambda statuses: statuses == {"TERMINATED"},
        timeout_s=TIMEOUT_S,
        what="every session stopped by the runner",
    )
    assert [pid for pid in pids if process_alive(pid)] == []
    assert _ask(url) is None  # nothing serves the endpoint any more


def test_SC_RE_INT_002_an_unhealthy_replica_is_replaced_with_only_the_reference_pieces(
    system: dev.DevSystem,
) -> None:
    timings = smoke.smoke(system, TIMEOUT_S, lambda line: None)
    assert timings["first_answer_s"] < timings["recovered_s"]
    # The replacement may serve before the sick route has finished terminating.
    ended = (
        sa.select(sessions.c.status)
        .join(routes, routes.c.id == sessions.c.route_id)
        .where(routes.c.status == "terminated")
    )
    wait_for(
        lambda: [row.status for row in _query(system, ended)],
        lambda statuses: statuses == ["TERMINATED"],
        timeout_s=TIMEOUT_S,
        what="the sick route terminated and its session stopped by the runner",
    )


def test_an_autoscaling_rule_scales_1_to_3_under_load_and_back_after_cooldown(
    system: dev.DevSystem,
) -> None:
    system.demo()  # creates the demo group and its app proxy registration
    catalog = Catalog(engine=system.engine)
    revision = ModelRevision(
        image="sample-model",
        startup_command="python -m workers.reference.model_server",
        environ={"MODEL_NAME": "busy", "MODEL_LATENCY_S": "0.5"},
        health_check=dev.DEMO_HEALTH,
    )
    busy = catalog.create_deployment(
        DeploymentInfo(uuid.uuid4(), "busy", dev.DEMO_GROUP, 1, revision)
    )
    in_flight = "model_requests_in_flight"
    catalog.add_autoscaling_rule(busy.id, AutoScalingRule(
        MetricSource.INFERENCE_FRAMEWORK, in_flight, 2, Comparator.GREATER_THAN_OR_EQUAL, 2,
        cooldown_s=5, max_replicas=3,
    ))  # fmt: skip
    catalog.add_autoscaling_rule(busy.id, AutoScalingRule(
        MetricSource.INFERENCE_FRAMEWORK, in_flight, 0.5, Comparator.LESS_THAN, -2,
        cooldown_s=5, min_replicas=1,
    ))  # fmt: skip
    url = wait_for(lambda: smoke.deployment_url(system.engine, busy.id) or "", timeout_s=TIMEOUT_S,
                   what="ready")  # fmt: skip
    wait_for(lambda: _ask(url), timeout_s=TIMEOUT_S, what="an answer")

    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            _ask(url)

    clients = [threading.Thread(target=load, daemon=True) for _ in range(6)]
    for client in clients:
        client.start()
    try:
        wait_for(lambda: _active_count(system, busy.id), lambda n: n == 3, timeout_s=TIMEOUT_S,
                 what="3 replicas under load")  # fmt: skip
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=10)
    wait_for(lambda: _active_count(system, busy.id), lambda n: n == 1, timeout_s=TIMEOUT_S,
             what="back to 1 replica without load")  # fmt: skip
    fired = _query(
        system,
        sa.select(autoscaling_rules.c.step_size, autoscaling_rules.c.last_triggered_at)
        .where(autoscaling_rules.c.deployment_id == busy.id)
        .order_by(autoscaling_rules.c.step_size),
    )
    assert [(r.step_size, r.last_triggered_at is not None) for r in fired] == [
        (-2, True),
        (2, True),
    ]
