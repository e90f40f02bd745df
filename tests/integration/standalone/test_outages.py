"""The reference daemons ride out a dead store: alive, one line, no traceback per pass."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workers.devtools.processes import Process, wait_for

DEAD_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
DEAD_REDIS = "redis://127.0.0.1:1/0"


@pytest.mark.parametrize(
    ("daemon", "env"),
    [
        ("runner", {"MODELFLEET_DATABASE_URL": DEAD_DATABASE}),
        ("prober", {"MODELFLEET_DATABASE_URL": DEAD_DATABASE, "MODELFLEET_REDIS_URL": DEAD_REDIS}),
        ("collector", {"MODELFLEET_DATABASE_URL": DEAD_DATABASE}),
    ],
)
def test_a_daemon_keeps_running_through_an_outage_and_says_so_once(
    daemon: str, env: dict[str, str], tmp_path: Path
) -> None:
    argv = [sys.executable, "-m", "workers.cli", daemon]
    process = Process(daemon, argv, {**os.environ, **env}, tmp_path)
    try:  # its line, however busy the machine (a fixed 4 s was once too short)
        wait_for(process.log_path.read_text, lambda log: "retrying with back-off" in log,
                 timeout_s=60, what=f"the {daemon}'s outage line")  # fmt: skip
        time.sleep(1)  # a pass or two more: said once, not once per pass
        assert process.popen.poll() is None, process.log_path.read_text()
    finally:
        process.stop()
    log = process.log_path.read_text()
    assert "Traceback" not in log
    assert sum("retrying with back-off" in line for line in log.splitlines()) == 1, log


@pytest.mark.parametrize("command", [["service-discovery", "serve"], ["proxy"]])
def test_a_port_in_use_is_one_line_and_exit_1(command: list[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "workers.cli", *command, f"--port={port}"],
            env={**os.environ, "MODELFLEET_PROXY_TOKEN": "a-token"},
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert "already in use" in line
    assert "Traceback" not in done.stderr
