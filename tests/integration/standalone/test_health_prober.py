"""The health prober against real sample servers, writing into real Redis."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

import pytest
import redis
import requests
import sqlalchemy as sa
from click.testing import Result

from tests.factories import make_deployment, make_revision, make_route
from tests.integration.sample_servers import SampleServer, run_route_on
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.schema import sessions
from workers.adapters.redis.health import RedisHealthStore
from workers.adapters.redis.hosts import RedisHostSignals, RedisProbeSignals
from workers.adapters.redis.keys import RedisKeys
from workers.domain import HealthCheckConfig, HealthCheckStatus, RouteStatus
from workers.errors import InfrastructureUnavailable
from workers.standalone.prober import FIRST_PROBES_EVERY_S, HealthProber


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


@pytest.fixture
def prober(engine: sa.Engine, health_store: RedisHealthStore) -> HealthProber:
    return HealthProber(engine=engine, health_store=health_store)


def _route_on(
    engine: sa.Engine, catalog: Catalog, port: int, *, initial_delay_s: float = 0.0
) -> UUID:
    """A healthy-looking route whose running session listens on `port`."""
    health = HealthCheckConfig(
        path="/health", interval_s=0.0, timeout_s=0.5, initial_delay_s=initial_delay_s,
        max_retries=2,
    )  # fmt: skip
    return _route_with(engine, catalog, port, health)


def _route_with(
    engine: sa.Engine, catalog: Catalog, port: int, health: HealthCheckConfig, **route: object
) -> UUID:
    catalog.create_scaling_group(f"sg-{port}")
    deployment = catalog.create_deployment(
        make_deployment(
            resource_group=f"sg-{port}", target_revision=make_revision(health_check=health)
        )
    )
    added = make_route(deployment, status=RouteStatus.DEGRADED, **route)
    run_route_on(engine, catalog, deployment, added, port)
    return added.id


def _status(store: RedisHealthStore, route_id: UUID) -> HealthCheckStatus | None:
    found = store.check_route_health_status([str(route_id)]).get(str(route_id))
    return None if found is None else found.status


def _undecided(store: RedisHealthStore, route_id: UUID) -> str | None:
    """What the probe saw of a route whose readiness is not decided yet: its record reads
    as never probed (stale, as if absent), and says what the probes see."""
    found = store.check_route_health_status([str(route_id)])[str(route_id)]
    assert (found.status, found.last_readiness_at) == (HealthCheckStatus.STALE, None)
    return found.detail


def test_a_healthy_model_is_reported_ready(
    prober: HealthProber, pool: ThreadPoolExecutor, engine: sa.Engine, catalog: Catalog,
    health_store: RedisHealthStore, sample_server: Callable[[str], SampleServer],
) -> None:  # fmt: skip
    route_id = _route_on(engine, catalog, sample_server("m").port)
    assert prober.tick(pool) == {str(route_id): True}
    assert _status(health_store, route_id) is HealthCheckStatus.HEALTHY


def test_a_failing_model_is_unhealthy_only_once_its_budget_is_spent(
    prober: HealthProber, pool: ThreadPoolExecutor, engine: sa.Engine, catalog: Catalog,
    health_store: RedisHealthStore, sample_server: Callable[[str], SampleServer],
) -> None:  # fmt: skip
    server = sample_server("m")
    route_id = _route_on(engine, catalog, server.port)
    requests.post(f"{server.url}/admin/fail-health", timeout=2)
    assert prober.tick(pool) == {}  # one failure of a budget of two: nothing said yet
    assert _undecided(health_store, route_id) == "/health answered 503"
    assert prober.tick(pool) == {str(route_id): False}
    assert _status(health_store, route_id) is HealthCheckStatus.UNHEALTHY
    requests.post(f"{server.url}/admin/recover", timeout=2)
    assert prober.tick(pool) == {str(route_id): True}


def test_a_model_slower_than_the_timeout_fails_its_probe(
    prober: HealthProber, pool: ThreadPoolExecutor, engine: sa.Engine, catalog: Catalog
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        route_id = _route_on(engine, catalog, silent.getsockname()[1])
        assert prober.tick(pool) == {}
        assert prober.tick(pool) == {str(route_id): False}


def test_failures_during_the_initial_delay_do_not_count(
    prober: HealthProber, pool: ThreadPoolExecutor, engine: sa.Engine, catalog: Catalog,
    health_store: RedisHealthStore, sample_server: Callable[[str], SampleServer],
) -> None:  # fmt: skip
    server = sample_server("m")
    route_id = _route_on(engine, catalog, server.port, initial_delay_s=60)
    requests.post(f"{server.url}/admin/fail-health", timeout=2)
    for _ in range(5):
        assert prober.tick(pool) == {}
    assert _undecided(health_store, route_id) == "/health answered 503"


def test_only_changes_of_readiness_are_announced_on_the_feed(
    prober: HealthProber, pool: ThreadPoolExecutor, engine: sa.Engine, catalog: Catalog,
    health_store: RedisHealthStore, sample_server: Callable[[str], SampleServer],
) -> None:  # fmt: skip
    server = sample_server("m")
    route_id = _route_on(engine, catalog, server.port)
    prober.tick(pool)
    assert health_store.take_changes() == [str(route_id)]  # first readiness: a change
    prober.tick(pool)
    assert health_store.take_changes() == []  # the same again: written, not announced
    requests.post(f"{server.url}/admin/fail-health", timeout=2)
    prober.tick(pool)
    prober.tick(pool)
    assert health_store.take_changes() == [str(route_id)]


def test_a_route_not_yet_healthy_is_probed_twice_a_second_not_every_interval(
    prober: HealthProber, pool: ThreadPoolExecutor, engine: sa.Engine, catalog: Catalog,
    sample_server: Callable[[str], SampleServer],
) -> None:  # fmt: skip
    server = sample_server("m")
    slow = HealthCheckConfig(path="/health", interval_s=10, max_retries=3, initial_delay_s=0)
    route_id = _route_with(engine, catalog, server.port, slow)
    requests.post(f"{server.url}/admin/fail-health", timeout=2)
    assert prober.tick(pool) == {}  # still loading
    requests.post(f"{server.url}/admin/recover", timeout=2)
    time.sleep(FIRST_PROBES_EVERY_S + 0.1)
    assert prober.tick(pool) == {str(route_id): True}  # half a second later, not ten


def test_what_the_probe_saw_is_kept_beside_the_readiness(
    prober: HealthProber, pool: ThreadPoolExecutor, engine: sa.Engine, catalog: Catalog,
    health_store: RedisHealthStore, sample_server: Callable[[str], SampleServer],
) -> None:  # fmt: skip
    server = sample_server("m")
    route_id = _route_on(engine, catalog, server.port)
    requests.post(f"{server.url}/admin/fail-health", timeout=2)
    prober.tick(pool)
    prober.tick(pool)
    seen = health_store.check_route_health_status([str(route_id)])[str(route_id)]
    assert (seen.status, seen.detail) == (HealthCheckStatus.UNHEALTHY, "/health answered 503")


def test_a_restarted_prober_knows_which_routes_were_healthy_before(
    prober: HealthProber, pool: ThreadPoolExecutor, engine: sa.Engine, catalog: Catalog,
    sample_server: Callable[[str], SampleServer],
) -> None:  # fmt: skip
    """One failed probe of a route that served: unhealthy after its retries (here one), not
    held back by a startup budget that only a route never healthy gets."""
    server = sample_server("m")
    check = HealthCheckConfig(path="/health", interval_s=30, max_retries=1, initial_delay_s=0)
    served = _route_with(engine, catalog, server.port, check, ever_healthy=True)
    starting = _route_with(engine, catalog, sample_server("n").port, check)
    requests.post(f"{server.url}/admin/fail-health", timeout=2)
    assert prober.tick(pool) == {str(served): False, str(starting): True}


def test_it_probes_the_routes_it_last_listed_while_the_database_is_down(
    prober: HealthProber, pool: ThreadPoolExecutor, engine: sa.Engine, catalog: Catalog, *,
    sample_server: Callable[[str], SampleServer], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    server = sample_server("m")
    route_id = _route_on(engine, catalog, server.port)
    assert prober.tick(pool) == {str(route_id): True}

    def database_down() -> list[object]:
        raise InfrastructureUnavailable("database unavailable: connection refused")

    monkeypatch.setattr(prober, "targets", database_down)
    requests.post(f"{server.url}/admin/fail-health", timeout=2)
    prober.tick(pool)
    assert prober.tick(pool) == {str(route_id): False}  # still probed, still judged


def test_a_pass_says_the_prober_lives_and_what_it_saw_of_each_host(
    engine: sa.Engine, catalog: Catalog, health_store: RedisHealthStore, *,
    redis_client: redis.Redis, redis_keys: RedisKeys, pool: ThreadPoolExecutor,
    sample_server: Callable[[str], SampleServer], run: Callable[..., Result],
) -> None:  # fmt: skip
    signals = RedisProbeSignals(client=redis_client, keys=redis_keys)
    prober = HealthProber(engine=engine, health_store=health_store, signals=signals, name="p1")
    good = _route_on(engine, catalog, sample_server("m").port)
    with engine.begin() as conn:
        conn.execute(sessions.update().values(placed_on="host-a"))
    assert prober.tick(pool) == {str(good): True}
    reach = RedisHostSignals(client=redis_client, keys=redis_keys).probe_reach()
    assert reach["host-a"].passed_s_ago is not None
    assert reach["host-a"].unreached_s_ago is None
    [p1] = json.loads(run("status", "--json").output)["probers"]
    assert (p1["name"], p1["state"]) == ("p1", "probing")
    redis_client.hset(redis_keys.prober_heartbeats, "p1", float(redis_client.time()[0]) - 30)
    [p1] = json.loads(run("status", "--json").output)["probers"]
    assert p1["state"] == "silent"
    assert "p1" in run("status").output
