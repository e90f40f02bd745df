"""`deployment create | scale | destroy --wait` against the reference world: each returns
when the fleet is as asked, and the URL it prints answers through the dev proxy."""

from __future__ import annotations

import json
import uuid

import requests
import sqlalchemy as sa

from tests.e2e.fleet import TIMEOUT_S, cli, published, rows, serving
from workers.adapters.postgres.schema import routes, sessions
from workers.devtools import dev
from workers.devtools.processes import wait_for

WAITED = "waited"
SAMPLE_MODEL = "python -m workers.reference.model_server"


def _answers(url: str) -> int:
    try:
        return requests.post(f"{url}/v1/completions", json={"prompt": "hi"}, timeout=5).status_code
    except requests.RequestException:
        return 0


def test_create_scale_and_destroy_wait_until_the_fleet_is_as_asked(
    system: dev.DevSystem,
) -> None:
    serving(system, replicas=1)  # the demo group, pointed at this run's proxy
    created = cli(system, "deployment", "create", WAITED, "--group", dev.DEMO_GROUP,
                  "--image", "sample-model", "--command", SAMPLE_MODEL,
                  "--health-path", "/health", "--health-initial-delay-s", "1", "--drain-s", "1",
                  "--replicas", "2", "--wait", "--json", timeout_s=TIMEOUT_S)  # fmt: skip
    assert created.returncode == 0, created.stderr
    document = json.loads(created.stdout)
    assert (document["deployment"], document["lifecycle"], document["ready"]) == (
        WAITED, "ready", "2/2",
    )  # fmt: skip
    assert created.stderr == ""  # piped: no progress line
    url = document["url"]
    assert url.startswith("http")
    wait_for(lambda: _answers(url), lambda status: status == 200, timeout_s=10,
             what="the printed URL to answer through the proxy")  # fmt: skip

    scaled = cli(system, "deployment", "scale", WAITED, "3", "--wait", timeout_s=TIMEOUT_S)
    assert scaled.returncode == 0, scaled.stderr
    assert scaled.stdout.strip() == f"deployment {WAITED} scaled to 3; serving 3/3 at {url}"

    gone = cli(system, "deployment", "destroy", WAITED, "--wait", "--json", timeout_s=TIMEOUT_S)
    assert gone.returncode == 0, gone.stderr
    assert json.loads(gone.stdout)["lifecycle"] == "destroyed"
    assert published(system, uuid.UUID(document["id"])) == 0
    assert _live_sessions(system, uuid.UUID(document["id"])) == 0  # every model server stopped
    _a_first_revision_that_never_becomes_healthy_says_why_instead_of_cycling_silently(system)


def _live_sessions(system: dev.DevSystem, deployment_id: uuid.UUID) -> int:
    query = (
        sa.select(sessions.c.id)
        .join(routes, routes.c.id == sessions.c.route_id)
        .where(
            routes.c.deployment_id == deployment_id,
            sessions.c.status.not_in(["TERMINATED", "ERROR", "CANCELLED"]),
        )
    )
    return len(rows(system, query))


def _a_first_revision_that_never_becomes_healthy_says_why_instead_of_cycling_silently(
    system: dev.DevSystem,
) -> None:
    """(In the same world, to spare one.) Nothing can roll a first revision back."""
    sick = cli(system, "deployment", "create", "sick", "--group", dev.DEMO_GROUP,
               "--image", "sample-model", "--command", SAMPLE_MODEL, "--health-path", "/nowhere",
               "--health-initial-delay-s", "1", "--health-interval-s", "1",
               "--health-max-retries", "2", "--wait", "--timeout-s", "30",
               timeout_s=TIMEOUT_S)  # fmt: skip
    assert sick.returncode == 1
    [line] = sick.stderr.splitlines()
    assert line.startswith("Error: sick not serving after 30 s (--timeout-s); it is ready, 0/1")
    assert "no route of revision 1 became healthy within 3 s: /nowhere answered 404" in line
    shown = cli(system, "deployment", "show", "sick", "--json")
    assert json.loads(shown.stdout)["reason"] == (
        "no route of revision 1 became healthy within 3 s: /nowhere answered 404"
    )
