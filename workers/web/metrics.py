"""The controller's own metrics in Prometheus' format, made at scrape time.

Counters come from Redis, where every worker process adds to them as runs close
(`RedisControllerMetrics`): right with prefork children and several hosts, with no
multiprocess directory to share. Gauges of the fleet (deployments, routes, replicas)
are read from PostgreSQL, the system of record, at each scrape. A store that cannot
be read leaves its families out and says so in `modelfleet_metrics_source_up`.

Every known series is exported from the start, at 0 (each phase x run state, each
phase x outcome bucket, each live deployment x direction, every route status and
lifecycle): to Prometheus a series that first appears with 1 reads as 0 in
`increase()`, so the first failure would be invisible to an alert.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

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
from workers.adapters.redis.controller_metrics import (
    BUCKETS,
    DECISION_VALUE,
    DECISIONS,
    DIRECTIONS,
    DURATION_BUCKET,
    DURATION_BUCKETS_S,
    DURATION_SUM,
    ITEMS,
    LAST_SUCCESS,
    LOCK_BUSY,
    RUN_STATES,
    RUNS,
    START_DELAY_BUCKET,
    START_DELAY_BUCKETS_S,
    START_DELAY_SUM,
    TRANSITIONS,
    RedisControllerMetrics,
    le,
)
from workers.domain import DeploymentLifecycle, HostStatus, RouteStatus
from workers.errors import InfrastructureUnavailable
from workers.phase_names import PhaseName

log = logging.getLogger(__name__)

Values = Mapping[tuple[str, ...], float]
PREFIX = "modelfleet_"
# A destroyed deployment's series stay this long (a last scrape or two sees their end).
FORGET_DESTROYED_AFTER_S = 600
# family in Redis -> (Prometheus name without _total, help, label names)
COUNTERS = {
    RUNS: ("phase_runs", "Phase runs closed, by phase and final state.", ["phase", "state"]),
    ITEMS: ("phase_items", "Items of closed runs, by outcome bucket.", ["phase", "bucket"]),
    TRANSITIONS: ("phase_transitions", "Status changes applied by phase runs.", ["phase"]),
    LOCK_BUSY: ("phase_lock_busy", "Ticks that found their phase busy.", ["phase"]),
    DECISIONS: ("autoscaling_decisions", "Replica counts changed by autoscaling (its rules, or "
                "its traffic autoscaler).",
                ["deployment", "direction"]),
}  # fmt: skip
GAUGES = {
    LAST_SUCCESS: ("phase_last_success_timestamp_seconds",
                   "When the phase's last successful run closed (unix seconds).", ["phase"]),
    DECISION_VALUE: ("autoscaling_last_metric_value",
                     "The metric value behind the deployment's last autoscaling decision.",
                     ["deployment", "metric"]),
}  # fmt: skip


class ControllerCollector(Collector):
    def __init__(
        self, counters: RedisControllerMetrics, reports: Reports, phases: Sequence[str]
    ) -> None:
        self._counters = counters
        self._reports = reports
        self._phases = phases

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{PREFIX}metrics_source_up",
                               "Whether the store behind these metrics could be read.",
                               labels=["source"])  # fmt: skip
        try:
            deployments = self._reports.deployments()
            yield from _fleet_families(self._reports, deployments)
            up.add_metric(["postgres"], 1)
        except (sa.exc.SQLAlchemyError, InfrastructureUnavailable, OSError) as error:
            log.warning("metrics: PostgreSQL cannot be read: %s", error)
            up.add_metric(["postgres"], 0)
            deployments = []
        try:
            known = _Known(self._phases, [d["name"] for d in deployments if _live(d)])
            yield from _counter_families(self._counters.read(), known)
            self._counters.forget_deployments(_long_gone(deployments))
            up.add_metric(["redis"], 1)
        except (redis.RedisError, InfrastructureUnavailable, OSError) as error:
            log.warning("metrics: Redis cannot be read: %s", error)
            up.add_metric(["redis"], 0)
        yield up


def exposition(counters: RedisControllerMetrics, reports: Reports, phases: Sequence[str]) -> bytes:
    """The text a `GET /metrics` answers; `phases`: every phase, each exported from 0."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ControllerCollector(counters, reports, phases))
    return generate_latest(registry)


class _Known:
    """The label sets exported at 0 before anything is counted."""

    def __init__(self, phases: Sequence[str], deployments: Sequence[str]) -> None:
        self.phases = sorted(phases)
        self._by_family: dict[str, list[tuple[str, ...]]] = {
            RUNS: [(p, s) for p in self.phases for s in RUN_STATES],
            ITEMS: [(p, b) for p in self.phases for b in BUCKETS],
            TRANSITIONS: [(p,) for p in self.phases],
            LOCK_BUSY: [(p,) for p in self.phases],
            DECISIONS: [(d, direction) for d in deployments for direction in DIRECTIONS],
        }

    def zeros(self, family: str) -> dict[tuple[str, ...], float]:
        return dict.fromkeys(self._by_family.get(family, ()), 0.0)


