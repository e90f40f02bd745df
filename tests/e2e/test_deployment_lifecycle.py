"""A deployment's whole life, driven by real worker and beat processes.

The test plays the session scheduler (marks session rows RUNNING with a host
and port) and the health checker (writes readiness into Redis); everything
else is modelfleet running as it would in production.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from uuid import UUID

import sqlalchemy as sa

from tests.e2e.conftest import APP_PROXY_TOKEN, Stack
from tests.factories import make_deployment, make_revision
from workers.adapters.postgres.schema import (
    deployment_history,
    deployments,
    route_history,
    routes,
    sessions,
)
from workers.devtools.processes import modelfleet, wait_for
from workers.devtools.throwaway_servers import free_port
from workers.domain import HealthCheckConfig, RouteStatus

TIMEOUT_S = 60


def _active_routes(stack: Stack, deployment_id: UUID) -> list[sa.RowMapping]:
    return stack.query(
        sa.select(routes)
        .where(
            routes.c.deployment_id == deployment_id,
            routes.c.status.not_in([RouteStatus.TERMINATING.value, RouteStatus.TERMINATED.value]),
        )
        .order_by(routes.c.created_at)
    )


def _deployment(stack: Stack, deployment_id: UUID) -> sa.RowMapping:
    [row] = stack.query(sa.select(deployments).where(deployments.c.id == deployment_id))
    return row


def _run_sessions(stack: Stack, route_ids: list[UUID], first_port: int) -> None:
    """The scheduler's side: each route's session is up on its own port."""
    for offset, route_id in enumerate(route_ids):
        with stack.engine.begin() as conn:
            conn.execute(
                sessions.update()
                .where(sessions.c.route_id == route_id, sessions.c.status == "PENDING")
                .values(status="RUNNING", host="127.0.0.1", port=first_port + offset)
            )


def _operator(stack: Stack, *args: str) -> None:
    """A `modelfleet` command, as the operator would type it."""
    done = subprocess.run(
        modelfleet(*args), env=stack.env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def _scrape_targets(port: int) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{port}/metrics/service_discovery"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            document: list[dict[str, object]] = json.load(response)
    except OSError:
        return []
    return document


def test_a_deployment_serves_heals_scales_in_and_is_destroyed(stack: Stack) -> None:
    stack.catalog.create_scaling_group(
        "rg", app_proxy_addr=stack.proxy.addr, app_proxy_api_token=APP_PROXY_TOKEN
    )
    revision = make_revision(health_check=HealthCheckConfig(initial_delay_s=600))
    deployment = stack.catalog.create_deployment(
        make_deployment(resource_group="rg", replica_count=3, target_revision=revision, drain_s=1)
    )
    sd_port = free_port()
    stack.start("service-discovery", modelfleet("service-discovery", "serve", f"--port={sd_port}"))
    stack.worker()
    stack.beat()

    # pending -> scaling -> ready, with the URL the app proxy handed out.
    ready = wait_for(
        lambda: _deployment(stack, deployment.id),
        lambda row: row["lifecycle"] == "ready",
        timeout_s=TIMEOUT_S,
        what="the deployment to become ready",
    )
    assert ready["url"] == f"http://{deployment.id}.models.test"
    moves = [
        (r["from_status"], r["to_status"])
        for r in stack.query(
            sa.select(deployment_history)
            .where(deployment_history.c.deployment_id == deployment.id)
            .order_by(deployment_history.c.id)
        )
    ]
    assert moves[:2] == [("pending", "scaling"), ("scaling", "ready")]
    [registration] = [s for s in stack.proxy.script.seen if s.method == "POST"]
    assert registration.headers["X-BackendAI-Token"] == APP_PROXY_TOKEN

    # Three routes, each with a session the scheduler was asked for.
    first = wait_for(
        lambda: _active_routes(stack, deployment.id),
        lambda rows: len(rows) == 3 and all(r["session_id"] for r in rows),
        timeout_s=TIMEOUT_S,
        what="3 routes with sessions",
    )
    route_ids = [r["id"] for r in first]
    _run_sessions(stack, route_ids, first_port=18000)
    stack.health.update_readiness({str(route_id): True for route_id in route_ids})

    # Healthy, and published for scraping.
    wait_for(
        lambda: all(r["status"] == "healthy" for r in _active_routes(stack, deployment.id)),
        timeout_s=TIMEOUT_S,
        what="3 healthy routes",
    )
    targets = wait_for(
        lambda: _scrape_targets(sd_port),
        lambda found: len(found) == 3,
        timeout_s=TIMEOUT_S,
        what="3 scrape targets",
    )
    assert sorted(str(t["targets"][0]) for t in targets) == [  # type: ignore[index]
        f"127.0.0.1:{port}" for port in (18000, 18001, 18002)
    ]

    # One replica fails its probe: evicted, terminated, its session stopped, replaced.
    sick = route_ids[0]
    stack.health.update_readiness({str(sick): False})
    wait_for(
        lambda: (
            stack.query(sa.select(routes.c.status).where(routes.c.id == sick))[0]["status"]
            == "terminated"
        ),
        timeout_s=TIMEOUT_S,
        what="the unhealthy route to be terminated",
    )
    [session] = stack.query(sa.select(sessions.c.status).where(sessions.c.route_id == sick))
    assert session["status"] == "TERMINATING"
    path = stack.query(
        sa.select(route_history.c.phase, route_history.c.to_status)
        .where(route_history.c.route_id == sick)
        .order_by(route_history.c.id)
    )
    assert [(row["phase"], row["to_status"]) for row in path][-4:] == [
        ("routes.health_check", "unhealthy"),
        ("routes.evict", "draining"),  # out of traffic first
        ("routes.drain", "terminating"),  # then its session is told to stop
        ("routes.terminate", "terminated"),
    ]
    replaced = wait_for(
        lambda: _active_routes(stack, deployment.id),
        lambda rows: len(rows) == 3,
        timeout_s=TIMEOUT_S,
        what="a replacement route",
    )
    newest = replaced[-1]["id"]
    assert newest not in route_ids
    wait_for(
        lambda: len(_scrape_targets(sd_port)) == 2,
        timeout_s=TIMEOUT_S,
        what="the evicted route to leave service discovery",
    )

    # Scale to 1: the replacement (not healthy yet, and newest) goes first.
    _operator(stack, "deployment", "scale", str(deployment.id), "1")
    kept = wait_for(
        lambda: _active_routes(stack, deployment.id),
        lambda rows: len(rows) == 1,
        timeout_s=TIMEOUT_S,
        what="one route left after scaling in",
    )
    assert kept[0]["id"] in route_ids[1:]  # an original healthy route, not the replacement

    # Destroy: the endpoint is unregistered, every route ends, the deployment is destroyed.
    _operator(stack, "deployment", "destroy", str(deployment.id))
    wait_for(
        lambda: _deployment(stack, deployment.id)["lifecycle"] == "destroyed",
        timeout_s=TIMEOUT_S,
        what="the deployment to be destroyed",
    )
    assert any(
        s.method == "DELETE" and s.path == f"/v2/endpoints/{deployment.id}"
        for s in stack.proxy.script.seen
    )
    wait_for(
        lambda: (
            {
                r["status"]
                for r in stack.query(
                    sa.select(routes.c.status).where(routes.c.deployment_id == deployment.id)
                )
            }
            == {"terminated"}
        ),
        timeout_s=TIMEOUT_S,
        what="every route terminated",
    )
