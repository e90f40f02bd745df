"""RedisHealthStore on a real Redis: wire format, the server clock, TTLs, malformed data."""

from __future__ import annotations

import logging
import time
from uuid import uuid4

import pytest
import redis

from tasks.feeds import Watcher
from workers.adapters.redis.client import server_time_s
from workers.adapters.redis.health import RedisHealthStore
from workers.adapters.redis.keys import RedisKeys
from workers.celery import app
from workers.devtools.processes import wait_for
from workers.domain import HealthCheckStatus
from workers.errors import InfrastructureUnavailable
from workers.phase_names import PhaseName


def _write(client: redis.Redis, keys: RedisKeys, route_id: str, **fields: str) -> None:
    client.hset(keys.route_health(route_id), mapping=fields)  # type: ignore[arg-type]


def _server_now(client: redis.Redis) -> float:
    return server_time_s(client.time())


def test_probe_results_read_back_as_healthy_and_unhealthy(health_store: RedisHealthStore) -> None:
    up, down = str(uuid4()), str(uuid4())
    health_store.update_readiness({up: True, down: False})
    statuses = health_store.check_route_health_status([up, down, str(uuid4())])
    assert {k: v.status for k, v in statuses.items()} == {
        up: HealthCheckStatus.HEALTHY,
        down: HealthCheckStatus.UNHEALTHY,
    }


def test_the_wire_format_is_the_app_proxy_one(
    health_store: RedisHealthStore, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    route_id = str(uuid4())
    health_store.update_readiness({route_id: True})
    key = redis_keys.route_health(route_id)
    fields = redis_client.hgetall(key)
    assert set(fields) == {"readiness", "last_readiness", "created_at"}
    assert fields["readiness"] == "1"
    assert abs(float(fields["last_readiness"]) - _server_now(redis_client)) < 5
    assert 115 <= redis_client.ttl(key) <= 120


@pytest.mark.parametrize(("age_s", "stale"), [(299, False), (301, True)])
def test_readiness_older_than_300_s_by_the_redis_clock_is_stale(
    health_store: RedisHealthStore,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
    age_s: int,
    stale: bool,
) -> None:
    route_id = str(uuid4())
    last = _server_now(redis_client) - age_s
    _write(redis_client, redis_keys, route_id, readiness="1", last_readiness=str(last))
    status = health_store.check_route_health_status([route_id])[route_id]
    assert status.status == (HealthCheckStatus.STALE if stale else HealthCheckStatus.HEALTHY)
    assert status.last_readiness_at == pytest.approx(last)


def test_an_initialised_route_reads_stale_until_probed_and_keeps_its_creation_time(
    health_store: RedisHealthStore, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    route_id = str(uuid4())
    health_store.initialize_routes([route_id])
    assert health_store.check_route_health_status([route_id])[route_id].status is (
        HealthCheckStatus.STALE
    )
    created = redis_client.hget(redis_keys.route_health(route_id), "created_at")
    health_store.update_readiness({route_id: True})
    assert redis_client.hget(redis_keys.route_health(route_id), "created_at") == created
    assert health_store.check_route_health_status([route_id])[route_id].status is (
        HealthCheckStatus.HEALTHY
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"readiness": "yes", "last_readiness": "1"},
        {"readiness": "1", "last_readiness": "yesterday"},
        {"readiness": "1", "last_readiness": "nan"},
        {"readiness": "1"},
        {"created_at": "1"},
    ],
)
def test_a_malformed_record_is_logged_and_treated_as_missing(
    health_store: RedisHealthStore,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
    caplog: pytest.LogCaptureFixture,
    fields: dict[str, str],
) -> None:
    bad, good = str(uuid4()), str(uuid4())
    _write(redis_client, redis_keys, bad, **fields)
    health_store.update_readiness({good: True})
    with caplog.at_level(logging.WARNING):
        statuses = health_store.check_route_health_status([bad, good])
    assert list(statuses) == [good]
    assert f"route {bad}: malformed health record" in caplog.text


def test_no_routes_no_round_trip(redis_keys: RedisKeys, unreachable_redis: redis.Redis) -> None:
    store = RedisHealthStore(client=unreachable_redis, keys=redis_keys)
    assert store.check_route_health_status([]) == {}


def test_an_unreachable_redis_is_infrastructure_unavailable(
    redis_keys: RedisKeys, unreachable_redis: redis.Redis
) -> None:
    store = RedisHealthStore(client=unreachable_redis, keys=redis_keys)
    with pytest.raises(InfrastructureUnavailable, match="redis unavailable"):
        store.check_route_health_status([str(uuid4())])


