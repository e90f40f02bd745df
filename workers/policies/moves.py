"""Which one replica to move, if any: to make room for one that fits nowhere, or to
restore spread after a host joined or came back (pure).

Kubernetes never moves a running pod to make room (the descheduler is a project apart),
and Backend.AI only avoids fragmenting; here the controller moves one replica at a time,
surge first (its replacement serves before it leaves, as a drain does), and only where
the move is sure to help:

- **Making room:** for the oldest route no host has room for, the cheapest replica (the
  fewest GPUs, then the smallest share) on a host where, without it, the waiting one
  would fit, and that itself fits on another host now.
- **Restoring spread:** under `spread`, a deployment with two replicas more on one host
  than on another where one more would fit moves one from the fullest host.

Never a replica of a deployment being rolled out, nor of a group with rebalancing off,
and nothing new while a move is under way.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from uuid import UUID

from workers.domain import FleetView, PlacedReplica, PlacementMode, ReplicaMove, WaitingReplica
from workers.policies.placement import Placer

MAX_SKEW = 1  # replicas of a deployment on one host beyond another where one more fits


def plan_move(fleet: FleetView) -> ReplicaMove | None:
    """The one move to make now, if any (see the module docstring)."""
    if fleet.moving:
        return None
    placer = Placer(fleet.hosts)
    for waiting in fleet.waiting:
        if waiting.rebalance and (move := _room_for(placer, fleet.replicas, waiting)):
            return move
    return _restore_spread(placer, fleet.replicas)


def _room_for(
    placer: Placer, replicas: Sequence[PlacedReplica], waiting: WaitingReplica
) -> ReplicaMove | None:
    if placer.choose(waiting.deployment_id, waiting.request) is not None:
        return None  # it fits now: its next placement takes it
    for replica in sorted(replicas, key=_cost):
        if not replica.movable or (waiting.request.wants_gpu and not replica.allocation.devices):
            continue
        here = replica.allocation.host
        placer.hold(replica.deployment_id, replica.allocation, sign=-1)
        frees_enough = placer.fits_on(here, waiting.deployment_id, waiting.request)
        placer.hold(replica.deployment_id, replica.allocation)
        if not frees_enough:
            continue
        elsewhere = placer.choose(replica.deployment_id, replica.request, avoid={here})
        if elsewhere is not None:
            why = f"to make room for {waiting.deployment_name} (needs {waiting.request.describe()})"
            return ReplicaMove(replica.route_id, replica.deployment_id, here, elsewhere.host, why)
    return None


def _restore_spread(placer: Placer, replicas: Sequence[PlacedReplica]) -> ReplicaMove | None:
    by_deployment: dict[UUID, list[PlacedReplica]] = defaultdict(list)
    for replica in replicas:
        if replica.mode is PlacementMode.SPREAD:
            by_deployment[replica.deployment_id].append(replica)
    for deployment_id in sorted(by_deployment):
        own = by_deployment[deployment_id]
        if len(own) < 2 or not all(r.movable for r in own):
            continue
        counts = Counter(r.allocation.host for r in own)
        fullest, most = max(counts.items(), key=lambda item: (item[1], item[0]))
        target = placer.choose(deployment_id, own[0].request, avoid={fullest})
        if target is not None and most - counts.get(target.host, 0) > MAX_SKEW:
            leaving = max((r for r in own if r.allocation.host == fullest),
                          key=lambda r: str(r.route_id))  # fmt: skip
            why = (f"to restore spread ({most} on {fullest}, {counts.get(target.host, 0)} on "
                   f"{target.host})")  # fmt: skip
            return ReplicaMove(leaving.route_id, deployment_id, fullest, target.host, why)
    return None


def _cost(replica: PlacedReplica) -> tuple[int, float, str]:
    """Cheapest to move first: the fewest whole GPUs, then the smallest share."""
    request = replica.request
    return (request.gpus, request.gpu_memory_gib or 0.0, str(replica.route_id))
