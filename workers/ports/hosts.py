"""The machines that run sessions, as the database and Redis know them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Protocol
from uuid import UUID

from workers.domain import (
    ControllerView,
    FleetView,
    HostInfo,
    HostRoute,
    ProbeReach,
    ReplicaMove,
)


class HostRegistry(Protocol):
    """The machines that run sessions (`hosts`), their agents' heartbeats and load."""

    def observe(self, blind_after_s: float) -> ControllerView:
        """The controller looks at the hosts now: how long it has been seeing without a
        gap longer than `blind_after_s` (its own outage), and since its last give-up."""
        ...

    def fetch_hosts(self, names: AbstractSet[str] | None = None) -> list[HostInfo]:
        """Every host (or those named) with its heartbeat's age and live sessions."""
        ...

    def give_up_hosts(self, silent_s: Mapping[str, float]) -> Mapping[str, int]:
        """Each named host lost (silent that many seconds), in one transaction with its
        sessions given up (LOST) and its routes out of service; how many routes each
        host gave up (a host lost already is left out)."""
        ...

    def restore_hosts(self, names: AbstractSet[str], why: str) -> Sequence[str]:
        """Unreachable hosts heard again back to what their operator asked; those restored."""
        ...

    def note_probes(self, failing: Mapping[str, str], cleared: AbstractSet[str]) -> None:
        """Hosts whose replicas' probes started failing (why), and those passing again."""
        ...

    def fetch_routes_on(self, names: AbstractSet[str]) -> list[HostRoute]:
        """Active routes with a live session on the named hosts, with how many healthy
        replicas their deployments have on hosts that are not leaving."""
        ...

    def count_live_sessions(self, names: AbstractSet[str]) -> Mapping[str, int]:
        """Live sessions per named host (hosts with none are absent)."""
        ...

    def move_off(self, route_ids: AbstractSet[UUID], why: str) -> None:
        """Take routes out of service (traffic first, then drain), history saying why."""
        ...

    def fetch_fleet(self) -> FleetView:
        """Every host's load, the active replicas on them, the routes waiting for room,
        and how many replicas are moving now: what a move is planned from."""
        ...

    def start_move(self, move: ReplicaMove) -> bool:
        """Mark the route moving (it stops counting; its replacement starts elsewhere),
        with a history row; False when it could no longer move."""
        ...

    def finish_moves(self, abandon_after_s: float) -> Sequence[tuple[str, str]]:
        """Moving routes whose deployment is served without them leave service; moves
        older than `abandon_after_s` are abandoned. (host, what happened) for each."""
        ...


class HostSignals(Protocol):
    """What the hosts say outside the controller's database (Redis)."""

    def heartbeat_ages_s(self) -> Mapping[str, float]:
        """Seconds since each host's agent last beat there (hosts never heard are absent)."""
        ...

    def probe_reach(self) -> Mapping[str, ProbeReach]:
        """What the probers last saw of each host's replicas."""
        ...
