"""Hosts: the machines sessions run on, as the controller sees them when it places a session,
declares a host lost, or moves replicas off one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from workers.domain.statuses import HostStatus


@dataclass(frozen=True)
class HostInfo:
    """One host and its load: its agent's heartbeat, its slots, the sessions on it."""

    id: UUID
    name: str
    address: str
    status: HostStatus = HostStatus.READY
    slots: int = 0  # the most sessions it may run; 0: no limit
    heartbeat_age_s: float = 0.0  # since its agent last said it lives (database clock)
    sessions: int = 0  # live sessions placed on or running on it
    # Live sessions per deployment on it, for spreading a deployment's replicas.
    per_deployment: Mapping[UUID, int] = field(default_factory=dict)
    changed_at: datetime | None = None

    @property
    def has_room(self) -> bool:
        return self.slots == 0 or self.sessions < self.slots


@dataclass(frozen=True)
class HostRoute:
    """A route whose session is on a host being drained, with what its deployment has
    elsewhere: enough healthy replicas on other hosts lets it leave."""

    route_id: UUID
    deployment_id: UUID
    host: str
    healthy_elsewhere: int  # healthy routes of its deployment not on a leaving host
    target: int  # the replicas its deployment asks for
