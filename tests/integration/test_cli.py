"""The `modelfleet` commands against real PostgreSQL: output, `--json`, and bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from workers.adapters.postgres.schema import deployment_history, deployments
from workers.program import main


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # stdout only: a stray server thread may write to stderr


def _fails_with(result: Result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [f"Error: {message}"]


def test_scaling_groups_are_created_and_listed_without_tokens(run: Any) -> None:
    created = run(
        "scaling-group", "create", "rg", "--app-proxy-addr", "http://proxy:10200",
        "--app-proxy-token", "secret-token", "--cleanup-status", "unhealthy",
        "--cleanup-status", "degraded",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    [group] = _json(run("scaling-group", "list", "--json"))
    assert group["name"] == "rg"
    assert sorted(group["route_cleanup_statuses"]) == ["degraded", "unhealthy"]
    assert "secret-token" not in run("scaling-group", "list").output
    _fails_with(
        run("scaling-group", "create", "rg"), "NAME: a scaling group named 'rg' exists already"
    )
    _fails_with(
        run("scaling-group", "create", "x", "--app-proxy-addr", "proxy:1"),
        "--app-proxy-addr: 'proxy:1' is not an http(s) URL with a host",
    )


def test_a_deployment_is_created_scaled_shown_and_destroyed(run: Any, engine: sa.Engine) -> None:
    assert run("scaling-group", "create", "rg").exit_code == 0
    created = run(
        "deployment", "create", "svc", "--group", "rg", "--image", "img:1", "--replicas", "2",
        "--env", "A=1", "--health-path", "/health",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    [listed] = _json(run("deployment", "list", "--json"))
    assert (listed["name"], listed["lifecycle"], listed["replica_count"]) == ("svc", "pending", 2)
    with engine.begin() as conn:  # as if the phases had made it ready
        conn.execute(deployments.update().values(lifecycle="ready", desired_replica_count=5))

    assert run("deployment", "scale", "svc", "3").exit_code == 0
    shown = _json(run("deployment", "show", "svc", "--json"))
    assert (shown["lifecycle"], shown["replica_count"], shown["desired_replica_count"]) == (
        "scaling",
        3,
        None,
    )
    [why] = shown["history"]
    assert (why["phase"], why["from_status"], why["to_status"]) == ("operator", "ready", "scaling")
    assert why["message"] == "operator asked: scale to 3"

    assert run("deployment", "destroy", "svc").exit_code == 0
    assert _json(run("deployment", "show", shown["id"], "--json"))["lifecycle"] == "destroying"
    _fails_with(run("deployment", "destroy", "svc"), "DEPLOYMENT: svc is destroying already")
    _fails_with(run("deployment", "scale", "svc", "1"), "DEPLOYMENT: svc is destroying")
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(deployment_history)).scalar() == 2
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["deployment", "create", "s", "--group", "nope", "--image", "i"],
            "--group: no scaling group named 'nope'",
        ),
        (
            ["deployment", "create", "s", "--group", "rg", "--image", "i", "--env", "A"],
            "--env: 'A' is not NAME=VALUE",
        ),
        (
            ["deployment", "create", "s", "--group", "rg", "--image", "i", "--replicas", "-1"],
            "Invalid value for '--replicas': -1 is not in the range x>=0.",
        ),
        (["deployment", "show", "ghost"], "DEPLOYMENT: no deployment named or with id 'ghost'"),
        (
            ["route", "list", "--deployment", "ghost"],
            "--deployment: no deployment named or with id 'ghost'",
        ),
        (
            ["deployment", "list", "--lifecycle", "gone"],
            "Invalid value for '--lifecycle': 'gone' is not one of 'pending', 'scaling', "
            "'ready', 'deploying', 'destroying', 'destroyed'.",
        ),
        (["autoscaling-rule", "remove", "nope"], "RULE_ID: 'nope' is not a rule id (a UUID)"),
        (
            ["phase", "history", "--phase", "routes.nope"],
            "Invalid value for '--phase': 'routes.nope' is not one of",
        ),
    ],
)
def test_bad_input_is_one_line_naming_the_field_and_writes_nothing(
    run: Any, engine: sa.Engine, args: list[str], message: str
) -> None:
    assert run("scaling-group", "create", "rg").exit_code == 0
    result = run(*args)
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"Error: {message}")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(deployments)).scalar() == 0


def test_autoscaling_rules_are_added_listed_and_removed(run: Any) -> None:
    assert run("scaling-group", "create", "rg").exit_code == 0
    assert run("deployment", "create", "svc", "--group", "rg", "--image", "i").exit_code == 0
    added = run(
        "autoscaling-rule", "add", "svc", "--metric-source", "session", "--metric", "cpu",
        "--threshold", "80", "--comparator", "gt", "--step", "1", "--max-replicas", "4",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    [rule] = _json(run("autoscaling-rule", "list", "--deployment", "svc", "--json"))
    assert (rule["metric_name"], rule["comparator"], rule["max_replicas"]) == ("cpu", "gt", 4)
    _fails_with(
        run(
            "autoscaling-rule",
            "add",
            "svc",
            "--metric-source",
            "session",
            "--metric",
            "cpu",
            "--threshold",
            "1",
            "--comparator",
            "gt",
            "--step",
            "0",
        ),
        "--step: must not be 0",
    )
    assert run("autoscaling-rule", "remove", rule["id"]).exit_code == 0
    assert _json(run("autoscaling-rule", "list", "--json")) == []
    _fails_with(
        run("autoscaling-rule", "remove", rule["id"]), f"RULE_ID: no rule with id {rule['id']}"
    )


def test_routes_status_and_phase_history_read_the_record(run: Any) -> None:
    assert run("scaling-group", "create", "rg").exit_code == 0
    assert run("deployment", "create", "svc", "--group", "rg", "--image", "i").exit_code == 0
    assert _json(run("route", "list", "--deployment", "svc", "--json")) == []
    status = _json(run("status", "--json"))
    assert status["deployments"] == {"pending": 1}
    assert status["routes"] == {}
    assert status["last_runs"] == []
    assert _json(run("phase", "history", "--json")) == []
    assert "deployments" in run("status").output


def test_a_store_that_cannot_be_reached_is_one_line_and_exit_1() -> None:
    result = CliRunner().invoke(
        main,
        ["deployment", "list"],
        env={"MODELFLEET_DATABASE_URL": "postgresql+psycopg://postgres:pw@127.0.0.1:1/x"},
    )
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith("Error: deployment list failed: database unavailable:")
    assert "pw" not in line


def test_phase_run_wait_says_at_once_when_no_worker_is_running(
    run: Any, redis_url: str, redis_keys: Any
) -> None:
    result = CliRunner().invoke(
        main,
        ["phase", "run", "routes.provision", "--wait"],
        env={"MODELFLEET_BROKER_URL": redis_url, "MODELFLEET_REDIS_KEY_PREFIX": redis_keys.prefix},
    )
    assert result.exit_code == 1
    assert result.output.strip() == (
        "Error: no Celery worker answered; start one with `celery -A workers worker`"
    )
