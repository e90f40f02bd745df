"""Where each entity kind a phase works on lives in PostgreSQL: one record per kind.

Its status column (the table is the column's), the order a run fans its rows out in,
and how its rows are loaded as entities, their statuses read and their transitions
applied. A new kind is one record here (and its value in `EntityKind`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from workers.adapters.postgres import phase_targets, transitions
from workers.adapters.postgres.schema import deployments, hosts, routes
from workers.domain import EntityKind


@dataclass(frozen=True)
class StoredKind:
    status: sa.Column[Any]
    order: tuple[sa.ColumnElement[Any], ...]
    # (connection, statuses, ids or None for all) -> entities, in `order`
    load: Callable[[sa.Connection, AbstractSet[Any], Collection[UUID] | None], list[Any]]
    # (connection, ids) -> id -> (status value, retry count): all a run's close reads
    statuses: Callable[[sa.Connection, Collection[UUID]], transitions.Statuses]
    # (connection, transitions) -> the ids whose guard held (status and history written)
    apply: Callable[[sa.Connection, Sequence[Any]], list[UUID]]


STORED_KINDS: Mapping[EntityKind, StoredKind] = MappingProxyType(
    {
        EntityKind.ROUTE: StoredKind(
            status=routes.c.status,
            order=(routes.c.created_at, routes.c.id),
            load=phase_targets.load_routes,
            statuses=transitions.route_statuses,
            apply=transitions.apply_route_transitions,
        ),
        EntityKind.DEPLOYMENT: StoredKind(
            status=deployments.c.lifecycle,
            order=(deployments.c.created_at, deployments.c.id),
            load=phase_targets.load_deployments,
            statuses=transitions.deployment_statuses,
            apply=transitions.apply_deployment_transitions,
        ),
        EntityKind.HOST: StoredKind(
            status=hosts.c.status,
            order=(hosts.c.name,),
            load=phase_targets.load_hosts,
            statuses=transitions.host_statuses,
            apply=transitions.apply_host_transitions,
        ),
    }
)
