"""The metrics collector: real sample servers scraped into real Redis."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests
import sqlalchemy as sa

from tests.factories import make_deployment, make_route
from tests.integration.sample_servers import SampleServer, run_route_on
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.redis.metrics import RedisMetricsStore
from workers.domain import RouteStatus
from workers.standalone.collector import MetricsCollector, parse_prometheus_text

HEALTHY = RouteStatus.HEALTHY


def test_prometheus_text_keeps_finite_samples_and_sums_labelled_ones_by_name() -> None:
    text = ('# HELP x\nup 1\nlat{q="0.5"} 3\nbad NaN\nweird abc\nrequests_total 7 1700000000\n'
            'vllm:num_requests_waiting{model_name="a"} 2\n'
            'vllm:num_requests_waiting{model_name="b"} 5\nttft_bucket{le="1"} 9\n')  # fmt: skip
    assert parse_prometheus_text(text) == {
        "up": 1.0, "requests_total": 7.0, "lat": 3.0, "vllm:num_requests_waiting": 7.0,
    }  # fmt: skip


def test_healthy_routes_are_scraped_per_session_and_averaged_per_deployment(
    engine: sa.Engine,
    catalog: Catalog,
    metrics_store: RedisMetricsStore,
    sample_server: Callable[[str], SampleServer],
) -> None:
    catalog.create_scaling_group("sg1")
    deployment = catalog.create_deployment(make_deployment(replica_count=2))
    servers = [sample_server("a"), sample_server("b")]
    for _ in range(4):  # server a has served 4 requests, server b none
        requests.post(f"{servers[0].url}/v1/completions", json={"prompt": "x"}, timeout=2)
    session_ids = [
        run_route_on(engine, catalog, deployment, make_route(deployment, status=HEALTHY), s.port)
        for s in servers
    ]
    collector = MetricsCollector(engine=engine, metrics=metrics_store)
    with ThreadPoolExecutor(2) as pool:
        written = collector.tick(pool)
    assert written[deployment.id]["model_requests_total"] == 2.0  # (4 + 0) / 2 replicas
    per_deployment, per_session = metrics_store.read([deployment.id], session_ids)
    assert per_deployment[deployment.id]["model_requests_in_flight"] == 0.0
    assert per_session[session_ids[0]]["model_requests_total"] == 4.0
    assert per_session[session_ids[1]]["model_requests_total"] == 0.0
