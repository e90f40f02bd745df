"""`modelfleet host list | show | cordon | uncordon | drain`: the machines sessions run on."""

from __future__ import annotations

from typing import Any

import click

from workers.cli.output import (
    done,
    emit,
    emit_json,
    emit_records,
    emit_table,
    json_option,
    wide_option,
)
from workers.cli.params import FiniteFloat
from workers.cli.root import CliContext, bad_input, main, reported_failures
from workers.cli.waiting import Deadline, wait_until
from workers.cli.watching import show_or_watch, watch_option
from workers.domain import HostStatus

READY, CORDONED, DRAINING, LOST = (
    HostStatus.READY,
    HostStatus.CORDONED,
    HostStatus.DRAINING,
    HostStatus.LOST,
)


@main.group()
def host() -> None:
    """Hosts: the machines sessions run on (each one's `modelfleet runner` registers it)."""


@host.command("list")
@watch_option
@wide_option
@json_option
@click.pass_obj
def list_hosts(cli: CliContext, watch: float | None, wide: bool, as_json: bool) -> None:
    """Hosts by name: status, sessions (running/slots), seconds since the heartbeat, and
    why a host is not simply ready (REASON)."""
    show_or_watch(lambda: _list(cli, wide, as_json), watch, as_json=as_json)


def _list(cli: CliContext, wide: bool, as_json: bool) -> None:
    with reported_failures("host list"):
        rows = cli.reports.hosts()
    shown = rows if as_json else [_shown(row) for row in rows]
    emit(
        "hosts",
        shown,
        ["name", "address", "status", "sessions", "gpus", "heartbeat", "reason"],
        wide=["intent", "cpus", "memory_gib", "registered_at", "changed_at"] if wide else None,
        as_json=as_json,
    )


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    """A table row: SESSIONS as running/slots ("-": no limit), GPUS as used/total (a
    device counts as used once anything holds it), HEARTBEAT as its age in s."""
    slots = row["slots"] or "-"
    gpus = f"{row['gpus_used']}/{row['gpus_total']}" if row["gpus_total"] else "-"
    return {**row, "sessions": f"{row['sessions']}/{slots}", "gpus": gpus,
            "heartbeat": row["heartbeat_age_s"], "reason": row["condition"] or ""}  # fmt: skip


@host.command("show")
@click.argument("name")
@json_option
@click.pass_obj
def show(cli: CliContext, name: str, as_json: bool) -> None:
    """A host and each of its devices, with what is allocated on it (deployment, route,
    GiB): where the room went."""
    with reported_failures("host show"):
        found = [row for row in cli.reports.hosts() if row["name"] == name]
        if not found:
            bad_input("NAME", f"no host named {name!r}")
        devices = cli.reports.host_devices(name)
    if as_json:
        emit_json({**found[0], "devices": _by_device(devices)})
        return
    emit_records(f"host {name}", [_shown(found[0])],
                 ["name", "address", "status", "sessions", "gpus", "cpus", "memory_gib",
                  "heartbeat", "reason"])  # fmt: skip
    emit_table("devices", devices,
               ["index", "model", "memory_gib", "deployment", "route_id", "held_gib"])  # fmt: skip


def _by_device(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each device once, with the list of what holds it."""
    devices: dict[int, dict[str, Any]] = {}
    for row in rows:
        device = devices.setdefault(row["index"], {
            "index": row["index"], "uuid": row["uuid"], "model": row["model"],
            "memory_gib": row["memory_gib"], "allocated": []})  # fmt: skip
        if row["route_id"] is not None:
            device["allocated"].append({"deployment": row["deployment"],
                                        "route_id": row["route_id"],
                                        "gib": row["held_gib"]})  # fmt: skip
    return list(devices.values())


@host.command("cordon")
@click.argument("name")
@json_option
@click.pass_obj
def cordon(cli: CliContext, name: str, as_json: bool) -> None:
    """Take no new sessions on NAME; its replicas stay."""
    _move(cli, name, CORDONED, {READY, CORDONED}, as_json)


@host.command("uncordon")
@click.argument("name")
@json_option
@click.pass_obj
def uncordon(cli: CliContext, name: str, as_json: bool) -> None:
    """Take new sessions on NAME again (after cordon or drain)."""
    _move(cli, name, READY, {CORDONED, DRAINING, READY}, as_json)


@host.command("drain")
@click.argument("name")
@click.option("--wait", is_flag=True, help="Return when no session of the host is left.")
@click.option("--timeout-s", type=FiniteFloat(min=1), default=600.0, show_default=True,
              help="With --wait: exit 1 saying why after this long.")  # fmt: skip
@json_option
@click.pass_obj
def drain(cli: CliContext, name: str, wait: bool, timeout_s: float, as_json: bool) -> None:
    """Cordon NAME and move each replica off it with no failed request: its replacement
    starts on another host and serves first, then the old one drains."""
    _move(cli, name, DRAINING, {READY, CORDONED, DRAINING}, as_json, say=not wait)
    if wait:
        left = _wait_empty(cli, name, timeout_s)
        document = {"host": name, "status": left["status"], "sessions": left["sessions"]}
        done(f"host {name} drained: no session left", document, as_json=as_json)


def _move(
    cli: CliContext,
    name: str,
    to: HostStatus,
    allowed: set[HostStatus],
    as_json: bool,
    *,
    say: bool = True,
) -> None:
    with reported_failures(f"host {to.value}"):
        moved = cli.catalog.move_host(name, to, allowed)
    if moved is None:
        bad_input("NAME", f"no host named {name!r}; see `modelfleet host list`")
    had, status = moved
    if had not in allowed:
        bad_input("NAME", f"host {name} is {had.value}; only a host that is "
                  f"{' or '.join(sorted(s.value for s in allowed))} can be so moved")  # fmt: skip
    said = f"host {name} is {to.value}"
    if status is not to:
        said = f"host {name} is {status.value}; it will be {to.value} when it is back"
    if say:
        done(said, {"host": name, "status": status.value}, as_json=as_json)


def _wait_empty(cli: CliContext, name: str, timeout_s: float) -> dict[str, Any]:
    """Until the drain moved every session off; a host lost meanwhile had its sessions
    given up, not moved: that is a failed drain, said at once."""

    def read() -> dict[str, Any]:
        with reported_failures("host drain --wait"):
            [row] = [r for r in cli.reports.hosts() if r["name"] == name]
        if row["status"] == LOST:
            raise click.ClickException(
                f"host {name} was lost during the drain: its sessions were given up, not moved"
            )
        reason = cli.reports.host_history(name, limit=1)
        return {**row, "why": reason[0]["message"] if reason else ""}

    def describe(row: dict[str, Any]) -> tuple[str, str]:
        return f"host {name} not drained", f"{row['sessions']} sessions left; {row['why']}"

    def drained(row: dict[str, Any]) -> bool:
        return bool(row["sessions"] == 0 and row["status"] == DRAINING)

    return wait_until(read, drained, Deadline(timeout_s), describe)
