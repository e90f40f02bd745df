"""The controller's counters in Redis and their Prometheus text, on real Redis and
PostgreSQL; and the Grafana dashboard asks only for names that text has."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import redis
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import make_deployment, make_route
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.reports import Reports
from workers.adapters.postgres.schema import deployments as deployments_table
from workers.adapters.postgres.schema import hosts
from workers.adapters.postgres.schema import routes as routes_table
from workers.adapters.redis.controller_metrics import RedisControllerMetrics
from workers.adapters.redis.keys import RedisKeys
from workers.domain import DeploymentLifecycle, RouteStatus
from workers.phase_runs import OutcomeCounts, PhaseRun, PhaseRunState, RunSummary
from workers.web.metrics import exposition

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

    found = _parsed(exposition(counters, Reports(engine=engine), PHASES))
    drain = frozenset({("phase", "routes.drain")})
    assert _counted(found["modelfleet_phase_runs_total"]) == {
        drain | {("state", "succeeded")}: 1.0, drain | {("state", "failed")}: 1.0,
    }  # fmt: skip
    buckets = found["modelfleet_phase_run_duration_seconds_bucket"]
    assert buckets[drain | {("le", "0.001")}] == 0  # buckets from 1 ms: no-op runs show
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
    delays = found["modelfleet_phase_start_delay_seconds_bucket"]
    assert (delays[drain | {("le", "0.025")}], delays[drain | {("le", "0.05")}]) == (0, 1)
    assert found["modelfleet_phase_start_delay_seconds_sum"][drain] == 0.042
    assert found["modelfleet_autoscaling_decisions_total"] == {
        frozenset({("deployment", "svc"), ("direction", "up")}): 1.0,
        frozenset({("deployment", "svc"), ("direction", "down")}): 0.0,
    }
    svc = frozenset({("deployment", "svc")})
    assert found["modelfleet_deployment_replicas_desired"] == {svc: 3}
    assert found["modelfleet_deployment_replicas_current"] == {svc: 0}
    assert found["modelfleet_deployment_replicas_healthy"] == {svc: 0}
    assert _counted(found["modelfleet_deployments"]) == {frozenset({("lifecycle", "pending")}): 1.0}


PHASES = ["routes.drain", "routes.provision"]


def _counted(
    samples: dict[frozenset[tuple[str, str]], float],
) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for labels, value in samples.items() if value}


def test_every_known_series_is_there_at_0_before_anything_happens(
    redis_client: redis.Redis, redis_keys: RedisKeys, engine: sa.Engine, catalog: Catalog
) -> None:
    """A series that first appears at 1 reads as 0 in `increase()`: the first failed run,
    lock contention or autoscaling decision would be invisible to an alert."""
    catalog.create_scaling_group("sg1")
    catalog.create_deployment(make_deployment(name="svc"))
    counters = RedisControllerMetrics(client=redis_client, keys=redis_keys)
    found = _parsed(exposition(counters, Reports(engine=engine), PHASES))
    runs = found["modelfleet_phase_runs_total"]
    assert set(runs) == {
        frozenset({("phase", p), ("state", s)})
        for p in PHASES for s in ("succeeded", "failed", "recovered")
    }  # fmt: skip
    assert set(runs.values()) == {0.0}
    assert len(found["modelfleet_phase_items_total"]) == len(PHASES) * 6  # buckets + missing
    assert found["modelfleet_phase_lock_busy_total"] == {
        frozenset({("phase", p)}): 0.0 for p in PHASES
    }
    assert found["modelfleet_phase_run_duration_seconds_count"] == {
        frozenset({("phase", p)}): 0.0 for p in PHASES
    }
    assert set(found["modelfleet_autoscaling_decisions_total"].values()) == {0.0}
    assert len(found["modelfleet_autoscaling_decisions_total"]) == 2  # svc: up, down
    assert {dict(k)["lifecycle"] for k in found["modelfleet_deployments"]} == {
        lifecycle.value for lifecycle in DeploymentLifecycle
    }
    assert {dict(k)["status"] for k in found["modelfleet_routes"]} == {
        status.value for status in RouteStatus
    }


def test_a_status_whose_last_route_left_it_reads_0_and_old_routes_are_not_counted(
    redis_client: redis.Redis, redis_keys: RedisKeys, engine: sa.Engine, catalog: Catalog
) -> None:
    catalog.create_scaling_group("sg1")
    live = catalog.create_deployment(make_deployment(name="svc"))
    gone = catalog.create_deployment(
        make_deployment(name="old", lifecycle=DeploymentLifecycle.DESTROYED)
    )
    route = make_route(live, status=RouteStatus.DRAINING)
    catalog.add_routes([route, make_route(gone, status=RouteStatus.TERMINATED)])
    counters = RedisControllerMetrics(client=redis_client, keys=redis_keys)

    def routes_by_status() -> dict[str, float]:
        found = _parsed(exposition(counters, Reports(engine=engine), PHASES))
        return {dict(k)["status"]: v for k, v in found["modelfleet_routes"].items()}

    assert (routes_by_status()["draining"], routes_by_status()["terminated"]) == (1, 0)
    with engine.begin() as conn:
        conn.execute(
            sa.update(routes_table).where(routes_table.c.id == route.id).values(status="terminated")
        )
    assert (routes_by_status()["draining"], routes_by_status()["terminated"]) == (0, 1)


def test_a_destroyed_deployments_series_go_after_a_last_scrape_window(
    redis_client: redis.Redis, redis_keys: RedisKeys, engine: sa.Engine, catalog: Catalog
) -> None:
    catalog.create_scaling_group("sg1")
    for name in ("kept", "recent", "long-gone"):
        catalog.create_deployment(make_deployment(name=name))
    counters = RedisControllerMetrics(client=redis_client, keys=redis_keys)
    for name in ("kept", "recent", "long-gone"):
        counters.autoscaling_decision(name, "up", "m", 1.0)
    with engine.begin() as conn:
        for name, ago in (("recent", "1 minute"), ("long-gone", "11 minutes")):
            conn.execute(
                sa.update(deployments_table)
                .where(deployments_table.c.name == name)
                .values(
                    lifecycle="destroyed", destroyed_at=sa.func.now() - sa.text(f"interval '{ago}'")
                )
            )
    exposition(counters, Reports(engine=engine), PHASES)  # the scrape that forgets
    found = _parsed(exposition(counters, Reports(engine=engine), PHASES))
    named = {dict(k)["deployment"] for k in found["modelfleet_autoscaling_decisions_total"]}
    assert named == {"kept", "recent"}  # recent: counted, its last value still visible
    assert {dict(k)["deployment"] for k in found["modelfleet_autoscaling_last_metric_value"]} == {
        "kept",
        "recent",
    }


def test_promtool_finds_nothing_to_fix_in_the_text(
    redis_client: redis.Redis, redis_keys: RedisKeys, engine: sa.Engine, catalog: Catalog
) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed: apt-get install prometheus (.ci/run does)"
    catalog.create_scaling_group("sg1")
    catalog.create_deployment(make_deployment(name="svc"))
    counters = RedisControllerMetrics(client=redis_client, keys=redis_keys)
    counters.run_closed(_closed_run("routes.drain", PhaseRunState.SUCCEEDED, 0.3))
    counters.start_delay("routes.drain", 0.1)
    counters.autoscaling_decision("svc", "up", "m", 1.0)
    text = exposition(counters, Reports(engine=engine), PHASES)
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                             timeout=30, check=False)  # fmt: skip
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, b"")


def test_a_dead_redis_leaves_its_families_out_and_says_so(
    engine: sa.Engine, catalog: Catalog
) -> None:
    catalog.create_scaling_group("sg1")
    catalog.create_deployment(make_deployment(name="svc"))
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    counters = RedisControllerMetrics(client=dead, keys=RedisKeys("x"))
    counters.lock_busy("routes.drain")  # recording never raises
    found = _parsed(exposition(counters, Reports(engine=engine), PHASES))
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
    with engine.begin() as conn:  # a host its agent registered
        conn.execute(hosts.insert().values(id=uuid4(), name="h1", address="10.0.0.1"))
    served = set(_parsed(exposition(counters, Reports(engine=engine), PHASES)))
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    asked = {name for expr in exprs for name in re.findall(r"modelfleet_\w+", expr)}
    assert asked
    assert asked <= served, asked - served


def test_importing_the_dashboard_asks_for_a_prometheus_data_source() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    [wanted] = dashboard["__inputs"]
    assert (wanted["type"], wanted["pluginId"]) == ("datasource", "prometheus")
    [variable] = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["current"]["value"] == "${" + wanted["name"] + "}"
    uses = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uses == {"${" + variable["name"] + "}"}
