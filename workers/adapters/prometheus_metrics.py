"""The controller's own metrics in Prometheus' format, made at scrape time.

Counters come from Redis, where every worker process adds to them as runs close
(`RedisControllerMetrics`): right with prefork children and several hosts, with no
multiprocess directory to share. Gauges of the fleet (deployments, routes, replicas)
are read from PostgreSQL, the system of record, at each scrape. A store that cannot
be read leaves its families out and says so in `modelfleet_metrics_source_up`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping

import redis
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from workers.adapters.postgres.reports import Reports
from workers.adapters.redis_controller_metrics import (
    DECISION_VALUE,
    DECISIONS,
    DURATION_BUCKET,
    DURATION_BUCKETS_S,
    DURATION_SUM,
    ITEMS,
    LAST_SUCCESS,
    LOCK_BUSY,
    RUNS,
    START_DELAY,
    TRANSITIONS,
    RedisControllerMetrics,
)
from workers.errors import InfrastructureUnavailable

log = logging.getLogger(__name__)

Values = Mapping[tuple[str, ...], float]
PREFIX = "modelfleet_"
# family in Redis -> (Prometheus name without _total, help, label names)
COUNTERS = {
    RUNS: ("phase_runs", "Phase runs closed, by phase and final state.", ["phase", "state"]),
    ITEMS: ("phase_items", "Items of closed runs, by outcome bucket.", ["phase", "bucket"]),
    TRANSITIONS: ("phase_transitions", "Status changes applied by phase runs.", ["phase"]),
    LOCK_BUSY: ("phase_lock_busy", "Ticks that found their phase busy.", ["phase"]),
    DECISIONS: ("autoscaling_decisions", "Replica counts changed by autoscaling rules.",
                ["deployment", "direction"]),
}  # fmt: skip
GAUGES = {
    LAST_SUCCESS: ("phase_last_success_timestamp_seconds",
                   "When the phase's last successful run closed (unix seconds).", ["phase"]),
    START_DELAY: ("phase_start_delay_seconds",
                  "Queue lag: seconds from a tick being sent to its run starting (last tick).",
                  ["phase"]),
    DECISION_VALUE: ("autoscaling_last_metric_value",
                     "The metric value behind the deployment's last autoscaling decision.",
                     ["deployment", "metric"]),
}  # fmt: skip


class ControllerCollector(Collector):
    def __init__(self, counters: RedisControllerMetrics, reports: Reports) -> None:
        self._counters = counters
        self._reports = reports

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{PREFIX}metrics_source_up",
                               "Whether the store behind these metrics could be read.",
                               labels=["source"])  # fmt: skip
        try:
            yield from _counter_families(self._counters.read())
            up.add_metric(["redis"], 1)
        except (redis.RedisError, InfrastructureUnavailable, OSError) as error:
            log.warning("metrics: Redis cannot be read: %s", error)
            up.add_metric(["redis"], 0)
        try:
            yield from _fleet_families(self._reports)
            up.add_metric(["postgres"], 1)
        except (sa.exc.SQLAlchemyError, InfrastructureUnavailable, OSError) as error:
            log.warning("metrics: PostgreSQL cannot be read: %s", error)
            up.add_metric(["postgres"], 0)
        yield up


def exposition(counters: RedisControllerMetrics, reports: Reports) -> bytes:
    """The text a `GET /metrics` answers."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ControllerCollector(counters, reports))
    return generate_latest(registry)


def _counter_families(read: Mapping[str, Values]) -> Iterator[Metric]:
    for family, (name, documentation, labels) in COUNTERS.items():
        counter = CounterMetricFamily(f"{PREFIX}{name}", documentation, labels=labels)
        for values, number in sorted(read[family].items()):
            counter.add_metric(list(values), number)
        yield counter
    for family, (name, documentation, labels) in GAUGES.items():
        gauge = GaugeMetricFamily(f"{PREFIX}{name}", documentation, labels=labels)
        for values, number in sorted(read[family].items()):
            gauge.add_metric(list(values), number)
        yield gauge
    yield _durations(read[DURATION_BUCKET], read[DURATION_SUM])


def _durations(buckets: Values, sums: Values) -> Metric:
    histogram = HistogramMetricFamily(f"{PREFIX}phase_run_duration_seconds",
                                      "How long phase runs took, open to close.",
                                      labels=["phase"])  # fmt: skip
    bounds = [*(repr(b) for b in DURATION_BUCKETS_S), "+Inf"]
    for (phase,), total in sorted(sums.items()):
        counts = [(bound, buckets.get((phase, bound), 0.0)) for bound in bounds]
        histogram.add_metric([phase], counts, sum_value=total)
    return histogram


def _fleet_families(reports: Reports) -> Iterator[Metric]:
    deployments = GaugeMetricFamily(f"{PREFIX}deployments", "Deployments by lifecycle.",
                                    labels=["lifecycle"])  # fmt: skip
    for lifecycle, count in reports.deployment_counts().items():
        deployments.add_metric([lifecycle], count)
    routes = GaugeMetricFamily(f"{PREFIX}routes", "Routes by status.", labels=["status"])
    for status, count in reports.route_counts().items():
        routes.add_metric([status], count)
    replicas = GaugeMetricFamily(f"{PREFIX}deployment_replicas",
                                 "Replicas of each live deployment: desired, current (active "
                                 "routes) and healthy.", labels=["deployment", "kind"])  # fmt: skip
    for row in reports.deployments():
        if row["lifecycle"] == "destroyed":
            continue
        for kind, count in (("desired", row["desired"]), ("current", row["active_routes"]),
                            ("healthy", row["healthy_routes"])):  # fmt: skip
            replicas.add_metric([row["name"], kind], count)
    yield from (deployments, routes, replicas)
