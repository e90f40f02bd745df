"""What each host holds: its live sessions per deployment, the GiB they hold on each of
its devices, their cores and memory, and the deployments moving a replica off it; the
load placement decides by.

A session is on the host the controller placed it on (`placed_on`), or, unplaced, on the
one whose agent claimed it (`runner`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from workers.adapters.postgres.schema import hosts, routes, sessions
from workers.adapters.postgres.terms import LIVE_SESSION, SESSION_HOST
from workers.domain import Device, HostInfo, HostStatus


@dataclass
class HostLoad:
    per_deployment: Counter[UUID] = field(default_factory=Counter)
    device_used_gib: dict[int, float] = field(default_factory=dict)
    cpus: float = 0.0
    memory_gib: float = 0.0
    moving_off: set[UUID] = field(default_factory=set)


def host_columns() -> list[sa.ColumnElement[Any]]:
    """A host's row, with its heartbeat's age by the database clock."""
    age = sa.func.extract("epoch", sa.func.now() - hosts.c.last_heartbeat_at)
    return [*hosts.c, age.label("heartbeat_age_s")]


def host_from_row(row: sa.RowMapping, load: HostLoad | None = None) -> HostInfo:
    """A host as its row says, with what its live sessions hold (`host_loads`)."""
    load = load or HostLoad()
    return HostInfo(
        id=row["id"],
        name=row["name"],
        address=row["address"],
        status=HostStatus(row["status"]),
        slots=row["slots"],
        heartbeat_age_s=float(row["heartbeat_age_s"]),
        sessions=sum(load.per_deployment.values()),
        per_deployment=dict(load.per_deployment),
        changed_at=row["changed_at"],
        intent=HostStatus(row["intent"]),
        condition=row["condition"],
        probes_failing=row["probes_failing_since"] is not None,
        devices=tuple(Device.from_json(d) for d in row["devices"]),
        device_used_gib=dict(load.device_used_gib),
        cpus=float(row["cpus"]),
        memory_gib=float(row["memory_gib"]),
        cpus_used=load.cpus,
        memory_used_gib=load.memory_gib,
        moving_off=frozenset(load.moving_off),
    )


def host_loads(conn: sa.Connection, *, lock: bool = False) -> list[HostInfo]:
    """Every host with what its live sessions hold; `lock` holds the host rows for this
    transaction, so that placements made at the same time see each other."""
    query = sa.select(*host_columns()).order_by(hosts.c.name)
    if lock:
        query = query.with_for_update(of=hosts)
    found = list(conn.execute(query).mappings())
    if not found:
        return []
    loads: defaultdict[str, HostLoad] = defaultdict(HostLoad)
    _count_sessions(conn, loads)
    _count_devices(conn, loads)
    _note_moving(conn, loads)
    return [host_from_row(row, loads.get(row["name"])) for row in found]


def _count_sessions(conn: sa.Connection, loads: defaultdict[str, HostLoad]) -> None:
    counted = (
        sa.select(SESSION_HOST.label("host"), routes.c.deployment_id, sa.func.count(),
                  sa.func.sum(sessions.c.cpus), sa.func.sum(sessions.c.memory_gib))
        .join(routes, routes.c.id == sessions.c.route_id)
        .where(LIVE_SESSION, SESSION_HOST.is_not(None))
        .group_by(SESSION_HOST, routes.c.deployment_id)
    )  # fmt: skip
    for host, deployment_id, count, cpus, memory_gib in conn.execute(counted):
        load = loads[host]
        load.per_deployment[deployment_id] = count
        load.cpus += float(cpus or 0)
        load.memory_gib += float(memory_gib or 0)


def _count_devices(conn: sa.Connection, loads: defaultdict[str, HostLoad]) -> None:
    device = sa.func.unnest(sessions.c.gpu_devices).label("device")
    held = (
        sa.select(SESSION_HOST.label("host"), device, sessions.c.gpu_gib)
        .where(LIVE_SESSION, SESSION_HOST.is_not(None), sessions.c.gpu_devices.is_not(None))
        .subquery()
    )
    summed = sa.select(held.c.host, held.c.device, sa.func.sum(held.c.gpu_gib)).group_by(
        held.c.host, held.c.device
    )
    for host, index, gib in conn.execute(summed):
        loads[host].device_used_gib[int(index)] = float(gib)


def _note_moving(conn: sa.Connection, loads: defaultdict[str, HostLoad]) -> None:
    moving = (
        sa.select(SESSION_HOST, routes.c.deployment_id)
        .join(routes, routes.c.session_id == sessions.c.id)
        .where(LIVE_SESSION, routes.c.moving_since.is_not(None))
    )
    for host, deployment_id in conn.execute(moving):
        loads[host].moving_off.add(deployment_id)