@pytest.mark.parametrize("wrong_type", ["string", "list", "set"])
def test_a_key_of_the_wrong_type_affects_only_its_own_route(
    health_store: RedisHealthStore,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
    caplog: pytest.LogCaptureFixture,
    wrong_type: str,
) -> None:
    """HGETALL on a string raised for the whole pipeline: 15 of 60 healthy routes were evicted."""
    bad, good = str(uuid4()), [str(uuid4()) for _ in range(3)]
    key = redis_keys.route_health(bad)
    if wrong_type == "string":
        redis_client.set(key, "x")
    elif wrong_type == "list":
        redis_client.rpush(key, "x")
    else:
        redis_client.sadd(key, "x")
    health_store.update_readiness(dict.fromkeys(good, True))
    with caplog.at_level(logging.WARNING):
        statuses = health_store.check_route_health_status([good[0], bad, *good[1:]])
    assert {k: v.status for k, v in statuses.items()} == dict.fromkeys(
        good, HealthCheckStatus.HEALTHY
    )
    assert f"route {bad}: malformed health record (not a hash)" in caplog.text


def test_a_readiness_time_in_the_future_is_malformed(
    health_store: RedisHealthStore, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    """Year 2100 was healthy forever; a small clock skew is still believed."""
    now = _server_now(redis_client)
    future, skewed = str(uuid4()), str(uuid4())
    _write(redis_client, redis_keys, future, readiness="1", last_readiness="4102444800")
    _write(redis_client, redis_keys, skewed, readiness="1", last_readiness=str(now + 5))
    statuses = health_store.check_route_health_status([future, skewed])
    assert {k: v.status for k, v in statuses.items()} == {skewed: HealthCheckStatus.HEALTHY}


def test_a_malformed_record_is_logged_once_per_change_as_a_bounded_excerpt(
    health_store: RedisHealthStore,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
    caplog: pytest.LogCaptureFixture,
) -> None:
    route_id = str(uuid4())
    huge = "x" * 1_000_000
    _write(redis_client, redis_keys, route_id, readiness=huge, last_readiness="1")
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            assert health_store.check_route_health_status([route_id]) == {}
        _write(redis_client, redis_keys, route_id, readiness="maybe")
        health_store.check_route_health_status([route_id])
        health_store.check_route_health_status([route_id])
    lines = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(lines) == 2  # once for the first record, once when it changed
    assert all(len(line) < 400 for line in lines)
    assert "chars)" in lines[0]


def test_the_change_feed_hands_each_announced_route_once_and_keeps_the_hash_format(
    health_store: RedisHealthStore, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    first, second, third = (str(uuid4()) for _ in range(3))
    assert health_store.take_changes() == []
    health_store.update_readiness({first: True, second: True}, changed=[first, second])
    health_store.update_readiness({second: False, third: True}, changed=[second])
    assert health_store.take_changes() == [first, second]  # oldest first, each once
    assert health_store.take_changes() == []
    health_store.update_readiness({third: False}, changed=[third])
    assert health_store.take_changes() == [third]
    # The hashes are exactly what a writer without the feed writes.
    assert set(redis_client.hgetall(redis_keys.route_health(first))) == {
        "readiness", "last_readiness", "created_at",
    }  # fmt: skip


def test_a_watcher_wakes_on_a_change_and_times_out_without_one(
    health_store: RedisHealthStore,
) -> None:
    assert health_store.wait_for_changes("$", block_s=0.2) is None
    health_store.update_readiness({str(uuid4()): True}, changed=["x"])
    newest = health_store.wait_for_changes(health_store.last_taken(), block_s=0.2)
    assert newest is not None  # announced while nobody watched: found at once
    assert health_store.wait_for_changes(newest, block_s=0.2) is None
    assert health_store.take_changes() == ["x"]
    assert health_store.wait_for_changes(health_store.last_taken(), block_s=0.2) is None


def test_a_writer_that_announces_nothing_adds_nothing_to_the_feed(
    health_store: RedisHealthStore, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    health_store.update_readiness({str(uuid4()): True})
    assert redis_client.exists(redis_keys.route_health_changes) == 0


def test_a_feed_watcher_starts_its_phase_on_an_announcement_and_stops_when_told(
    health_store: RedisHealthStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[str] = []
    monkeypatch.setattr(app, "send_task", lambda name, **_: started.append(name))
    watcher = Watcher(PhaseName.HEALTH_CHANGED, lambda: health_store).start()
    try:
        time.sleep(0.3)  # watching
        health_store.update_readiness({str(uuid4()): True}, changed=["x"])
        wait_for(lambda: list(started), lambda s: s == [PhaseName.HEALTH_CHANGED], timeout_s=5,
                 what="the phase started by the watcher")  # fmt: skip
    finally:
        assert watcher.stop(), "the watcher thread is still running"
    health_store.update_readiness({str(uuid4()): True}, changed=["y"])
    time.sleep(0.5)
    assert started == [PhaseName.HEALTH_CHANGED]  # stopped: nothing more
