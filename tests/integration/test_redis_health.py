"""RedisHealthStore on a real Redis: wire format, the server clock, TTLs, malformed data."""

from __future__ import annotations

import logging
from uuid import uuid4

import pytest
import redis

from workers.adapters.redis_client import server_time_s
from workers.adapters.redis_health import RedisHealthStore
from workers.adapters.redis_keys import RedisKeys
from workers.domain import HealthCheckStatus
from workers.errors import InfrastructureUnavailable


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
