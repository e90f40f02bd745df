"""Every case of the operator-contract issue, run as a person runs it (a real process):
the documented exit code, one `Error:` line naming the field or variable, and never a
Python traceback, not even one printed at interpreter exit."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from workers.devtools.processes import celery, modelfleet

Case = tuple[list[str], dict[str, str], int, str]  # argv, env, exit code, what stderr names


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


def _cases(port: int, empty_database: str) -> list[Case]:
    deployment = ["deployment", "create", "ok", "--group", "g", "--image", "i"]
    return [
        (["status"], {"MODELFLEET_PHASE_DEADLINE_S": "inf"}, 2, "MODELFLEET_PHASE_DEADLINE_S"),
        (["status"], {"MODELFLEET_PHASE_DEADLINE_S": "nan"}, 2, "MODELFLEET_PHASE_DEADLINE_S"),
        (["status"], {"MODELFLEET_MAX_REPLICAS": "1e400"}, 2, "MODELFLEET_MAX_REPLICAS"),
        (["status"], {"MODELFLEET_DATABASE_URL": "mysql://u@h/db"}, 2, "MODELFLEET_DATABASE_URL"),
        (["status"], {"MODELFLEET_DATABASE_URL": "notaurl"}, 2, "MODELFLEET_DATABASE_URL"),
        (["status"], {"MODELFLEET_SD_HTTP_PORT": "99999"}, 2, "MODELFLEET_SD_HTTP_PORT"),
        (["phase", "run", "routes.drain"], {"MODELFLEET_BROKER_URL": "redis://127.0.0.1:1/0"},
         1, "MODELFLEET_BROKER_URL"),
        (["phase", "run", "routes.drain", "--wait"],
         {"MODELFLEET_BROKER_URL": "redis://127.0.0.1:1/0"}, 1, "MODELFLEET_BROKER_URL"),
        (["service-discovery", "serve", "--port", str(port)], {}, 1, "service-discovery serve"),
        (["proxy", "--port", str(port)], {"MODELFLEET_PROXY_TOKEN": "t0ken"}, 1, "proxy"),
        (["deployment", "list"], {"MODELFLEET_DATABASE_URL": empty_database}, 1,
         "modelfleet db upgrade"),
        (["deployment", "create", "Bad Name", *deployment[3:]], {}, 2, "NAME"),
        (["deployment", "create", "x" * 10_000, *deployment[3:]], {}, 2, "NAME"),
        (["deployment", "scale", "ok", "1000000000"], {}, 2, "REPLICAS"),
        (["deployment", "scale", "ok", "-1"], {}, 2, "REPLICAS"),
        (["deployment", "create", "ok", "--group", "g", "--image", "i", "--drain-s", "nan"], {},
         2, "--drain-s"),
        (["scaling-group", "create", "g2", "--app-proxy-addr", "http://"], {}, 2,
         "--app-proxy-addr"),
        (["scaling-group", "create", "g3", "--app-proxy-addr", "http://exa mple:99999/x y"], {},
         2, "--app-proxy-addr"),
        (["autoscaling-rule", "add", "ok", "--metric", "", "--metric-source", "session",
          "--threshold", "1", "--comparator", "gt", "--step", "1"], {}, 2, "--metric"),
        (["deployment", "create", "late", "--group", "g", "--image", "i", "--wait",
          "--timeout-s", "1"], {}, 1, "--timeout-s"),
        (["status", "--watch", "--json"], {}, 2, "--watch"),
        # The export line of a `modelfleet dev` that has stopped, still in the shell:
        (["dev"], {"MODELFLEET_DATABASE_URL": "postgresql+psycopg://u:pw@127.0.0.1:1/x"}, 1,
         "MODELFLEET_DATABASE_URL"),
        (["dev"], {"MODELFLEET_REDIS_URL": "redis://127.0.0.1:1/0"}, 1, "MODELFLEET_REDIS_URL"),
        (["runner", "--log-level", "LOUD"], {}, 2, "--log-level"),
        (["status"], {"MODELFLEET_LOG_LEVEL": "LOUD"}, 2, "MODELFLEET_LOG_LEVEL"),
    ]  # fmt: skip


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip


def test_no_case_of_the_contract_prints_a_traceback(
    run_env: dict[str, str],
    taken_port: int,
    create_database: Callable[[], str],
    engine: sa.Engine,
) -> None:
    env = {**os.environ, **run_env}
    setup = _run(modelfleet("scaling-group", "create", "g"), env)
    assert setup.returncode == 0, setup.stderr
    assert _run(modelfleet("deployment", "create", "ok", "--group", "g", "--image", "i"),
                env).returncode == 0  # fmt: skip
    cases = _cases(taken_port, create_database())
    with ThreadPoolExecutor(max_workers=4) as pool:  # several wait on a dead broker
        ran = list(pool.map(lambda case: _run(modelfleet(*case[0]), {**env, **case[1]}), cases))
    failures = []
    for (argv, _, code, names), done in zip(cases, ran, strict=True):
        lines = done.stderr.strip().splitlines()
        if (
            "Traceback" in done.stdout + done.stderr
            or done.returncode != code
            or len(lines) != 1
            or not lines[0].startswith("Error: ")
            or names not in lines[0]
        ):
            failures.append((argv[:4], done.returncode, done.stderr[-600:]))
    assert failures == []


@pytest.mark.parametrize("argv", [["deployment"], ["--version"], ["-h"], ["phase", "-h"]])
def test_help_and_version_exit_0_quietly(run_env: dict[str, str], argv: list[str]) -> None:
    done = _run(modelfleet(*argv), {**os.environ, **run_env})
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.strip()


def test_celery_with_a_bad_variable_prints_no_traceback(run_env: dict[str, str]) -> None:
    env = {**os.environ, **run_env, "MODELFLEET_TASK_TIME_LIMIT_S": "1e400"}
    done = _run([*celery("beat")], env)
    assert done.returncode == 2
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.strip().startswith("Error: MODELFLEET_TASK_TIME_LIMIT_S")
