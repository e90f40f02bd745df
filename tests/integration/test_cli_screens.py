"""What a person sees: at 80 columns every main command fits, never cuts an id, a URL or
a time, and says so when there is nothing; `--wide` adds columns; `--watch` refreshes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.factories import make_deployment, make_route
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.phase_store import PostgresPhaseStore
from workers.adapters.postgres.schema import deployments, sessions
from workers.domain import DeploymentLifecycle, RouteStatus
from workers.phase_runs import OutcomeCounts, PhaseRunState, RunSummary
from workers.program import main

LONG_NAME = "a-deployment-name-that-uses-all-of-the-sixty-three-characters-x"
URL = "http://127.0.0.1:10200/e/{id}"
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture
def fleet(catalog: Catalog, engine: sa.Engine, phase_store: PostgresPhaseStore) -> dict[str, Any]:
    """Long names, URLs, routes in several states, history, errors, a session that exited
    with output, and closed phase runs: what a real controller's record holds."""
    catalog.create_scaling_group("rg", app_proxy_addr="http://proxy:10200",
                                 app_proxy_api_token="t")  # fmt: skip
    made = []
    for name in (LONG_NAME, "short"):
        found = catalog.create_deployment(make_deployment(
            name=name, resource_group="rg", replica_count=3, lifecycle=DeploymentLifecycle.READY
        ))  # fmt: skip
        with engine.begin() as conn:
            conn.execute(deployments.update().where(deployments.c.id == found.id)
                         .values(url=URL.format(id=found.id)))  # fmt: skip
        statuses = [RouteStatus.HEALTHY, RouteStatus.UNHEALTHY, RouteStatus.DRAINING]
        route_list = [make_route(found, status=s) for s in statuses]
        catalog.add_routes(route_list)
        with engine.begin() as conn:
            conn.execute(sessions.insert().values(
                id=uuid.uuid4(), route_id=route_list[1].id, name="s", spec={}, status="ERROR",
                exit_code=137, last_output="RuntimeError: CUDA out of memory\n" + "x" * 300,
                terminated_at=sa.func.now(),
            ))  # fmt: skip
        made.append(found)
    for phase in ("routes.sync_service_discovery", "deployments.check_pending"):
        run = phase_store.open_run(phase, item_count=2, task_count=1, lock_token="t",
                                   deadline_s=60)  # fmt: skip
        assert run is not None
        summary = RunSummary(OutcomeCounts(success=1, error=1), error_samples=[
            {"id": str(made[0].id), "reason": "POST http://proxy:10200/v2/endpoints/"
             f"{made[0].id}: HTTP 500: (empty body)", "error_code": "app_proxy_request_failed"}
        ])  # fmt: skip
        with engine.begin() as conn:
            phase_store.close_run(conn, run.id, PhaseRunState.SUCCEEDED, summary)
    return {"deployments": made}


def _at_80(run_env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(main, list(args), env={**run_env, "COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.output


SCREENS = [
    ["deployment", "list"],
    ["deployment", "list", "--wide"],
    ["deployment", "show", LONG_NAME],
    ["route", "list"],
    ["route", "list", "--wide"],
    ["status"],
    ["status", "--wide"],
    ["phase", "history"],
    ["phase", "history", "--wide"],
    ["scaling-group", "list", "--wide"],
    ["deployment", "revisions", "short", "--wide"],
]


@pytest.mark.parametrize("args", SCREENS, ids=" ".join)
def test_every_main_screen_fits_80_columns_and_cuts_no_id_url_or_time(
    run_env: dict[str, str], fleet: dict[str, Any], args: list[str]
) -> None:
    shown = _at_80(run_env, *args)
    lines = shown.splitlines()
    assert max(len(line) for line in lines) <= 80, shown
    as_json = CliRunner().invoke(main, [*args, "--json"], env=run_env).output
    for value in set(UUID_RE.findall(as_json)) & set(UUID_RE.findall(shown)):
        assert any(value in line for line in lines)
    # Whatever part of an id or URL the screen shows, it shows whole: never a cut piece.
    for piece in re.findall(r"[0-9a-f]{8}-[0-9a-f-]*", shown):
        assert UUID_RE.fullmatch(piece[:36]), (piece, shown)
    for url in re.findall(r"http://\S+", shown):
        assert url.rstrip(",)") in as_json.replace("\\/", "/"), (url, shown)


def test_deployment_list_shows_the_url_and_ids_whole_with_wide(
    run_env: dict[str, str], fleet: dict[str, Any]
) -> None:
    shown = _at_80(run_env, "deployment", "list", "--wide")
    for deployment in fleet["deployments"]:
        assert any(URL.format(id=deployment.id) in line for line in shown.splitlines()), shown
        assert any(str(deployment.id) in line for line in shown.splitlines())
    narrow = _at_80(run_env, "deployment", "list")
    assert "http://" not in narrow
    assert "3 replicas not healthy" in narrow or "2 of 3 replicas not healthy" in narrow


def test_deployment_show_answers_why_in_one_screen(
    run_env: dict[str, str], fleet: dict[str, Any]
) -> None:
    shown = _at_80(run_env, "deployment", "show", "short")
    assert len(shown.splitlines()) <= 60, shown
    for expected in ("lifecycle:", "ready:", "reason:", "1 healthy", "1 unhealthy",
                     "1 draining", "age_s", "exit_code", "137"):  # fmt: skip
        assert expected in shown, (expected, shown)


def test_watch_redraws_until_ctrl_c_then_exits_0(
    run_env: dict[str, str], fleet: dict[str, Any]
) -> None:
    watcher = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "deployment", "list", "--watch", "0.5"],
        env={**os.environ, **run_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    time.sleep(4)
    watcher.send_signal(signal.SIGINT)
    stdout, stderr = watcher.communicate(timeout=10)
    assert watcher.returncode == 0, stderr
    assert stderr == ""
    assert stdout.count("short") >= 2  # drawn more than once


def test_watch_with_json_is_refused(run_env: dict[str, str]) -> None:
    refused = CliRunner().invoke(main, ["status", "--watch", "--json"], env=run_env)
    assert refused.exit_code == 2
    assert refused.output.strip().splitlines() == [
        "Error: --watch: not with --json (run the command again to poll)"
    ]
