"""`celery -A workers ...` with a bad setting: one line naming the variable, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize("command", [["worker"], ["beat"], ["call", "routes.drain"]])
def test_a_bad_variable_stops_celery_with_one_line_naming_it(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "workers", *command],
        env={**os.environ, "MODELFLEET_PHASE_DEADLINE_S": "nan"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert (done.stdout + done.stderr).strip().splitlines() == [
        "Error: MODELFLEET_PHASE_DEADLINE_S: must be a finite number, got 'nan'"
    ]


def test_from_workers_import_app_gives_the_celery_app_even_after_its_module_was_imported() -> None:
    script = (
        "import workers.celery, tasks\n"
        "from workers import app, celery_app\n"
        "from celery import Celery\n"
        "assert isinstance(app, Celery) and app is celery_app, type(app)\n"
        "print(app.main, callable(app.send_task))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["modelfleet", "True"]
