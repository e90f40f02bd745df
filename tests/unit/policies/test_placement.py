"""Placement as a table: where one more replica goes, and what is said when none fits."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from workers.domain import HostInfo, HostStatus
from workers.policies.placement import choose_host, why_no_room, with_one_more

D, OTHER = uuid4(), uuid4()


def _host(name: str, *, of_d: int = 0, sessions: int | None = None, slots: int = 0,
          status: HostStatus = HostStatus.READY) -> HostInfo:  # fmt: skip
    load = of_d if sessions is None else sessions
    return HostInfo(uuid4(), name, f"10.0.0.{name[-1]}", status, slots, sessions=load,
                    per_deployment={D: of_d} if of_d else {})  # fmt: skip


def _spread(hosts: list[HostInfo], replicas: int, deployment: UUID = D) -> dict[str, int]:
    placed: dict[str, int] = {}
    for _ in range(replicas):
        chosen = choose_host(hosts, deployment)
        assert chosen is not None
        placed[chosen.name] = placed.get(chosen.name, 0) + 1
        hosts = [with_one_more(h, deployment) if h is chosen else h for h in hosts]
    return placed


def test_six_replicas_on_three_hosts_land_two_two_two() -> None:
    assert _spread([_host("h1"), _host("h2"), _host("h3")], 6) == {"h1": 2, "h2": 2, "h3": 2}


def test_the_skew_stays_at_most_one_from_an_uneven_start() -> None:
    hosts = [_host("h1", of_d=3), _host("h2"), _host("h3", of_d=1)]
    assert _spread(hosts, 3) == {"h2": 2, "h3": 1}  # 3/2/2 after


def test_other_deployments_load_breaks_ties_then_the_name() -> None:
    busy = HostInfo(uuid4(), "h1", "a", sessions=5, per_deployment={OTHER: 5})
    assert choose_host([busy, _host("h2")], D).name == "h2"  # type: ignore[union-attr]
    assert choose_host([_host("h2"), _host("h1")], D).name == "h1"  # type: ignore[union-attr]


@pytest.mark.parametrize("status", [HostStatus.CORDONED, HostStatus.DRAINING, HostStatus.LOST])
def test_never_on_a_host_that_takes_no_new_work(status: HostStatus) -> None:
    assert choose_host([_host("h1", status=status)], D) is None
    assert choose_host([_host("h1", status=status), _host("h2", of_d=4)], D).name == "h2"  # type: ignore[union-attr]


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
