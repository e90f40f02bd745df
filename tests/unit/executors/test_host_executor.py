"""HostExecutor against an autospecced host registry: losing a silent host, draining one."""

from __future__ import annotations

from unittest.mock import MagicMock, create_autospec
from uuid import uuid4

import pytest

from workers.domain import HostInfo, HostRoute, HostStatus
from workers.executors import HostExecutor
from workers.ports import HostRegistry


@pytest.fixture
def registry() -> MagicMock:
    mock: MagicMock = create_autospec(HostRegistry, instance=True)
    return mock


@pytest.fixture
def executor(registry: MagicMock) -> HostExecutor:
    return HostExecutor(host_registry=registry, lost_after_s=10)


def _host(name: str, **fields: object) -> HostInfo:
    return HostInfo(uuid4(), name, f"10.0.0.{name[-1]}", **fields)  # type: ignore[arg-type]


def test_a_host_silent_for_lost_after_is_lost_and_its_sessions_given_up(
    executor: HostExecutor, registry: MagicMock
) -> None:
    silent, fine = _host("h1", heartbeat_age_s=12.3), _host("h2", heartbeat_age_s=1.0)
    registry.give_up_lost_hosts.return_value = {"h1": 2}
    result = executor.check_hosts([silent, fine])
    [error] = result.errors
    assert (error.host_info, error.error_code) == (silent, "host_lost")
    assert error.error_detail == "host h1 lost (no heartbeat for 12 s)"
    assert result.successes == [fine]
    registry.give_up_lost_hosts.assert_called_once_with({"h1": error.error_detail})


def test_no_silent_host_gives_up_nothing(executor: HostExecutor, registry: MagicMock) -> None:
    assert executor.check_hosts([_host("h1", heartbeat_age_s=9.9)]).errors == []
    registry.give_up_lost_hosts.assert_not_called()


def test_a_replica_leaves_a_draining_host_only_once_enough_serve_elsewhere(
    executor: HostExecutor, registry: MagicMock
) -> None:
    draining = _host("h1", status=HostStatus.DRAINING)
    deployment = uuid4()
    covered = HostRoute(uuid4(), deployment, "h1", healthy_elsewhere=2, target=2)
    uncovered = HostRoute(uuid4(), uuid4(), "h1", healthy_elsewhere=0, target=1)
    registry.fetch_routes_on.return_value = [covered, uncovered]
    registry.count_live_sessions.return_value = {"h1": 2}
    registry.fetch_hosts.return_value = [_host("h2", sessions=1, slots=4), draining]
    result = executor.drain_hosts([draining])
    registry.move_off.assert_called_once()
    assert registry.move_off.call_args.args[0] == {covered.route_id}
    assert result.waiting == [draining]
    assert result.reasons[draining.id].error_detail == (
        "2 sessions left: 1 wait for replacements to serve elsewhere"
    )


def test_a_drain_with_no_room_elsewhere_says_why(
    executor: HostExecutor, registry: MagicMock
) -> None:
    draining = _host("h1", status=HostStatus.DRAINING)
    registry.fetch_routes_on.return_value = [HostRoute(uuid4(), uuid4(), "h1", 0, 1)]
    registry.count_live_sessions.return_value = {"h1": 1}
    registry.fetch_hosts.return_value = [_host("h2", sessions=1, slots=1), draining]
    result = executor.drain_hosts([draining])
    registry.move_off.assert_not_called()
    assert result.reasons[draining.id].error_detail == (
        "1 session left: 1 wait for replacements to serve elsewhere; "
        "no host with a free slot: 1 host, all full (1 draining)"
    )


def test_a_host_with_no_session_left_is_drained(
    executor: HostExecutor, registry: MagicMock
) -> None:
    draining = _host("h1", status=HostStatus.DRAINING)
    registry.fetch_routes_on.return_value = []
    registry.count_live_sessions.return_value = {}
    assert executor.drain_hosts([draining]).successes == [draining]
