"""Which replica moves: to make room for one that fits nowhere, to restore spread."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from uuid import UUID, uuid4

from workers.domain import (
    Allocation,
    Device,
    FleetView,
    HostInfo,
    PlacedReplica,
    ResourceRequest,
    WaitingReplica,
)
from workers.policies.moves import plan_move

SMALL, BIG = uuid4(), uuid4()
ONE, TWO = ResourceRequest(gpus=1), ResourceRequest(gpus=2)


def _fleet(placed: dict[str, list[tuple[UUID, ResourceRequest, tuple[int, ...]]]],
           gpus: int = 2) -> tuple[tuple[HostInfo, ...], tuple[PlacedReplica, ...]]:  # fmt: skip
    """Hosts of `gpus` 80 GiB devices, and what is placed on each: (deployment, request,
    devices)."""
    hosts, replicas = [], []
    for name, on_it in placed.items():
        used = {i: 80.0 for _, _, devices in on_it for i in devices}
        per_deployment = Counter(d for d, _, _ in on_it)
        devices = tuple(Device(i, f"{name}-{i}", "A100", 80) for i in range(gpus))
        hosts.append(HostInfo(uuid4(), name, name, devices=devices, device_used_gib=used,
                              sessions=len(on_it), per_deployment=per_deployment))  # fmt: skip
        replicas += [PlacedReplica(uuid4(), d, request, Allocation(name, held, 80.0, True))
                     for d, request, held in on_it]  # fmt: skip
    return tuple(hosts), tuple(replicas)


def test_a_replica_that_fits_only_after_one_move_gets_that_move() -> None:
    # Two hosts of 2 GPUs, one 1-GPU replica on each: 2 free GPUs, but no 2 on one host.
    hosts, replicas = _fleet({"h1": [(SMALL, ONE, (0,))], "h2": [(SMALL, ONE, (0,))]})
    waiting = WaitingReplica(uuid4(), BIG, "big", TWO)
    move = plan_move(FleetView(hosts, replicas, (waiting,)))
    assert move is not None
    assert (move.from_host, move.to_host) in {("h1", "h2"), ("h2", "h1")}
    assert move.why == "to make room for big (needs 2 GPUs)"


def test_nothing_moves_when_no_single_move_helps_or_it_fits_already() -> None:
    full = _fleet({"h1": [(SMALL, ONE, (0,)), (SMALL, ONE, (1,))],
                   "h2": [(SMALL, ONE, (0,)), (SMALL, ONE, (1,))]})  # fmt: skip
    assert plan_move(FleetView(*full, (WaitingReplica(uuid4(), BIG, "big", TWO),))) is None
    room = _fleet({"h1": [], "h2": [(SMALL, ONE, (0,))]})
    assert plan_move(FleetView(*room, (WaitingReplica(uuid4(), BIG, "big", TWO),))) is None


def test_no_move_while_one_is_under_way_nor_of_a_replica_that_may_not_move() -> None:
    hosts, replicas = _fleet({"h1": [(SMALL, ONE, (0,))], "h2": [(SMALL, ONE, (0,))]})
    waiting = (WaitingReplica(uuid4(), BIG, "big", TWO),)
    assert plan_move(FleetView(hosts, replicas, waiting, moving=1)) is None
    pinned = tuple(replace(r, movable=False) for r in replicas)
    assert plan_move(FleetView(hosts, pinned, waiting)) is None
    assert plan_move(FleetView(hosts, replicas, (replace(waiting[0], rebalance=False),))) is None


def test_the_cheapest_replica_moves() -> None:
    hosts, replicas = _fleet({"h1": [(SMALL, ONE, (0,))], "h2": [(BIG, TWO, (0, 1))],
                              "h3": [(SMALL, ONE, (0,))]}, gpus=3)  # fmt: skip
    move = plan_move(
        FleetView(
            hosts,
            replicas,
            (
                WaitingReplica(uuid4(), uuid4(), "w", TWO),
                WaitingReplica(uuid4(), uuid4(), "v", TWO),
            ),
        )
    )
    # h1 and h3 each have 2 free already: it fits, no move; a 3-GPU one needs a move
    assert move is None
    three = ResourceRequest(gpus=3)
    move = plan_move(FleetView(hosts, replicas, (WaitingReplica(uuid4(), uuid4(), "w", three),)))
    assert move is not None
    assert move.from_host in {"h1", "h3"}  # a 1-GPU replica, not the 2-GPU one


def test_spread_is_restored_after_a_host_comes_back() -> None:
    hosts, replicas = _fleet({"h1": [], "h2": [(SMALL, ONE, (0,)), (SMALL, ONE, (1,)),
                                               (SMALL, ONE, (2,)), (SMALL, ONE, (3,))]},
                             gpus=4)  # fmt: skip
    move = plan_move(FleetView(hosts, replicas))
    assert move is not None
    assert (move.from_host, move.to_host, move.why) == (
        "h2",
        "h1",
        "to restore spread (4 on h2, 0 on h1)",
    )
    balanced, on_them = _fleet(
        {"h1": [(SMALL, ONE, (0,))], "h2": [(SMALL, ONE, (0,)), (SMALL, ONE, (1,))]}
    )
    assert plan_move(FleetView(balanced, on_them)) is None  # skew 1
