"""The controller's own metrics on `GET /metrics` of `service-discovery serve`, scraped while
real workers run the phases, parsed with prometheus_client's parser, and held against the
`phase_runs` rows: the system of record."""

from __future__ import annotations

import urllib.request
from collections import Counter, defaultdict

import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from beat_schedule import PHASE_INTERVALS_S
from tests.e2e.conftest import APP_PROXY_TOKEN, Stack
from tests.factories import make_deployment, make_route
from workers.adapters.postgres.schema import deployments, phase_runs, routes
from workers.devtools.processes import modelfleet, wait_for
from workers.devtools.throwaway_servers import free_port
from workers.domain import ACTIVE_ROUTE_STATUSES, DeploymentLifecycle, RouteStatus

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def _scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples: Samples = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def _answers(url: str) -> bool:
    try:
        _scrape(url)
    except OSError:
        return False
    return True


def test_metrics_match_the_phase_runs_rows(stack: Stack) -> None:
    stack.catalog.create_scaling_group("rg", app_proxy_addr=stack.proxy.addr,
                                       app_proxy_api_token=APP_PROXY_TOKEN)  # fmt: skip
    serving = stack.catalog.create_deployment(make_deployment(
        name="svc", resource_group="rg", replica_count=2, lifecycle=DeploymentLifecycle.READY
    ))  # fmt: skip
    stack.catalog.add_routes([make_route(serving, status=RouteStatus.HEALTHY) for _ in range(2)])
    port = free_port()
    stack.start("sd", modelfleet("service-discovery", "serve", f"--port={port}"))
    url = f"http://127.0.0.1:{port}/metrics"
    wait_for(lambda: _answers(url), timeout_s=30, what="/metrics to answer")
    before = _scrape(url)["modelfleet_phase_runs_total"]  # no run yet: each series at 0
    assert {(dict(k)["phase"], dict(k)["state"]) for k in before} == {
        (phase, state)
        for phase in PHASE_INTERVALS_S
        for state in ("succeeded", "failed", "recovered")
    }
    assert set(before.values()) == {0.0}
    worker = stack.ready_worker()
    beat = stack.beat()
    during = wait_for(lambda: _scrape(url),
                      lambda s: sum(s["modelfleet_phase_runs_total"].values()) >= 20,
                      timeout_s=60, what="twenty runs counted while phases run")  # fmt: skip
    assert during["modelfleet_metrics_source_up"] == {
        (("source", "postgres"),): 1.0, (("source", "redis"),): 1.0,
    }  # fmt: skip
    beat.stop()
    worker.stop()  # a warm shutdown: the runs it had close first

    scraped = _scrape(url)
    closed = stack.query(sa.select(phase_runs).where(phase_runs.c.state != "running"))
    runs = Counter((r["phase"], r["state"]) for r in closed)
    assert {
        (dict(labels)["phase"], dict(labels)["state"]): value
        for labels, value in scraped["modelfleet_phase_runs_total"].items()
        if value  # every other phase x state is there too, at 0
    } == runs
    for phase in {r["phase"] for r in closed}:
        mine = [r for r in closed if r["phase"] == phase]
        assert scraped["modelfleet_phase_run_duration_seconds_count"][(("phase", phase),)] == len(
            mine
        )
        assert scraped["modelfleet_phase_transitions_total"][(("phase", phase),)] == sum(
            r["transition_count"] for r in mine
        )
        successes = [r["finished_at"].timestamp() for r in mine if r["state"] == "succeeded"]
        assert scraped["modelfleet_phase_last_success_timestamp_seconds"][
            (("phase", phase),)
        ] == round(max(successes), 3)
    items = sum(scraped["modelfleet_phase_items_total"].values())
    assert items == sum(r["success_count"] + r["error_count"] + r["stale_count"]
                        + r["skipped_count"] + r["missing_count"] for r in closed)  # fmt: skip
    statuses = Counter(r["status"] for r in stack.query(sa.select(routes.c.status)))
    assert {dict(k)["status"]: v for k, v in scraped["modelfleet_routes"].items()} == {
        status.value: float(statuses[status.value]) for status in RouteStatus
    }
    active = sum(statuses[s] for s in ACTIVE_ROUTE_STATUSES)
    replicas = {
        kind: scraped[f"modelfleet_deployment_replicas_{kind}"][(("deployment", "svc"),)]
        for kind in ("desired", "current", "healthy")
    }
    assert replicas == {"desired": 2.0, "current": active, "healthy": statuses["healthy"]}
    [lifecycle] = [r["lifecycle"] for r in stack.query(sa.select(deployments.c.lifecycle))]
    assert {k: v for k, v in scraped["modelfleet_deployments"].items() if v} == {
        (("lifecycle", lifecycle),): 1.0
    }
    delays = scraped["modelfleet_phase_start_delay_seconds_count"]
    assert sum(delays.values()) >= 10, "beat's ticks measure queue lag, every one of them"
