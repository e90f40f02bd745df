"""Which silent hosts are given up, as a table: the disruption guard, the rate limit, the
controller's own blind spell, and a host heard in Redis only."""

from __future__ import annotations

from uuid import uuid4

import pytest

from workers.domain import HostInfo, HostStatus
from workers.policies.host_liveness import LivenessRules, Signals, judge

RULES = LivenessRules(lost_after_s=10, disruption_threshold=0.55, give_up_interval_s=10)
WATCHING = 3600.0  # the controller has been seeing for an hour


def _hosts(*ages_s: float, status: HostStatus = HostStatus.READY) -> list[HostInfo]:
    return [HostInfo(uuid4(), f"h{i + 1}", f"10.0.0.{i + 1}", status=status,
                     heartbeat_age_s=age) for i, age in enumerate(ages_s)]  # fmt: skip


def test_three_of_four_hosts_silent_at_once_none_is_given_up() -> None:
    verdict = judge(_hosts(12, 11, 13, 1), Signals(WATCHING), RULES)
    assert verdict.give_up == {}
    assert verdict.disrupted
    assert set(verdict.unreachable) == {"h1", "h2", "h3"}
    assert verdict.unreachable["h1"].startswith("3 of 4 hosts silent at once")


def test_one_of_four_silent_is_given_up() -> None:
    verdict = judge(_hosts(12, 1, 1, 1), Signals(WATCHING), RULES)
    assert verdict.give_up == {"h1": 12}
    assert verdict.unreachable == {}


def test_hosts_falling_silent_a_heartbeat_apart_count_together() -> None:
    """h1 crosses 10 s while h2 and h3, silent as long but for a heartbeat, are at 8-9 s:
    they are silent together, and the first across the line is not given up alone."""
    verdict = judge(_hosts(10.5, 8.6, 9.1), Signals(WATCHING), RULES)
    assert (verdict.give_up, verdict.disrupted) == ({}, True)


def test_two_silent_of_ten_are_given_up_one_per_interval_longest_first() -> None:
    hosts = _hosts(15, 11, *[1.0] * 8)
    first = judge(hosts, Signals(WATCHING, since_last_give_up_s=None), RULES)
    assert first.give_up == {"h1": 15}
    assert first.unreachable["h2"].endswith("at most one host is given up every 10 s")
    soon = judge(hosts, Signals(WATCHING, since_last_give_up_s=4), RULES)
    assert (soon.give_up, set(soon.unreachable)) == ({}, {"h1", "h2"})
    later = judge(hosts, Signals(WATCHING, since_last_give_up_s=10), RULES)
    assert later.give_up == {"h1": 15}


def test_after_the_controllers_own_outage_every_host_gets_a_full_lost_after() -> None:
    assert judge(_hosts(30, 1, 1, 1), Signals(seeing_for_s=6), RULES).give_up == {}
    assert judge(_hosts(30, 1, 1, 1), Signals(seeing_for_s=10), RULES).give_up == {"h1": 10}


def test_a_host_heard_in_redis_only_is_unreachable_and_nothing_is_given_up() -> None:
    verdict = judge(_hosts(40, 1, 1), Signals(WATCHING, redis_ages_s={"h1": 0.5}), RULES)
    assert verdict.give_up == {}
    assert verdict.unreachable["h1"].startswith(
        "host h1 heard in Redis but not in PostgreSQL for 40 s"
    )


def test_a_host_silent_in_both_stores_counts_the_fresher_one() -> None:
    verdict = judge(_hosts(40, 1, 1), Signals(WATCHING, redis_ages_s={"h1": 12}), RULES)
    assert verdict.give_up == {"h1": 12}


@pytest.mark.parametrize("status", [HostStatus.CORDONED, HostStatus.UNREACHABLE])
def test_an_unreachable_host_heard_again_is_restored_others_are_left(
    status: HostStatus,
) -> None:
    verdict = judge(_hosts(1, status=status), Signals(WATCHING), RULES)
    assert verdict.restore == (["h1"] if status is HostStatus.UNREACHABLE else [])
    assert (verdict.give_up, verdict.unreachable) == ({}, {})


def test_lost_hosts_are_not_judged_and_do_not_count() -> None:
    lost = _hosts(500, 500, status=HostStatus.LOST)
    live = [HostInfo(uuid4(), "h9", "10.0.0.9", heartbeat_age_s=12)]
    assert judge([*lost, *live], Signals(WATCHING), RULES).give_up == {"h9": 12}


def test_a_threshold_of_one_gives_up_even_when_all_are_silent() -> None:
    rules = LivenessRules(lost_after_s=10, disruption_threshold=1.0, give_up_interval_s=0)
    assert judge(_hosts(12, 11), Signals(WATCHING), rules).give_up == {"h1": 12}
