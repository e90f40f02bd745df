"""Operating a running modelfleet: `phase run --wait`, `celery call`, and Flower behind auth."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.request

from tests.e2e.conftest import Stack
from tests.factories import make_deployment, make_route
from workers.domain import DeploymentLifecycle
from workers.reference.processes import celery, modelfleet, wait_for
from workers.throwaway_servers import free_port


def test_phase_run_waits_for_the_run_and_prints_its_outcomes(stack: Stack) -> None:
    stack.catalog.create_scaling_group("rg")
    deployment = stack.catalog.create_deployment(
        make_deployment(resource_group="rg", lifecycle=DeploymentLifecycle.READY, replica_count=2)
    )
    stack.catalog.add_routes([make_route(deployment) for _ in range(2)])
    stack.ready_worker()
    done = subprocess.run(
        modelfleet("phase", "run", "routes.provision", "--wait", "--json"),
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["phase"], report["state"], report["item_count"]) == (
        "routes.provision",
        "succeeded",
        2,
    )
    assert report["success"] == 2
    assert sorted(o["bucket"] for o in report["outcomes"]) == ["success", "success"]


def test_celery_call_starts_a_phase_by_name(stack: Stack) -> None:
    stack.worker()
    stack.start("call", celery("call", "routes.sync_service_discovery")).popen.wait(timeout=30)
    [run] = wait_for(
        lambda: stack.phase_store.recent_runs(phase="routes.sync_service_discovery"),
        lambda runs: len(runs) == 1 and runs[0].finished_at is not None,
        timeout_s=60,
        what="the called phase to run",
    )
    assert run.state.value == "succeeded"


def _get(url: str, auth: str | None = None) -> int:
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def test_flower_asks_for_the_basic_auth_from_the_environment(stack: Stack) -> None:
    port = free_port()
    stack.start(
        "flower",
        celery("flower", f"--port={port}", "--address=127.0.0.1"),
        FLOWER_BASIC_AUTH="admin:s3cret",
    )
    url = f"http://127.0.0.1:{port}/"
    wait_for(lambda: _get(url), lambda status: status != 0, timeout_s=60, what="flower to listen")
    assert _get(url) == 401
    assert _get(url, "admin:wrong") == 401
    assert _get(url, "admin:s3cret") == 200
    assert _get(f"http://127.0.0.1:{port}/api/workers", "admin:s3cret") == 200
    # compose.yaml's health check sends the same credentials
    assert _get(f"http://127.0.0.1:{port}/healthcheck", "admin:s3cret") == 200