def _counter_families(read: Mapping[str, Values], known: _Known) -> Iterator[Metric]:
    for family, (name, documentation, labels) in COUNTERS.items():
        counter = CounterMetricFamily(f"{PREFIX}{name}", documentation, labels=labels)
        for values, number in sorted({**known.zeros(family), **read[family]}.items()):
            counter.add_metric(list(values), number)
        yield counter
    for family, (name, documentation, labels) in GAUGES.items():
        gauge = GaugeMetricFamily(f"{PREFIX}{name}", documentation, labels=labels)
        for values, number in sorted(read[family].items()):
            gauge.add_metric(list(values), number)
        yield gauge
    durations = (read[DURATION_BUCKET], read[DURATION_SUM], DURATION_BUCKETS_S)
    yield _histogram("phase_run_duration_seconds", "How long phase runs took, open to close.",
                     durations, known)  # fmt: skip
    delays = (read[START_DELAY_BUCKET], read[START_DELAY_SUM], START_DELAY_BUCKETS_S)
    yield _histogram("phase_start_delay_seconds",
                     "Queue lag: seconds from a tick (or follow-up) being sent to its run.",
                     delays, known)  # fmt: skip


def _histogram(
    name: str, documentation: str, read: tuple[Values, Values, Sequence[float]], known: _Known
) -> Metric:
    buckets, sums, bounds_s = read
    histogram = HistogramMetricFamily(f"{PREFIX}{name}", documentation, labels=["phase"])
    bounds = [*(le(b) for b in bounds_s), "+Inf"]
    phases = sorted({*known.phases, *(phase for (phase,) in sums)})
    for phase in phases:
        counts = [(bound, buckets.get((phase, bound), 0.0)) for bound in bounds]
        histogram.add_metric([phase], counts, sum_value=sums.get((phase,), 0.0))
    return histogram


def _live(deployment: Mapping[str, Any]) -> bool:
    return bool(deployment["lifecycle"] != DeploymentLifecycle.DESTROYED.value)


def _long_gone(deployments: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names of deployments destroyed a while ago and not reused by a live one."""
    live = {d["name"] for d in deployments if _live(d)}
    return [
        d["name"]
        for d in deployments
        if not _live(d)
        and d["name"] not in live
        and (d.get("destroyed_for_s") or 0) > FORGET_DESTROYED_AFTER_S
    ]


def _fleet_families(reports: Reports, deployments: Sequence[Mapping[str, Any]]) -> Iterator[Metric]:
    lifecycles = GaugeMetricFamily(f"{PREFIX}deployments", "Deployments by lifecycle.",
                                   labels=["lifecycle"])  # fmt: skip
    counted = reports.deployment_counts()
    for lifecycle in DeploymentLifecycle:
        lifecycles.add_metric([lifecycle.value], counted.get(lifecycle.value, 0))
    routes = GaugeMetricFamily(
        f"{PREFIX}routes",
        "Routes of live deployments by status (terminated: ended, kept for their history).",
        labels=["status"],
    )
    by_status = reports.route_counts(live_only=True)
    for status in RouteStatus:
        routes.add_metric([status.value], by_status.get(status.value, 0))
    yield from (lifecycles, routes, *_replica_families(deployments), *_host_families(reports))
    yield from _idleness_families(reports, deployments)


def _idleness_families(reports: Reports, deployments: Sequence[Mapping[str, Any]]) -> list[Metric]:
    moves = reports.phase_moves([PhaseName.SCALE_TO_ZERO, PhaseName.WAKE])
    families: list[Metric] = []
    for name, phase, documentation in (
        ("scaled_to_zero", PhaseName.SCALE_TO_ZERO, "Times a deployment went to zero, idle."),
        ("wakes", PhaseName.WAKE, "Times a request woke a deployment at zero."),
    ):
        family = CounterMetricFamily(f"{PREFIX}{name}", documentation, labels=["deployment"])
        for row in deployments:
            if _live(row):
                family.add_metric([row["name"]], moves.get((row["id"], phase), 0))
        families.append(family)
    return families


def _host_families(reports: Reports) -> list[Metric]:
    hosts = reports.hosts()
    by_status = GaugeMetricFamily(f"{PREFIX}hosts", "Hosts by status.", labels=["status"])
    for status in HostStatus:
        by_status.add_metric([status.value], sum(1 for h in hosts if h["status"] == status))
    ages = GaugeMetricFamily(f"{PREFIX}host_heartbeat_age_seconds",
                             "Seconds since each host's agent last said it lives (database "
                             "clock).", labels=["host"])  # fmt: skip
    for host in hosts:
        ages.add_metric([host["name"]], host["heartbeat_age_s"])
    lost = CounterMetricFamily(f"{PREFIX}host_lost", "Times a host was declared lost.")
    lost.add_metric([], reports.host_losses())
    unreachable = CounterMetricFamily(
        f"{PREFIX}host_unreachable",
        "Times a silent host was not given up (most hosts silent at once, waiting its turn, "
        "or heard in Redis only): marked unreachable instead.",
    )
    unreachable.add_metric([], reports.host_moves_to(HostStatus.UNREACHABLE))
    return [by_status, ages, lost, unreachable]


def _replica_families(deployments: Sequence[Mapping[str, Any]]) -> list[Metric]:
    kinds = (("desired", "desired", "The replica count the controller works toward."),
             ("current", "active_routes", "Active routes (replicas that count)."),
             ("healthy", "healthy_routes", "Routes that pass their health check."))  # fmt: skip
    families: list[Metric] = []
    for kind, column, documentation in kinds:
        family = GaugeMetricFamily(f"{PREFIX}deployment_replicas_{kind}",
                                   f"{documentation} Per live deployment.",
                                   labels=["deployment"])  # fmt: skip
        for row in deployments:
            if _live(row):
                family.add_metric([row["name"]], row[column])
        families.append(family)
    return families
