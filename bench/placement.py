"""Placement on a synthetic fleet: how well `pack` and `spread` use the GPUs, what they
refuse, and how fast the decision is (the pure function alone: no database).

    python bench/placement.py [--seed 7] [--hosts 32] [--deployments 500]

The fleet: `--hosts` hosts of 8 GPUs, a third each of 24, 48 and 80 GiB devices (three
models). The demand: deployments of 1-2 replicas (at most `--deployments`), each replica
asking 1, 2, 4 or 8 whole GPUs (3 in 10) or a 5 to 40 GiB share (some 40 GiB ones only
on the 80 GiB model), in a random order, until about 85 % of the devices' memory is
asked for. Reported per placement mode: replicas placed, devices used against the
first-fit-decreasing bound (the same requests, largest first, first fit: what a planner
that saw them all at once would use), replicas refused, of those how many one move
would make room for, moves made (`plan_move`, one at a time, the mover placed again
elsewhere, then the waiting one), refusals one move would still fix after them, and
the time to place 10,000 replicas on 1,000 hosts of 8 GPUs.
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass
from uuid import UUID, uuid4

from workers.domain import (
    Device,
    FleetView,
    HostInfo,
    PlacedReplica,
    PlacementMode,
    ResourceRequest,
    WaitingReplica,
)
from workers.policies.moves import plan_move
from workers.policies.placement import Placer

MODELS = (("NVIDIA L4", 24.0), ("NVIDIA L40S", 48.0), ("NVIDIA A100-SXM4-80GB", 80.0))
DEMAND_SHARE = 0.85


@dataclass(frozen=True)
class Ask:
    deployment_id: UUID
    request: ResourceRequest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--hosts", type=int, default=32)
    parser.add_argument("--deployments", type=int, default=500)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    hosts = _fleet(args.hosts)
    asks = _demand(rng, hosts, args.deployments)
    bound = _first_fit_decreasing(hosts, asks)
    made = len({a.deployment_id for a in asks})
    print(f"{len(hosts)} hosts x 8 GPUs, {len(asks)} replicas of {made} deployments; "
          f"first-fit-decreasing uses {bound} devices")  # fmt: skip
    print("| placement | placed | devices used | over the FFD bound | refused | one move "
          "makes room | moves made | one move still would |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode in (PlacementMode.PACK, PlacementMode.SPREAD):
        placed, used, refused, fixable, moves, left = _run(hosts, asks, mode)
        over = (used - bound) / bound * 100
        print(f"| {mode.value} | {placed} | {used} | {over:+.1f} % | {refused} | {fixable} "
              f"| {moves} | {left} |")  # fmt: skip
    print()
    print("| placement | 10,000 replicas onto 1,000 hosts x 8 GPUs |")
    print("|---|---:|")
    for mode in (PlacementMode.PACK, PlacementMode.SPREAD):
        print(f"| {mode.value} | {_timed(mode, args.seed):.2f} s |")


def _fleet(count: int) -> list[HostInfo]:
    hosts = []
    for i in range(count):
        model, gib = MODELS[i % len(MODELS)]
        devices = tuple(Device(j, f"h{i}-{j}", model, gib) for j in range(8))
        hosts.append(HostInfo(uuid4(), f"host-{i:03}", f"10.0.{i // 250}.{i % 250}",
                              devices=devices))  # fmt: skip
    return hosts


def _demand(rng: random.Random, hosts: list[HostInfo], deployments: int) -> list[Ask]:
    capacity = sum(d.memory_gib for h in hosts for d in h.devices)
    asks: list[Ask] = []
    asked = 0.0
    while asked < DEMAND_SHARE * capacity and len({a.deployment_id for a in asks}) < deployments:
        request = _request(rng)
        deployment_id = uuid4()
        for _ in range(rng.randint(1, 2)):
            asks.append(Ask(deployment_id, request))
            asked += request.gpus * 48.0 + (request.gpu_memory_gib or 0.0)
    rng.shuffle(asks)
    return asks


def _request(rng: random.Random) -> ResourceRequest:
    if rng.random() < 0.3:
        return ResourceRequest(gpus=rng.choice((1, 1, 1, 2, 2, 4, 8)))
    share = rng.choice((5.0, 10.0, 10.0, 20.0, 40.0))
    model = "A100" if share == 40.0 and rng.random() < 0.5 else None
    return ResourceRequest(gpu_memory_gib=share, gpu_model=model)


def _run(hosts: list[HostInfo], asks: list[Ask],
         mode: PlacementMode) -> tuple[int, int, int, int, int, int]:  # fmt: skip
    placer = Placer(hosts, mode)
    placed: list[PlacedReplica] = []
    refused: list[Ask] = []
    for ask in asks:
        allocation = placer.place(ask.deployment_id, ask.request)
        if allocation is None:
            refused.append(ask)
        else:
            placed.append(PlacedReplica(uuid4(), ask.deployment_id, ask.request, allocation, mode))
    at_first, refused_count = len(placed), len(refused)
    fixable = _fixable(placer, hosts, placed, refused, mode)
    moves = _move_until_none_helps(placer, hosts, placed, refused, mode)
    left = _fixable(placer, hosts, placed, refused, mode)
    return at_first, _devices_used(placer, hosts), refused_count, fixable, moves, left


def _fixable(placer: Placer, hosts: list[HostInfo], placed: list[PlacedReplica],
             refused: list[Ask], mode: PlacementMode) -> int:  # fmt: skip
    """Refused replicas one move would make room for (each on its own)."""
    view, on_them = _view(placer, hosts), tuple(placed)
    return sum(1 for ask in refused
               if plan_move(FleetView(view, on_them, (_waiting(ask),))) is not None)  # fmt: skip


def _move_until_none_helps(placer: Placer, hosts: list[HostInfo], placed: list[PlacedReplica],
                           refused: list[Ask], mode: PlacementMode) -> int:  # fmt: skip
    """What the controller does, one move at a time: move, place the mover's replacement,
    then the waiting one in the room made."""
    moves = 0
    for ask in list(refused):
        move = plan_move(FleetView(_view(placer, hosts), tuple(placed), (_waiting(ask),)))
        if move is None:
            continue
        [mover] = [p for p in placed if p.route_id == move.route_id]
        again = placer.choose(mover.deployment_id, mover.request, avoid={move.from_host})
        assert again is not None
        placer.hold(mover.deployment_id, again)
        placer.hold(mover.deployment_id, mover.allocation, sign=-1)
        placed[placed.index(mover)] = PlacedReplica(mover.route_id, mover.deployment_id,
                                                    mover.request, again, mode)  # fmt: skip
        allocation = placer.place(ask.deployment_id, ask.request)
        assert allocation is not None, "the move made no room"
        placed.append(PlacedReplica(uuid4(), ask.deployment_id, ask.request, allocation, mode))
        refused.remove(ask)
        moves += 1
    return moves


def _view(placer: Placer, hosts: list[HostInfo]) -> tuple[HostInfo, ...]:
    """The hosts as the placer now has them (what they hold)."""
    view = []
    for host in hosts:
        state = placer.host(host.name)
        assert state is not None
        used = {i: d.memory_gib - state.free_gib[i] for i, d in
                ((d.index, d) for d in host.devices)}  # fmt: skip
        view.append(HostInfo(host.id, host.name, host.address, devices=host.devices,
                             device_used_gib=used, sessions=state.sessions,
                             per_deployment=dict(state.per_deployment)))  # fmt: skip
    return tuple(view)


def _waiting(ask: Ask) -> WaitingReplica:
    return WaitingReplica(uuid4(), ask.deployment_id, "waiting", ask.request)


def _devices_used(placer: Placer, hosts: list[HostInfo]) -> int:
    used = 0
    for host in hosts:
        state = placer.host(host.name)
        assert state is not None
        used += sum(1 for d in host.devices if state.free_gib[d.index] < d.memory_gib - 1e-6)
    return used


def _first_fit_decreasing(hosts: list[HostInfo], asks: list[Ask]) -> int:
    """Devices a first-fit-decreasing packing of the same requests uses (largest first,
    each on the first host and device where it fits)."""
    ordered = sorted(asks, key=lambda a: (a.request.gpus, a.request.gpu_memory_gib or 0.0),
                     reverse=True)  # fmt: skip
    placer = Placer(hosts, PlacementMode.PACK)
    for ask in ordered:
        placer.place(ask.deployment_id, ask.request)
    return _devices_used(placer, hosts)


def _timed(mode: PlacementMode, seed: int) -> float:
    rng = random.Random(seed)
    hosts = [HostInfo(uuid4(), f"h{i:04}", "a", devices=tuple(
        Device(j, f"{i}-{j}", "A100", 80.0) for j in range(8))) for i in range(1000)]  # fmt: skip
    deployments = [(uuid4(), rng.choice((ResourceRequest(gpus=1), ResourceRequest(gpus=1),
                                         ResourceRequest(gpu_memory_gib=20),
                                         ResourceRequest(gpu_memory_gib=40))))
                   for _ in range(500)]  # fmt: skip
    started = time.perf_counter()
    placer = Placer(hosts, mode)
    for i in range(10_000):
        deployment_id, request = deployments[i % len(deployments)]
        placer.place(deployment_id, request)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
