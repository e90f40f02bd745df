"""A process known by what makes it unique on its machine: its pid, the time it started
(clock ticks since boot, from `/proc/<pid>/stat`) and the machine's boot id.

A bare pid names whatever process holds it now: after a container restart (a fresh pid
namespace hands out the same small pids), a reboot or pid wrap-around, a recorded pid
may belong to another session's model server, a daemon, or the agent's own thread.
The agent signals, adopts or fences a process only when its identity matches what it
recorded; a mismatch means the session's process is gone (Kubernetes knows containers
by id, systemd services by cgroup, never by pid).

Every session's process is also tagged in its environment (`MODELFLEET_SESSION_ID`), so
an agent that restarted between starting a process and recording it finds it again
(`tagged_processes`) instead of starting a second one.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SESSION_VARIABLE = "MODELFLEET_SESSION_ID"  # in every session process's environment
_STARTTIME_FIELD = 19  # /proc/<pid>/stat's 22nd field, counted after "pid (comm)"
_STATE_FIELD = 0


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    started_ticks: int  # clock ticks after boot when the process started
    boot_id: str


@cache
def boot_id() -> str:
    """This machine's boot id (one per boot: start ticks restart at each)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def identify(pid: int) -> ProcessIdentity | None:
    """The identity of the live process `pid` (None: no such process, or a zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[_STATE_FIELD] == "Z":
        return None
    return ProcessIdentity(pid, int(fields[_STARTTIME_FIELD]), boot_id())


def is_running(identity: ProcessIdentity) -> bool:
    """Whether the process the identity names runs: the same pid, started at the same
    tick, in the same boot."""
    return identify(identity.pid) == identity


def environment_of(pid: int) -> dict[str, str]:
    """A process's environment as it started ({} when it cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (entry.split(b"=", 1) for entry in raw.split(b"\0") if b"=" in entry)
    return {key.decode(errors="replace"): value.decode(errors="replace") for key, value in pairs}


def tagged_processes(session_ids: Collection[str]) -> dict[str, ProcessIdentity]:
    """The live processes tagged with one of `session_ids` (session id -> the oldest, the
    session's own: its children inherit the tag), scanning `/proc` once."""
    wanted = set(session_ids)
    found: dict[str, ProcessIdentity] = {}
    if not wanted:
        return found
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        tag = environment_of(int(entry.name)).get(SESSION_VARIABLE)
        identity = identify(int(entry.name)) if tag in wanted else None
        if tag is None or identity is None:
            continue
        known = found.get(tag)
        if known is None or identity.started_ticks < known.started_ticks:
            found[tag] = identity
    return found
