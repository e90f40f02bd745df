"""The proxy's routing table: smooth weighted round robin, weight 0, hosts to avoid, replicas
ejected by the data path, and which published sets may withdraw routes."""

from __future__ import annotations

from collections import Counter
from uuid import UUID

from workers.domain import ModelServiceMetadata
from workers.standalone.proxy.routing import RoutingTable

ENDPOINT = str(UUID(int=0xE1))


def _table(*replicas: tuple[int, str, str]) -> RoutingTable:
    """(route number, host, weight) each."""
    table = RoutingTable()
    table.replace_all(
        ModelServiceMetadata(UUID(int=n), "svc", "127.0.0.1", 8000 + n,
                             labels={"endpoint_id": ENDPOINT, "host": host, "traffic_ratio": w})
        for n, host, w in replicas
    )  # fmt: skip
    return table


def _picks(table: RoutingTable, count: int, **avoid: set[str]) -> list[int]:
    picked = (table.pick(ENDPOINT, **avoid) for _ in range(count))
    return [UUID(r.route_id).int for r in picked if r is not None]


def test_weights_split_exactly_and_evenly_interleaved() -> None:
    table = _table((1, "a", "1"), (2, "b", "3"))
    picks = _picks(table, 8)
    assert Counter(picks) == {1: 2, 2: 6}
    assert picks[:4].count(1) == 1  # every window of sum(weights) picks holds the canary once


def test_weight_zero_gets_nothing_and_alone_means_no_replica() -> None:
    assert set(_picks(_table((1, "a", "0"), (2, "b", "1")), 10)) == {2}
    assert _picks(_table((1, "a", "0")), 3) == []


def test_a_retry_avoids_the_host_and_falls_back_to_another_route() -> None:
    table = _table((1, "a", "1"), (2, "a", "1"), (3, "b", "1"))
    assert set(_picks(table, 6, avoid_hosts={"a"})) == {3}
    assert set(_picks(table, 6, avoid_routes={str(UUID(int=1))})) == {2, 3}


def test_an_ejected_replica_is_skipped_unless_it_is_all_there_is_and_answering_ends_it() -> None:
    table = _table((1, "a", "1"), (2, "b", "1"))
    assert table.eject(str(UUID(int=1))) == 5.0
    assert set(_picks(table, 6)) == {2}
    table.eject(str(UUID(int=2)))
    assert set(_picks(table, 6)) == {1, 2}
    table.answered(str(UUID(int=1)))
    table.answered(str(UUID(int=2)))
    assert set(_picks(table, 6)) == {1, 2}


def test_ejections_double_with_each_failure_in_a_row_and_end_on_their_own() -> None:
    table = _table((1, "a", "1"), (2, "b", "1"))
    route = str(UUID(int=1))
    assert [table.eject(route, now=0.0) for _ in range(6)] == [5, 10, 20, 40, 60, 60]
    assert set(_picks(table, 4)) == {1, 2}  # now is far past 60 s after time 0


def test_only_a_set_at_least_as_new_as_the_tables_may_withdraw_routes() -> None:
    table = RoutingTable()
    assert table.may_withdraw(5)
    assert not table.may_withdraw(None)  # no generation: a store that lost its keys
    table.confirm(7)
    assert (table.generation, table.may_withdraw(6), table.may_withdraw(7)) == (7, False, True)
    table.confirm(None)
    table.confirm(3)
    assert table.generation == 7


def test_a_malformed_weight_counts_as_one_and_a_route_without_endpoint_is_left_out() -> None:
    table = _table((1, "a", "x"), (2, "b", "1"))
    table.apply({str(UUID(int=9)): ModelServiceMetadata(UUID(int=9), "svc", "h", 1)})
    assert Counter(_picks(table, 4)) == {1: 2, 2: 2}


def test_a_full_read_of_the_same_routes_keeps_the_rotation() -> None:
    targets = [
        ModelServiceMetadata(UUID(int=n), "svc", "127.0.0.1", 8000 + n,
                             labels={"endpoint_id": ENDPOINT, "traffic_ratio": w})
        for n, w in ((1, "1"), (2, "3"))
    ]  # fmt: skip
    table = RoutingTable()
    table.replace_all(targets)
    picks = []
    for _ in range(8):  # a full read between every two picks changes nothing
        picks += _picks(table, 1)
        table.replace_all(targets)
    assert Counter(picks) == {1: 2, 2: 6}
