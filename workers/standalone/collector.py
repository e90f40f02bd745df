"""A metrics collector: `modelfleet collector`.

It scrapes each healthy route's `/metrics` (Prometheus text; samples with labels are
summed by name, as vLLM labels its own by model, histogram buckets aside) and writes
the autoscaling metric keys. Each session
gets its own values, and each deployment gets the average over its healthy
routes, which is the load per replica that autoscaling rules compare with
their thresholds. A replica whose own request counter (any sample named
`*_requests_total`) grew since the last scrape saw requests: its deployment's latest
request moves to now (scale to zero counts requests that did not pass a modelfleet
proxy too).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from uuid import UUID

import requests
import sqlalchemy as sa

from workers.adapters.postgres.engine import transaction
from workers.adapters.postgres.schema import routes, sessions
from workers.adapters.redis.activity import RedisRequestActivity
from workers.adapters.redis.metrics import RedisMetricsStore
from workers.domain import RouteStatus, SessionId
from workers.standalone.loop import repeat

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ScrapeTarget:
    deployment_id: UUID
    session_id: SessionId
    url: str


@dataclass
class MetricsCollector:
    engine: sa.Engine
    metrics: RedisMetricsStore
    workers: int = 16
    activity: RedisRequestActivity | None = None
    _http: requests.Session = field(default_factory=requests.Session)
    _served: dict[SessionId, float] = field(default_factory=dict)  # requests_total last seen

    def run_forever(self, interval_s: float = 2.0) -> None:
        with ThreadPoolExecutor(self.workers) as pool:
            repeat("metrics collector", lambda: self.tick(pool), interval_s)

    def tick(self, pool: ThreadPoolExecutor) -> dict[UUID, dict[str, float]]:
        """Scrape every healthy route once; returns what was written per deployment."""
        targets = self.targets()
        scraped = list(pool.map(self._scrape, targets))
        per_deployment: dict[UUID, list[Mapping[str, float]]] = defaultdict(list)
        for target, values in zip(targets, scraped, strict=True):
            if values is None:
                continue
            self.metrics.write_session_metrics(target.session_id, values)
            per_deployment[target.deployment_id].append(values)
        averages = {d: _average(samples) for d, samples in per_deployment.items()}
        for deployment_id, values in averages.items():
            self.metrics.write_deployment_metrics(deployment_id, values)
        if self.activity is not None:
            self.activity.seen(self._requested(targets, scraped))
        return averages

    def _requested(
        self, targets: list[ScrapeTarget], scraped: list[dict[str, float] | None]
    ) -> set[UUID]:
        """Deployments with a replica whose request counter grew since the last scrape."""
        grew = set()
        served = {}
        for target, values in zip(targets, scraped, strict=True):
            if values is None:
                continue
            total = sum(v for name, v in values.items() if name.endswith("_requests_total"))
            before = self._served.get(target.session_id)
            if before is not None and total > before:
                grew.add(target.deployment_id)
            served[target.session_id] = total
        self._served = served
        return grew

    def targets(self) -> list[ScrapeTarget]:
        query = (
            sa.select(routes.c.deployment_id, sessions.c.id, sessions.c.host, sessions.c.port)
            .join(sessions, sessions.c.id == routes.c.session_id)
            .where(
                routes.c.status == RouteStatus.HEALTHY.value,
                sessions.c.status == "RUNNING",
                sessions.c.port.is_not(None),
            )
        )
        with transaction(self.engine) as conn:
            return [
                ScrapeTarget(
                    row.deployment_id, SessionId(row.id), f"http://{row.host}:{row.port}/metrics"
                )
                for row in conn.execute(query)
            ]

    def _scrape(self, target: ScrapeTarget) -> dict[str, float] | None:
        try:
            answer = self._http.get(target.url, timeout=SCRAPE_TIMEOUT_S)
        except requests.RequestException as error:
            log.info("session %s: metrics not scraped: %s", target.session_id, error)
            return None
        return parse_prometheus_text(answer.text) if answer.ok else None


def parse_prometheus_text(text: str) -> dict[str, float]:
    """`name value` samples; a name's labelled samples summed (vLLM's
    `vllm:num_requests_waiting{model_name="m"}`: what the replica holds in all) unless it
    has one without labels; comments, histogram buckets and non-finite samples skipped."""
    plain: dict[str, float] = {}
    labelled: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, brace, rest = line.partition("{")
        fields = rest.partition("}")[2].split() if brace else line.split()[1:]
        name = name.strip() if brace else line.split()[0]
        value = _number(fields[0]) if fields else None
        if value is None or name.endswith("_bucket"):
            continue
        if brace:
            labelled[name] += value
        else:
            plain[name] = value
    return {**labelled, **plain}


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _average(samples: list[Mapping[str, float]]) -> dict[str, float]:
    names = {name for sample in samples for name in sample}
    return {
        name: sum(s[name] for s in samples if name in s) / sum(1 for s in samples if name in s)
        for name in names
    }
