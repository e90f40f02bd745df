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
