"""`SchedulingController` on the `sessions` table: the contract with whatever runs model servers.

modelfleet writes PENDING rows and termination requests; a host's agent claims
the PENDING rows placed on it, starts the model server, and reports RUNNING
(with host and port), ERROR or TERMINATED. A partial unique index allows one
live session per route, so an enqueue repeated by a redelivered task, or racing
another worker, returns the session that exists instead of starting a second.

Placement is the controller's (`workers.policies.placement`): while hosts are registered,
each new session is placed on one (`placed_on`), under a lock on the host rows so
that concurrent placements see each other; with no host registered at all (another
scheduler, like Backend.AI's) sessions are left unplaced.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from workers.adapters.postgres.bulk import any_of
from workers.adapters.postgres.engine import transaction
from workers.adapters.postgres.host_loads import host_loads
from workers.adapters.postgres.schema import (
    LIVE_SESSION_PREDICATE,
    TERMINAL_SESSION_STATUSES,
    scaling_groups,
    sessions,
)
from workers.adapters.postgres.terms import LIVE_SESSION
from workers.domain import (
    Allocation,
    PlacementMode,
    ResourceRequest,
    SessionId,
    SessionSpec,
    SessionStatus,
)
from workers.errors import NoHostAvailable
from workers.policies.placement import Placer

# Sessions nobody has started yet are cancelled outright; the others must be stopped.
_NOT_STARTED = (SessionStatus.PENDING.value, SessionStatus.SCHEDULED.value)
_STOPPED_OR_STOPPING = (*TERMINAL_SESSION_STATUSES, SessionStatus.TERMINATING.value)
_LIVE = LIVE_SESSION


class SessionTableScheduler:
    def __init__(self, *, engine: sa.Engine) -> None:
        self._engine = engine

    def enqueue_session(self, spec: SessionSpec) -> SessionId:
        """A PENDING session for `spec.route_id`, or the route's live session if it has one;
        `NoHostAvailable` when hosts are registered and none has room."""
        existing = sa.select(sessions.c.id).where(sessions.c.route_id == spec.route_id, _LIVE)
        with transaction(self._engine) as conn:
            found = conn.execute(existing).scalar_one_or_none()
            if found is not None:
                return SessionId(found)
            statement = (
                insert(sessions)
                .values(
                    id=uuid.uuid4(),
                    route_id=spec.route_id,
                    name=spec.name,
                    status=SessionStatus.PENDING.value,
                    spec=_spec_json(spec),
                    **_placement_values(_place(conn, spec)),
                )
                .on_conflict_do_nothing(
                    index_elements=[sessions.c.route_id],
                    index_where=sa.text(LIVE_SESSION_PREDICATE),
                )
                .returning(sessions.c.id)
            )
            # Two tries: the live session we collided with may finish before we read it.
            for _ in range(2):
                created = conn.execute(statement).scalar_one_or_none()
                if created is not None:
                    return SessionId(created)
                # The conflict waited for the other writer to commit: its row is visible now.
                found = conn.execute(existing).scalar_one_or_none()
                if found is not None:
                    return SessionId(found)
        raise RuntimeError(f"route {spec.route_id}: no session created and none found")

    def mark_sessions_for_termination(self, session_ids: Sequence[SessionId]) -> None:
        """Never-started sessions become CANCELLED, live ones TERMINATING; finished ones stay."""
        if not session_ids:
            return
        statement = (
            sessions.update()
            .where(
                any_of(sessions.c.id, session_ids),
                sessions.c.status.not_in(_STOPPED_OR_STOPPING),
            )
            .values(
                status=sa.case(
                    (sessions.c.status.in_(_NOT_STARTED), SessionStatus.CANCELLED.value),
                    else_=SessionStatus.TERMINATING.value,
                ),
                terminated_at=sa.case(
                    (sessions.c.status.in_(_NOT_STARTED), sa.func.now()),
                    else_=sessions.c.terminated_at,
                ),
                updated_at=sa.func.now(),
            )
        )
        with transaction(self._engine) as conn:
            conn.execute(statement)


def _spec_json(spec: SessionSpec) -> dict[str, object]:
    document = dataclasses.asdict(spec)
    document["route_id"] = str(spec.route_id)
    document["deployment_id"] = str(spec.deployment_id)
    return document


def _place(conn: sa.Connection, spec: SessionSpec) -> Allocation | None:
    """Where the session goes and what it holds there (its scaling group's placement);
    None while no host is registered at all."""
    loads = host_loads(conn, lock=True)
    if not loads:
        return None
    mode = conn.execute(
        sa.select(scaling_groups.c.placement).where(scaling_groups.c.name == spec.resource_group)
    ).scalar()
    placer = Placer(loads, PlacementMode(mode or PlacementMode.SPREAD.value))
    request = ResourceRequest.from_resources(spec.resources)
    chosen = placer.choose(spec.deployment_id, request)
    if chosen is None:
        raise NoHostAvailable(placer.why_not(request))
    return chosen


def _placement_values(allocation: Allocation | None) -> dict[str, object]:
    if allocation is None:
        return {"placed_on": None}
    return {
        "placed_on": allocation.host,
        "gpu_devices": list(allocation.devices) or None,
        "gpu_gib": allocation.gib_per_device,
        "cpus": allocation.cpus,
        "memory_gib": allocation.memory_gib,
    }
