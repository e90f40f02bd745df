"""HostExecutor against an autospecced host registry and signals: losing a silent host,
leaving hosts silent together alone, draining one."""

from __future__ import annotations

from unittest.mock import MagicMock, create_autospec
from uuid import uuid4

import pytest

from workers.domain import ControllerView, HostInfo, HostRoute, HostStatus, ProbeReach
from workers.errors import InfrastructureUnavailable
from workers.executors import HostExecutor
from workers.executors.host_executor import HEARD_AGAIN
from workers.policies.host_liveness import LivenessRules
from workers.ports import HostRegistry, HostSignals


@pytest.fixture
def registry() -> MagicMock:
    mock: MagicMock = create_autospec(HostRegistry, instance=True)
    mock.observe.return_value = ControllerView(seeing_for_s=3600)
    return mock


@pytest.fixture
def signals() -> MagicMock:
    mock: MagicMock = create_autospec(HostSignals, instance=True)
    mock.heartbeat_ages_s.return_value = {}
    mock.probe_reach.return_value = {}
    return mock


@pytest.fixture
def executor(registry: MagicMock, signals: MagicMock) -> HostExecutor:
    return HostExecutor(host_registry=registry, host_signals=signals,
                        rules=LivenessRules(lost_after_s=10), blind_after_s=5)  # fmt: skip


def _host(name: str, **fields: object) -> HostInfo:
    return HostInfo(uuid4(), name, f"10.0.0.{name[-1]}", **fields)  # type: ignore[arg-type]


def test_a_host_silent_for_lost_after_is_lost_and_its_sessions_given_up(
    executor: HostExecutor, registry: MagicMock
) -> None:
    silent = _host("h1", heartbeat_age_s=12.3)
    fine = [_host(f"h{i}", heartbeat_age_s=1.0) for i in (2, 3)]
    registry.give_up_hosts.return_value = {"h1": 2}
    result = executor.check_hosts([silent, *fine])
    [error] = result.errors
    assert (error.host_info, error.error_code) == (silent, "host_lost")
    assert error.error_detail == "host h1 lost (no heartbeat for 12 s)"
    assert result.successes == fine
    registry.give_up_hosts.assert_called_once_with({"h1": 12.3})
    registry.observe.assert_called_once_with(5)


def test_no_silent_host_gives_up_nothing(executor: HostExecutor, registry: MagicMock) -> None:
    assert executor.check_hosts([_host("h1", heartbeat_age_s=9.9)]).errors == []
    registry.give_up_hosts.assert_not_called()


def test_most_hosts_silent_are_unreachable_waiting_with_why_and_nothing_given_up(
    executor: HostExecutor, registry: MagicMock
) -> None:
    hosts = [_host(f"h{i}", heartbeat_age_s=15) for i in (1, 2, 3)] + [_host("h4")]
    result = executor.check_hosts(hosts)
    registry.give_up_hosts.assert_not_called()
    assert result.waiting == hosts[:3]
    why = result.reasons[hosts[0].id]
    assert (why.error_code, why.error_detail[:30]) == (
        "host_unreachable",
        "3 of 4 hosts silent at once (m",
    )


def test_a_host_the_registry_found_lost_already_is_not_an_error_twice(
    executor: HostExecutor, registry: MagicMock
) -> None:
    silent = _host("h1", heartbeat_age_s=12)
    registry.give_up_hosts.return_value = {}  # another run gave it up a moment ago
    result = executor.check_hosts([silent, _host("h2"), _host("h3")])
    assert result.errors == []


def test_unreadable_redis_heartbeats_leave_postgresql_to_decide(
    executor: HostExecutor, registry: MagicMock, signals: MagicMock
) -> None:
    signals.heartbeat_ages_s.side_effect = InfrastructureUnavailable("redis unavailable")
    registry.give_up_hosts.return_value = {"h1": 1}
    result = executor.check_hosts([_host("h1", heartbeat_age_s=11), _host("h2"), _host("h3")])
    assert [e.host_info.name for e in result.errors] == ["h1"]


def test_a_heartbeating_host_whose_replicas_no_probe_reaches_takes_no_new_session(
    executor: HostExecutor, registry: MagicMock, signals: MagicMock
) -> None:
    cut, fine = _host("h1"), _host("h2")
    signals.probe_reach.return_value = {
        "h1": ProbeReach(passed_s_ago=30, unreached_s_ago=2, detail="/health: no connection"),
        "h2": ProbeReach(passed_s_ago=1, unreached_s_ago=50),
    }
    assert executor.check_hosts([cut, fine]).successes == [cut, fine]
    [[failing, cleared]] = [call.args for call in registry.note_probes.call_args_list]
    assert set(failing) == {"h1"}
    assert failing["h1"].startswith("probes of its replicas get no answer (/health: no connection)")
    assert cleared == frozenset()
    registry.note_probes.reset_mock()
    marked = _host("h1", probes_failing=True)
    signals.probe_reach.return_value = {"h1": ProbeReach(passed_s_ago=0.5, unreached_s_ago=2)}
    executor.check_hosts([marked, fine])
    registry.note_probes.assert_called_once_with({}, frozenset({"h1"}))


def test_a_host_heard_again_is_restored(executor: HostExecutor, registry: MagicMock) -> None:
    back = _host("h1", status=HostStatus.UNREACHABLE, heartbeat_age_s=1)
    assert executor.check_hosts([back]).successes == [back]
    registry.restore_hosts.assert_called_once_with({"h1"}, HEARD_AGAIN)


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
