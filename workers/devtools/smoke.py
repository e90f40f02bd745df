"""`modelfleet dev --smoke`: serve, break one replica, serve from its replacement; and the
small reads it (and the tests and benchmarks) wait on."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

from workers.adapters.postgres.engine import transaction
from workers.adapters.postgres.schema import deployments, routes, sessions
from workers.devtools.dev import DevSystem
from workers.devtools.processes import wait_for
from workers.domain import RouteStatus


def smoke(system: DevSystem, timeout_s: float, say: Callable[[str], None]) -> dict[str, float]:
    """Serve, break one replica, serve from a replacement; returns seconds to each step."""
    started = time.monotonic()
    demo = system.demo()
    url: str = wait_for(
        lambda: deployment_url(system.engine, demo.id) or "",
        timeout_s=timeout_s,
        what="the demo deployment's endpoint URL",
    )
    say(f"endpoint {url}")
    wait_for(lambda: answer(url), timeout_s=timeout_s, what="an answer through the proxy")
    first_answer_s = time.monotonic() - started
    say(f"first answer after {first_answer_s:.1f}s")
    originals = healthy_routes(system.engine, demo.id)
    victim_id, host, port = originals[0]
    post(f"http://{host}:{port}/admin/fail-health")
    say(f"route {victim_id} made unhealthy")
    wait_for(
        lambda: [r for r in healthy_routes(system.engine, demo.id) if r not in originals],
        timeout_s=timeout_s,
        what="a healthy replacement route",
    )
    wait_for(lambda: answer(url), timeout_s=timeout_s, what="an answer after the replacement")
    recovered_s = time.monotonic() - started
    say(f"replacement serving after {recovered_s:.1f}s")
    return {"first_answer_s": first_answer_s, "recovered_s": recovered_s}


def deployment_url(engine: sa.Engine, deployment_id: uuid.UUID) -> str | None:
    with transaction(engine) as conn:
        row = conn.execute(
            sa.select(deployments.c.url, deployments.c.lifecycle).where(
                deployments.c.id == deployment_id
            )
        ).one()
    return row.url if row.lifecycle == "ready" else None


def healthy_routes(engine: sa.Engine, deployment_id: uuid.UUID) -> list[tuple[Any, str, int]]:
    query = (
        sa.select(routes.c.id, sessions.c.host, sessions.c.port)
        .join(sessions, sessions.c.id == routes.c.session_id)
        .where(routes.c.deployment_id == deployment_id, routes.c.status == RouteStatus.HEALTHY)
        .order_by(routes.c.created_at)
    )
    with transaction(engine) as conn:
        return [(row.id, row.host, row.port) for row in conn.execute(query)]


def answer(url: str) -> str | None:
    try:
        reply = post(f"{url}/v1/completions", {"prompt": "hello fleet"})
    except (OSError, ValueError):
        return None
    choices = reply.get("choices") or [{}]
    text = choices[0].get("text")
    return text if isinstance(text, str) and text.startswith("echo:") else None


def post(url: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body or {}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        answer: dict[str, Any] = json.load(response)
    return answer
