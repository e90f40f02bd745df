"""`deployment create | scale | destroy --wait` against the reference world: each returns
when the fleet is as asked, and the URL it prints answers through the dev proxy."""

from __future__ import annotations

import json
import uuid

import requests

from tests.e2e.fleet import TIMEOUT_S, cli, published, serving
from workers.reference import dev
from workers.reference.processes import wait_for

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
