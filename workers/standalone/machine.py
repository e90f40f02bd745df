"""This machine as the host agent sees it: a free port for a new session, whether a process
still runs, and what a session is told through its environment."""

from __future__ import annotations

import os
import socket
from pathlib import Path

PORT_VARIABLE = "PORT"  # the runner says which port a session listens on
BIND_HOST_VARIABLE = "BIND_HOST"  # ... and, when others reach it by name, on which interface


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def process_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc to ask: the signal check is all there is
    return state != "Z"
