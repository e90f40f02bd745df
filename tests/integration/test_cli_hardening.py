"""CLI defects found by hostile input (issue: hardening), each against real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from tests.factories import make_deployment, make_route
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.schema import (
    autoscaling_rules,
    deployment_history,
    deployments,
    sessions,
)
from workers.adapters.redis.keys import RedisKeys
from workers.domain import DeploymentLifecycle, RouteStatus
from workers.program import main


def _refused(result: Result, field: str) -> str:
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"Error: {field}: "), line
    return line


def _count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


@pytest.mark.parametrize("token", ["s3cr3t en", "s3cr3t-tok\n", "tab\there", "bell\x07", ""])
def test_a_token_with_whitespace_or_control_characters_is_refused_and_not_stored(
    run: Any, token: str
) -> None:
    line = _refused(
        run("scaling-group", "create", "rg", "--app-proxy-addr", "http://p:1",
            "--app-proxy-token", token),
        "--app-proxy-token",
    )  # fmt: skip
    if token.strip():
        assert token.strip() not in line
    assert json.loads(run("scaling-group", "list", "--json").stdout) == []


@pytest.mark.parametrize(
    "name", [str(uuid.uuid4()), "Upper", "has space", "[/oops]", "9starts-with-digit", "x" * 64, ""]
)
def test_names_must_be_dns_labels_and_never_uuid_shaped(
    run: Any, engine: sa.Engine, name: str
) -> None:
    assert run("scaling-group", "create", "rg").exit_code == 0
    _refused(run("deployment", "create", name, "--group", "rg", "--image", "i"), "NAME")
    _refused(run("scaling-group", "create", name), "NAME")
    assert _count(engine, deployments) == 0


def test_an_id_always_wins_over_a_name_that_looks_like_it(
    run: Any, catalog: Catalog, engine: sa.Engine
) -> None:
    catalog.create_scaling_group("sg1")
    victim = catalog.create_deployment(make_deployment(lifecycle=DeploymentLifecycle.READY))
    # Stored before such names were refused: named with the victim's id.
    impostor = catalog.create_deployment(
        make_deployment(name=str(victim.id), lifecycle=DeploymentLifecycle.READY)
    )
    assert run("deployment", "destroy", str(victim.id)).exit_code == 0
    with engine.connect() as conn:
        lifecycles = dict(conn.execute(sa.select(deployments.c.id, deployments.c.lifecycle)).all())
    assert lifecycles == {victim.id: "destroying", impostor.id: "ready"}


def test_names_with_markup_or_control_characters_are_shown_as_text(
    run: Any, catalog: Catalog
) -> None:
    catalog.create_scaling_group("sg1")
    catalog.create_deployment(make_deployment(name="[/oops] [bold]x\x1b[31m"))
    for command in (
        ["deployment", "list"],
        ["route", "list"],
        ["deployment", "show", "[/oops] [bold]x\x1b[31m"],
    ):
        shown = run(*command)
        assert shown.exit_code == 0, shown.output
        assert "\x1b" not in shown.output
    assert "[/oops] [bold]x\\x1b[31m" in run("deployment", "list").output


@pytest.mark.parametrize("lifecycle", [DeploymentLifecycle.PENDING, DeploymentLifecycle.SCALING])
def test_scaling_a_deployment_that_is_not_ready_leaves_a_history_row(
    run: Any, catalog: Catalog, engine: sa.Engine, lifecycle: DeploymentLifecycle
) -> None:
    catalog.create_scaling_group("sg1")
    found = catalog.create_deployment(make_deployment(name="svc", lifecycle=lifecycle))
    assert run("deployment", "scale", "svc", "3").exit_code == 0
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(deployment_history.c.phase, deployment_history.c.to_status,
                      deployment_history.c.message)
            .where(deployment_history.c.deployment_id == found.id)
        ).all()  # fmt: skip
        replicas = conn.execute(sa.select(deployments.c.replica_count)).scalar_one()
    assert replicas == 3
    assert [tuple(r) for r in rows] == [("operator", lifecycle.value, "operator asked: scale to 3")]


@pytest.mark.parametrize("number", ["nan", "inf", "-inf", "1e400"])
def test_nan_and_infinity_are_refused_where_a_number_comes_in(
    run: Any, catalog: Catalog, engine: sa.Engine, number: str
) -> None:
    catalog.create_scaling_group("sg1")
    catalog.create_deployment(make_deployment(name="svc"))
    _refused(
        run("autoscaling-rule", "add", "svc", "--metric-source", "session", "--metric", "cpu",
            "--threshold", number, "--comparator", "gt", "--step", "1"),
        "Invalid value for '--threshold'",
    )  # fmt: skip
    _refused(
        run("deployment", "create", "other", "--group", "sg1", "--image", "i", "--drain-s", number),
        "Invalid value for '--drain-s'",
    )
    assert _count(engine, autoscaling_rules) == 0


def test_deployment_show_gives_the_exit_code_and_last_output_of_sessions_that_exited(
    run: Any, catalog: Catalog, engine: sa.Engine
) -> None:
    catalog.create_scaling_group("sg1")
    found = catalog.create_deployment(make_deployment(name="svc"))
    route = make_route(found, status=RouteStatus.TERMINATED)
    catalog.add_routes([route])
    with engine.begin() as conn:
        conn.execute(
            sessions.insert().values(
                id=uuid.uuid4(), route_id=route.id, name="s", spec={}, status="ERROR",
                exit_code=3, last_output="Traceback ...\nOSError: no GPU",
                terminated_at=sa.func.now(),
            )
        )  # fmt: skip
    shown = json.loads(run("deployment", "show", "svc", "--json").stdout)
    [exited] = shown["exited_sessions"]
    assert (exited["exit_code"], exited["last_output"]) == (3, "Traceback ...\nOSError: no GPU")
    table = run("deployment", "show", "svc").output
    assert "OSError: no GPU" in table, table


def test_version_short_help_and_a_group_alone_print_what_a_person_expects(run: Any) -> None:
    version = run("--version")
    assert version.exit_code == 0
    assert version.output.startswith("modelfleet, version ")
    alone = run("deployment")
    assert alone.exit_code == 0, alone.output
    first = alone.output.splitlines()[0]  # the program is "main" under CliRunner
    assert first.startswith("Usage: ")
    assert first.endswith(" deployment [OPTIONS] COMMAND [ARGS]...")
    assert "Error" not in alone.output
    short = run("deployment", "update", "-h")
    assert short.exit_code == 0
    assert "--max-surge" in short.output


def test_a_database_never_migrated_says_to_run_db_upgrade(
    create_database: Callable[[], str], redis_url: str
) -> None:
    env = {"MODELFLEET_DATABASE_URL": create_database(), "MODELFLEET_REDIS_URL": redis_url}
    listed = CliRunner().invoke(main, ["deployment", "list"], env=env)
    assert listed.exit_code == 1
    assert listed.output.strip().splitlines() == [
        "Error: deployment list failed: the database has no modelfleet tables; "
        "run `modelfleet db upgrade`"
    ]


def test_phase_run_json_without_wait_prints_json(
    engine: sa.Engine, redis_url: str, redis_keys: RedisKeys
) -> None:
    env = {
        "MODELFLEET_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "MODELFLEET_REDIS_URL": redis_url,
        "MODELFLEET_BROKER_URL": redis_url,
        "MODELFLEET_RESULT_BACKEND": redis_url,
        "MODELFLEET_REDIS_KEY_PREFIX": redis_keys.prefix,  # the queued message goes with it
    }
    queued = CliRunner().invoke(main, ["phase", "run", "routes.drain", "--json"], env=env)
    assert queued.exit_code == 0, queued.output
    document = json.loads(queued.stdout)
    assert (document["phase"], document["queued"]) == ("routes.drain", True)
    assert uuid.UUID(document["task_id"])


def test_every_write_command_takes_json_and_carries_the_ids(run: Any) -> None:
    def write(*args: str) -> Any:
        result = run(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    assert write("scaling-group", "create", "rg") == {"scaling_group": "rg"}
    created = write("deployment", "create", "svc", "--group", "rg", "--image", "i")
    assert (created["deployment"], created["lifecycle"]) == ("svc", "pending")
    assert uuid.UUID(created["id"])
    assert write("deployment", "scale", "svc", "2")["replicas"] == 2
    rule = write("autoscaling-rule", "add", "svc", "--metric-source", "session", "--metric",
                 "cpu", "--threshold", "80", "--comparator", "gt", "--step", "1")  # fmt: skip
    assert write("autoscaling-rule", "remove", rule["rule"]) == {
        "rule": rule["rule"],
        "removed": True,
    }
    assert write("deployment", "destroy", "svc")["lifecycle"] == "destroying"


def test_replica_counts_have_a_ceiling_and_a_floor(run: Any, engine: sa.Engine) -> None:
    assert run("scaling-group", "create", "rg").exit_code == 0
    _refused(
        run("deployment", "create", "svc", "--group", "rg", "--image", "i", "--replicas", "101"),
        "--replicas",
    )
    assert run("deployment", "create", "svc", "--group", "rg", "--image", "i").exit_code == 0
    line = _refused(run("deployment", "scale", "svc", "1000000000"), "REPLICAS")
    assert "MODELFLEET_MAX_REPLICAS (100)" in line
    _refused(run("deployment", "scale", "svc", "-1"), "Invalid value for 'REPLICAS'")
    with engine.connect() as conn:
        assert conn.execute(sa.select(deployments.c.replica_count)).scalar() == 1


@pytest.mark.parametrize(
    ("addr", "problem"),
    [
        ("http://", "is not an http(s) URL with a host"),
        ("http://exa mple:99999/x y", "has spaces or control characters"),
        ("http://proxy:99999", "has no valid port (1-65535)"),
        ("ftp://proxy", "is not an http(s) URL with a host"),
    ],
)
def test_an_app_proxy_address_that_cannot_be_called_is_refused(
    run: Any, addr: str, problem: str
) -> None:
    """They were stored, then retried forever as "no answer"."""
    line = _refused(
        run("scaling-group", "create", "rg", "--app-proxy-addr", addr), "--app-proxy-addr"
    )
    assert line.endswith(problem)
    assert json.loads(run("scaling-group", "list", "--json").stdout) == []


def test_a_rule_needs_a_metric_name_and_a_live_deployment(run: Any, catalog: Catalog) -> None:
    catalog.create_scaling_group("sg1")
    catalog.create_deployment(make_deployment(name="svc"))
    catalog.create_deployment(make_deployment(name="gone", lifecycle=DeploymentLifecycle.DESTROYED))
    rule = ["--metric-source", "session", "--threshold", "1", "--comparator", "gt", "--step", "1"]
    _refused(run("autoscaling-rule", "add", "svc", "--metric", "", *rule), "--metric")
    _refused(run("autoscaling-rule", "add", "svc", "--metric", "a b", *rule), "--metric")
    _refused(run("autoscaling-rule", "add", "gone", "--metric", "cpu", *rule), "DEPLOYMENT")
    assert json.loads(run("autoscaling-rule", "list", "--json").stdout) == []


def test_deployment_list_says_how_many_serve_and_why_not(
    run: Any, catalog: Catalog, run_phase: Callable[[str], object]
) -> None:
    """A deployment in a group without an app proxy once sat pending with nothing said.
    The controller says why (`deployments.check_pending`); the CLI prints it."""
    catalog.create_scaling_group("no-proxy")
    catalog.create_scaling_group("sg1", app_proxy_addr="http://proxy:1", app_proxy_api_token="t")
    catalog.create_deployment(make_deployment(name="stuck", resource_group="no-proxy"))
    serving = catalog.create_deployment(
        make_deployment(name="half", replica_count=2, lifecycle=DeploymentLifecycle.READY)
    )
    catalog.add_routes([make_route(serving, status=RouteStatus.HEALTHY),
                        make_route(serving, status=RouteStatus.UNHEALTHY)])  # fmt: skip
    unseen = {r["name"]: r for r in json.loads(run("deployment", "list", "--json").stdout)}
    assert unseen["stuck"]["reason"] == "not registered yet: the controller has not run"
    run_phase("deployments.check_pending")
    rows = {r["name"]: r for r in json.loads(run("deployment", "list", "--json").stdout)}
    assert (rows["stuck"]["ready"], rows["stuck"]["reason"]) == (
        "0/1", "resource group no-proxy has no app proxy address: endpoint not registered; waiting",
    )  # fmt: skip
    assert (rows["half"]["ready"], rows["half"]["reason"]) == ("1/2", "1 of 2 replicas not healthy")
    shown = json.loads(run("deployment", "show", "stuck", "--json").stdout)
    assert shown["reason"].startswith("resource group no-proxy has no app proxy address")
    assert run("deployment", "list").exit_code == 0


@pytest.mark.parametrize("wait", [[], ["--wait"]])
@pytest.mark.parametrize("broker", ["redis://127.0.0.1:1/0", "amqp://guest:guest@127.0.0.1:1//"])
def test_phase_run_with_the_broker_down_is_one_line_and_exit_1(
    engine: sa.Engine, broker: str, wait: list[str]
) -> None:
    env = {
        "MODELFLEET_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "MODELFLEET_BROKER_URL": broker,
    }
    result = CliRunner().invoke(main, ["phase", "run", "routes.drain", *wait], env=env)
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith("Error: phase run routes.drain failed: the broker cannot be reached (")
    assert line.endswith("); check MODELFLEET_BROKER_URL")


def test_wait_gives_up_after_timeout_saying_where_the_deployment_is_and_why(
    run: Any, catalog: Catalog, run_phase: Callable[[str], object]
) -> None:
    catalog.create_scaling_group("no-proxy")
    created = run("deployment", "create", "stuck", "--group", "no-proxy", "--image", "m",
                  "--wait", "--timeout-s", "1")  # fmt: skip
    assert created.exit_code == 1
    assert created.output.strip().splitlines() == [
        "Error: stuck not serving after 1 s (--timeout-s); it is pending, 0/1 ready "
        "(not registered yet: the controller has not run)"
    ]
    run_phase("deployments.check_pending")  # the controller looks at it, and says why
    again = run("deployment", "scale", "stuck", "1", "--wait", "--timeout-s", "1")
    assert again.output.strip().splitlines() == [
        "Error: stuck not serving after 1 s (--timeout-s); it is pending, 0/1 ready "
        "(resource group no-proxy has no app proxy address: endpoint not registered; waiting)"
    ]
    assert run("deployment", "show", "stuck").exit_code == 0  # created; only the wait ended
    scaled = run("deployment", "scale", "stuck", "2", "--wait", "--timeout-s", "1")
    assert scaled.exit_code == 1
    assert "Error: stuck not serving after 1 s (--timeout-s); it is pending, 0/2" in scaled.output
    destroyed = run("deployment", "destroy", "stuck", "--wait", "--timeout-s", "1")
    assert destroyed.exit_code == 1
    assert destroyed.output.startswith("Error: stuck not destroyed after 1 s (--timeout-s); ")
