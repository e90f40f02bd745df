"""Placement as a table: where one more replica goes, and what is said when none fits."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from workers.domain import (
    Device,
    HostInfo,
    HostStatus,
    PlacementMode,
    ResourceRequest,
)
from workers.policies.placement import Placer, choose_host, why_no_room

D, OTHER = uuid4(), uuid4()


def _host(name: str, *, of_d: int = 0, sessions: int | None = None, slots: int = 0,
          status: HostStatus = HostStatus.READY) -> HostInfo:  # fmt: skip
    load = of_d if sessions is None else sessions
    return HostInfo(uuid4(), name, f"10.0.0.{name[-1]}", status, slots, sessions=load,
                    per_deployment={D: of_d} if of_d else {})  # fmt: skip


def _spread(hosts: list[HostInfo], replicas: int, deployment: UUID = D) -> dict[str, int]:
    placer, placed = Placer(hosts), dict[str, int]()
    for _ in range(replicas):
        chosen = placer.place(deployment, ResourceRequest())
        assert chosen is not None
        placed[chosen.host] = placed.get(chosen.host, 0) + 1
    return placed


def test_six_replicas_on_three_hosts_land_two_two_two() -> None:
    assert _spread([_host("h1"), _host("h2"), _host("h3")], 6) == {"h1": 2, "h2": 2, "h3": 2}


def test_the_skew_stays_at_most_one_from_an_uneven_start() -> None:
    hosts = [_host("h1", of_d=3), _host("h2"), _host("h3", of_d=1)]
    assert _spread(hosts, 3) == {"h2": 2, "h3": 1}  # 3/2/2 after


def test_other_deployments_load_breaks_ties_then_the_name() -> None:
    busy = HostInfo(uuid4(), "h1", "a", sessions=5, per_deployment={OTHER: 5})
    assert choose_host([busy, _host("h2")], D).host == "h2"  # type: ignore[union-attr]
    assert choose_host([_host("h2"), _host("h1")], D).host == "h1"  # type: ignore[union-attr]


@pytest.mark.parametrize("status", [HostStatus.CORDONED, HostStatus.DRAINING, HostStatus.LOST])
def test_never_on_a_host_that_takes_no_new_work(status: HostStatus) -> None:
    assert choose_host([_host("h1", status=status)], D) is None
    assert choose_host([_host("h1", status=status), _host("h2", of_d=4)], D).host == "h2"  # type: ignore[union-attr]


def test_slots_bound_a_host_and_zero_means_no_limit() -> None:
    full = _host("h1", sessions=2, slots=2)
    assert choose_host([full], D) is None
    assert _spread([full, _host("h2", slots=1)], 1) == {"h2": 1}
    assert _spread([_host("h3", sessions=500)], 3) == {"h3": 3}


@pytest.mark.parametrize(
    ("hosts", "said"),
    [
        ([_host("h1", sessions=1, slots=1), _host("h2", sessions=1, slots=1)],
         "no host with a free slot: 2 hosts, all full"),
        ([_host("h1", sessions=1, slots=1), _host("h2", status=HostStatus.CORDONED)],
         "no host with a free slot: 1 host, all full (1 cordoned)"),
        ([_host("h1", status=HostStatus.LOST), _host("h2", status=HostStatus.DRAINING)],
         "no host with a free slot: none of 2 hosts is ready (1 draining, 1 lost)"),
        ([], "no host with a free slot: no host is registered"),
    ],
)  # fmt: skip
def test_no_room_says_why(hosts: list[HostInfo], said: str) -> None:
    assert choose_host(hosts, D) is None
    assert why_no_room(hosts) == said


def _gpu_host(name: str, gpus: int = 4, gib: float = 80.0, model: str = "NVIDIA A100-SXM4-80GB",
              used: dict[int, float] | None = None) -> HostInfo:  # fmt: skip
    devices = tuple(Device(i, f"GPU-{name}-{i}", model, gib) for i in range(gpus))
    return HostInfo(uuid4(), name, name, devices=devices, device_used_gib=used or {})


def _placements(placer: Placer, *requests: ResourceRequest) -> list[tuple[str, tuple[int, ...]]]:
    placed = []
    for request in requests:
        allocation = placer.place(uuid4(), request)
        assert allocation is not None, request
        placed.append((allocation.host, allocation.devices))
    return placed


def test_whole_gpus_and_shares_get_disjoint_devices_and_a_share_never_straddles_two() -> None:
    placer = Placer([_gpu_host("h1", gpus=4, gib=24)], PlacementMode.PACK)
    two, one = ResourceRequest(gpus=2), ResourceRequest(gpus=1)
    share = ResourceRequest(gpu_memory_gib=20)
    assert _placements(placer, two, one, share) == [("h1", (0, 1)), ("h1", (2,)), ("h1", (3,))]
    assert placer.choose(uuid4(), ResourceRequest(gpu_memory_gib=10)) is None  # 4 GiB left
    assert placer.choose(uuid4(), ResourceRequest(gpu_memory_gib=4)) is not None
    assert placer.choose(uuid4(), one) is None


def test_shares_add_up_on_one_device_and_a_whole_device_needs_nothing_on_it() -> None:
    placer = Placer([_gpu_host("h1", gpus=2, gib=40)], PlacementMode.PACK)
    quarter = ResourceRequest(gpu_memory_gib=10)
    assert _placements(placer, quarter, quarter, quarter) == [("h1", (0,))] * 3  # best fit
    whole = placer.place(uuid4(), ResourceRequest(gpus=1))
    assert whole is not None
    assert (whole.devices, whole.whole, whole.gib_per_device) == ((1,), True, 40)
    assert placer.choose(uuid4(), ResourceRequest(gpus=1)) is None


def test_only_devices_of_the_model_asked_for() -> None:
    hosts = [_gpu_host("h1", model="NVIDIA L4"), _gpu_host("h2", model="NVIDIA H100 80GB HBM3")]
    chosen = choose_host(hosts, D, ResourceRequest(gpus=2, gpu_model="h100"))
    assert chosen is not None
    assert chosen.host == "h2"
    nowhere = ResourceRequest(gpus=1, gpu_model="B200")
    assert choose_host(hosts, D, nowhere) is None
    assert (
        why_no_room(hosts, nowhere) == "needs 1 GPU (B200); no ready host has a GPU of that model"
    )


def test_pack_fills_one_host_first_and_spread_alternates() -> None:
    one = ResourceRequest(gpus=1)
    packed = Placer([_gpu_host("h1"), _gpu_host("h2"), _gpu_host("h3")], PlacementMode.PACK)
    assert [placer_host for placer_host, _ in _placements(packed, *[one] * 5)] == (
        ["h1"] * 4 + ["h2"])  # fmt: skip
    spread = Placer([_gpu_host("h1"), _gpu_host("h2"), _gpu_host("h3")], PlacementMode.SPREAD)
    placed = [spread.place(D, one) for _ in range(4)]
    assert [a.host for a in placed if a is not None] == ["h1", "h2", "h3", "h1"]


def test_pack_takes_the_most_allocated_host_that_fits() -> None:
    hosts = [_gpu_host("h1"), _gpu_host("h2", used={0: 80, 1: 80}), _gpu_host("h3", used={0: 80})]
    chosen = choose_host(hosts, D, ResourceRequest(gpus=2), PlacementMode.PACK)
    assert chosen is not None
    assert (chosen.host, chosen.devices) == ("h2", (2, 3))


def test_hosts_without_gpus_keep_working_for_sessions_that_ask_none() -> None:
    assert _spread([_host("h1"), _host("h2")], 4) == {"h1": 2, "h2": 2}
    assert choose_host([_host("h1")], D, ResourceRequest(gpus=1)) is None


def test_cores_and_memory_bound_a_host_that_reports_them() -> None:
    small = HostInfo(uuid4(), "h1", "a", cpus=4, memory_gib=16, cpus_used=3)
    assert choose_host([small], D, ResourceRequest(cpus=2)) is None
    assert choose_host([small], D, ResourceRequest(cpus=1, memory_gib=16)) is not None
    assert choose_host([small], D, ResourceRequest(memory_gib=17)) is None


@pytest.mark.parametrize(
    ("request_", "said"),
    [
        (ResourceRequest(gpus=2),
         "needs 2 GPUs; largest free block: 1 GPU (h3); 1 GPU free over 1 host"),
        (ResourceRequest(gpu_memory_gib=50),
         "needs 50 GiB of one GPU; largest free share: 40 GiB (h3); 70 GiB free over 2 hosts"),
    ],
)  # fmt: skip
def test_nothing_fits_says_why_with_the_numbers(request_: ResourceRequest, said: str) -> None:
    hosts = [_gpu_host("h1", gpus=2, gib=40, used={0: 40, 1: 40}),
             _gpu_host("h2", gpus=2, gib=40, used={0: 40, 1: 10}),
             _gpu_host("h3", gpus=2, gib=40, used={0: 40})]  # fmt: skip
    assert choose_host(hosts, D, request_) is None
    assert why_no_room(hosts, request_) == said


def test_a_deployment_moving_a_replica_off_a_host_places_none_there_meanwhile() -> None:
    leaving = HostInfo(uuid4(), "h1", "a", moving_off=frozenset({D}))
    assert choose_host([leaving], D) is None
    assert choose_host([leaving], OTHER) is not None


def test_ten_thousand_replicas_place_in_order_and_nothing_is_held_twice() -> None:
    hosts = [_gpu_host(f"h{i:03}", gpus=8, gib=80) for i in range(100)]
    placer = Placer(hosts, PlacementMode.PACK)
    held: dict[tuple[str, int], float] = {}
    for request in [ResourceRequest(gpus=2), ResourceRequest(gpu_memory_gib=20)] * 150:
        allocation = placer.place(uuid4(), request)
        assert allocation is not None
        for index in allocation.devices:
            key = (allocation.host, index)
            held[key] = held.get(key, 0) + (80 if allocation.whole else allocation.gib_per_device)
    assert max(held.values()) <= 80


def test_a_share_goes_on_a_device_shares_already_hold_before_a_whole_one() -> None:
    hosts = [_gpu_host("h1", gpus=1, gib=24), _gpu_host("h2", gpus=1, gib=80, used={0: 50})]
    chosen = choose_host(hosts, D, ResourceRequest(gpu_memory_gib=20), PlacementMode.PACK)
    assert chosen is not None
    assert chosen.host == "h2"  # 30 GiB free there; h1's device stays whole
