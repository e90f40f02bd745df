"""Operating a running modelfleet: `phase run --wait`, `celery call`, and Flower behind auth."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.error
import urllib.request

import sqlalchemy as sa

from tests.e2e.conftest import APP_PROXY_TOKEN, Stack
from tests.factories import make_deployment, make_route
from tests.integration.fake_app_proxy_server import Reply
from workers.adapters.postgres.schema import deployment_history
from workers.devtools.processes import celery, modelfleet, wait_for
from workers.devtools.throwaway_servers import free_port
from workers.domain import DeploymentLifecycle


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
    assert done.stderr == "", (
        done.stderr
    )  # nothing at exit either (once: AsyncResult.__del__'s message)
    report = json.loads(done.stdout)
    assert (report["phase"], report["state"], report["item_count"]) == (
        "routes.provision",
        "succeeded",
        2,
    )
    assert report["success"] == 2
    assert sorted(o["bucket"] for o in report["outcomes"]) == ["success", "success"]


def _phase_run(stack: Stack, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        modelfleet("phase", "run", *args),
        env=stack.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _pending_deployment_behind_a_slow_proxy(stack: Stack, reply: Reply) -> None:
    stack.catalog.create_scaling_group(
        "rg", app_proxy_addr=stack.proxy.addr, app_proxy_api_token=APP_PROXY_TOKEN
    )
    stack.catalog.create_deployment(make_deployment(resource_group="rg"))
    stack.proxy.script.default = lambda seen: reply


def test_phase_run_wait_exits_3_when_the_run_succeeded_but_items_errored(stack: Stack) -> None:
    _pending_deployment_behind_a_slow_proxy(stack, Reply(status=500))
    stack.ready_worker()
    stdout, stderr = _phase_run(stack, "deployments.check_pending", "--wait", "--json").communicate(
        timeout=120
    )
    report = json.loads(stdout)
    assert (report["state"], report["error"], report["success"]) == ("succeeded", 1, 0)
    [line] = stderr.strip().splitlines()
    assert line == (
        f"Error: deployments.check_pending: run {report['id']} succeeded; 1 item(s) ended in error"
    )


def test_phase_run_wait_waits_out_a_run_in_progress_then_runs_its_own(stack: Stack) -> None:
    _pending_deployment_behind_a_slow_proxy(
        stack, Reply(body=json.dumps({"endpoint": "http://e"}), delay_s=3.0)
    )
    stack.ready_worker()
    both = [_phase_run(stack, "deployments.check_pending", "--wait", "--json") for _ in "ab"]
    ended = [p.communicate(timeout=120) for p in both]
    assert [p.returncode for p in both] == [0, 0], ended
    reports = [json.loads(stdout) for stdout, _ in ended]
    assert reports[0]["id"] != reports[1]["id"]
    assert sorted(r["item_count"] for r in reports) == [0, 1]  # the later run found it ready
    waited = [stderr for _, stderr in ended if stderr]
    assert waited == ["deployments.check_pending: a run is in progress; waiting for it to close\n"]


def test_phase_run_wait_gives_up_after_timeout_with_one_line(stack: Stack) -> None:
    elsewhere = stack.start(
        "elsewhere", celery("worker", "--queues=elsewhere", "--concurrency=1", "--loglevel=INFO")
    )
    wait_for(
        lambda: elsewhere.log_path.read_text(errors="replace"),
        lambda log: " ready." in log,
        timeout_s=60,
        what="a worker that answers pings but consumes another queue",
    )
    process = _phase_run(stack, "routes.drain", "--wait", "--timeout-s", "2")
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert stdout == ""
    assert stderr.strip().splitlines() == [
        "Error: phase run routes.drain: no worker started the run after 2 s (--timeout-s); "
        "see `modelfleet status`"
    ]


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


def test_a_deployment_waiting_for_an_app_proxy_says_why_through_real_workers(
    stack: Stack,
) -> None:
    """The reason travels from the header task through Redis to the callback's history row."""
    stack.catalog.create_scaling_group("no-proxy")
    waiting = stack.catalog.create_deployment(make_deployment(resource_group="no-proxy"))
    stack.ready_worker()
    stdout, stderr = _phase_run(stack, "deployments.check_pending", "--wait", "--json").communicate(
        timeout=120
    )
    [outcome] = json.loads(stdout)["outcomes"]
    assert (outcome["bucket"], outcome["error_code"]) == ("waiting", "no_app_proxy"), stderr
    [row] = stack.query(
        sa.select(deployment_history).where(deployment_history.c.deployment_id == waiting.id)
    )
    assert row["message"].startswith("resource group no-proxy has no app proxy address")
