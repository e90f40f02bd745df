"""The controller's counters in Redis and their Prometheus text, on real Redis and
PostgreSQL; and the Grafana dashboard asks only for names that text has."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import redis
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import make_deployment, make_route
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.reports import Reports
from workers.adapters.prometheus_metrics import exposition
from workers.adapters.redis_controller_metrics import RedisControllerMetrics
from workers.adapters.redis_keys import RedisKeys
from workers.phase_runs import OutcomeCounts, PhaseRun, PhaseRunState, RunSummary

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "modelfleet-controller.json"


def _parsed(text: bytes) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    found: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return found


def _closed_run(phase: str, state: PhaseRunState, seconds: float) -> PhaseRun:
    started = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    return PhaseRun(
        id=uuid4(), phase=phase, state=state, started_at=started,
        deadline_at=started + timedelta(seconds=120), item_count=3, task_count=1,
        lock_token="t", finished_at=started + timedelta(seconds=seconds), duration_s=seconds,
        summary=RunSummary(OutcomeCounts(success=2, error=1), transition_count=2),
    )  # fmt: skip


def test_closed_runs_and_decisions_become_prometheus_samples(
    redis_client: redis.Redis, redis_keys: RedisKeys, engine: sa.Engine, catalog: Catalog
) -> None:
    catalog.create_scaling_group("sg1")
    catalog.create_deployment(make_deployment(name="svc", replica_count=3))
    counters = RedisControllerMetrics(client=redis_client, keys=redis_keys)
    ok = _closed_run("routes.drain", PhaseRunState.SUCCEEDED, 0.3)
    counters.run_closed(ok)
    counters.run_closed(_closed_run("routes.drain", PhaseRunState.FAILED, 7.0))
    counters.lock_busy("routes.drain")
    counters.start_delay("routes.drain", 0.042)
    counters.autoscaling_decision("svc", "up", "requests_in_flight", 2.7)

    found = _parsed(exposition(counters, Reports(engine=engine)))
    drain = frozenset({("phase", "routes.drain")})
    assert found["modelfleet_phase_runs_total"] == {
        drain | {("state", "succeeded")}: 1.0, drain | {("state", "failed")}: 1.0,
    }  # fmt: skip
    buckets = found["modelfleet_phase_run_duration_seconds_bucket"]
    assert buckets[drain | {("le", "0.25")}] == 0
    assert buckets[drain | {("le", "0.5")}] == 1
    assert buckets[drain | {("le", "+Inf")}] == 2
    assert found["modelfleet_phase_run_duration_seconds_sum"][drain] == 7.3
    assert found["modelfleet_phase_items_total"][drain | {("bucket", "error")}] == 2
    assert found["modelfleet_phase_transitions_total"][drain] == 4
    assert ok.finished_at is not None
    last_success = found["modelfleet_phase_last_success_timestamp_seconds"][drain]
    assert last_success == round(ok.finished_at.timestamp(), 3)
    assert found["modelfleet_phase_lock_busy_total"][drain] == 1
    assert found["modelfleet_phase_start_delay_seconds"][drain] == 0.042
    assert found["modelfleet_autoscaling_decisions_total"] == {
        frozenset({("deployment", "svc"), ("direction", "up")}): 1.0
    }
    assert (
        found["modelfleet_deployment_replicas"][
            frozenset({("deployment", "svc"), ("kind", "desired")})
        ]
        == 3
    )
    assert found["modelfleet_deployments"] == {frozenset({("lifecycle", "pending")}): 1.0}


def test_a_dead_redis_leaves_its_families_out_and_says_so(
    engine: sa.Engine, catalog: Catalog
) -> None:
    catalog.create_scaling_group("sg1")
    catalog.create_deployment(make_deployment(name="svc"))
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    counters = RedisControllerMetrics(client=dead, keys=RedisKeys("x"))
    counters.lock_busy("routes.drain")  # recording never raises
    found = _parsed(exposition(counters, Reports(engine=engine)))
    assert found["modelfleet_metrics_source_up"] == {
        frozenset({("source", "redis")}): 0.0, frozenset({("source", "postgres")}): 1.0,
    }  # fmt: skip
    assert "modelfleet_phase_runs_total" not in found
    assert "modelfleet_deployments" in found


def test_the_dashboard_asks_only_for_names_the_endpoint_serves(
    redis_client: redis.Redis, redis_keys: RedisKeys, engine: sa.Engine, catalog: Catalog
) -> None:
    catalog.create_scaling_group("sg1")
    catalog.add_routes([make_route(catalog.create_deployment(make_deployment(name="svc")))])
    counters = RedisControllerMetrics(client=redis_client, keys=redis_keys)
    counters.run_closed(_closed_run("routes.drain", PhaseRunState.SUCCEEDED, 0.3))
    counters.lock_busy("routes.drain")
    counters.start_delay("routes.drain", 0.1)
    counters.autoscaling_decision("svc", "up", "m", 1.0)
    served = set(_parsed(exposition(counters, Reports(engine=engine))))
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    asked = {name for expr in exprs for name in re.findall(r"modelfleet_\w+", expr)}
    assert asked
    assert asked <= served, asked - served
