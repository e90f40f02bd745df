"""Hosts: the machines sessions run on, as the controller sees them when it places a session,
declares a host lost, or moves replicas off one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from workers.domain.resources import Allocation, Device, PlacementMode, ResourceRequest
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
    intent: HostStatus = HostStatus.READY  # what an operator asked: its status while it lives
    condition: str | None = None  # why it is not simply ready, for people
    # Probes of its replicas get no answer at all while it heartbeats: no new session there.
    probes_failing: bool = False
    # Its accelerators, and the GiB its live sessions hold on each (by index).
    devices: tuple[Device, ...] = ()
    device_used_gib: Mapping[int, float] = field(default_factory=dict)
    cpus: float = 0.0  # 0: not reported (no limit)
    memory_gib: float = 0.0
    cpus_used: float = 0.0
    memory_used_gib: float = 0.0
    # Deployments with a replica moving off it: none of theirs is placed here meanwhile.
    moving_off: frozenset[UUID] = frozenset()


@dataclass(frozen=True)
class HostRoute:
    """A route whose session is on a host being drained, with what its deployment has
    elsewhere: enough healthy replicas on other hosts lets it leave."""

    route_id: UUID
    deployment_id: UUID
    host: str
    healthy_elsewhere: int  # healthy routes of its deployment not on a leaving host
    target: int  # the replicas its deployment asks for


@dataclass(frozen=True)
class ControllerView:
    """What the controller itself could see when it judged the hosts (database clock)."""

    seeing_for_s: float  # since it last came back from a blind spell (an outage of its own)
    since_last_give_up_s: float | None = None  # None: it never gave a host up


@dataclass(frozen=True)
class ProbeReach:
    """What the probers saw of a host's replicas (seconds ago, by the store's clock)."""

    passed_s_ago: float | None  # a probe of one of them last passed (None: never seen)
    unreached_s_ago: float | None  # a probe last got no answer at all from the host
    detail: str = ""  # what that probe saw


@dataclass(frozen=True)
class PlacedReplica:
    """An active replica as placement sees it: what it asked for and what it holds."""

    route_id: UUID
    deployment_id: UUID
    request: ResourceRequest
    allocation: Allocation  # its host, devices and share
    mode: PlacementMode = PlacementMode.SPREAD  # its scaling group's placement
    movable: bool = True  # its group rebalances and its deployment is not rolling out


@dataclass(frozen=True)
class WaitingReplica:
    """A route no host had room for (the oldest first)."""

    route_id: UUID
    deployment_id: UUID
    deployment_name: str
    request: ResourceRequest
    rebalance: bool = True  # its group lets the controller make room for it


@dataclass(frozen=True)
class ReplicaMove:
    """Move one replica off a host: its replacement starts elsewhere (to `to_host`, as
    placement will choose), then it leaves, surge first as a drain does."""

    route_id: UUID
    deployment_id: UUID
    from_host: str
    to_host: str
    why: str  # 'to make room for llama (needs 2 GPUs)'


@dataclass(frozen=True)
class FleetView:
    """What rebalancing decides from: every host's load, the replicas on them, the routes
    waiting for room, and whether a move is under way."""

    hosts: tuple[HostInfo, ...]
    replicas: tuple[PlacedReplica, ...]
    waiting: tuple[WaitingReplica, ...] = ()
    moving: int = 0  # replicas moving now (one at a time)
