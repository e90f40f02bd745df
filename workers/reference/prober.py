"""A health prober: `modelfleet prober`.

It probes each route's running session on its deployment's health path and
uses that deployment's health-check settings: the interval, the timeout, the
expected status, an initial delay counted from the session's start, and a
budget of consecutive failures (`max_retries`). It writes readiness through the
health store's writer in one batch per pass.

A failure never reports a route unhealthy until the budget is spent, so a
route that has never been healthy is not evicted for one slow answer. Failures
during the initial delay are not counted. A deployment with no health path is
ready as soon as its session runs.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import requests
import sqlalchemy as sa

from workers.adapters.postgres.engine import transaction
from workers.adapters.postgres.schema import (
    deployment_revisions,
    deployments,
    routes,
    sessions,
)
from workers.adapters.redis_health import RedisHealthStore
from workers.domain import RouteStatus
from workers.reference.loop import repeat

log = logging.getLogger(__name__)

_PROBED = [s.value for s in (RouteStatus.DEGRADED, RouteStatus.HEALTHY, RouteStatus.UNHEALTHY)]


@dataclass(frozen=True)
class ProbeTarget:
    route_id: UUID
    url: str | None  # None: no health check configured
    started_at: datetime
    interval_s: float
    timeout_s: float
    initial_delay_s: float
    max_retries: int
    expected_status: int


@dataclass
class _Track:
    next_due_s: float = 0.0
    failures: int = 0
    written: bool | None = None  # the readiness last written for the route


@dataclass
class HealthProber:
    engine: sa.Engine
    health_store: RedisHealthStore
    workers: int = 16
    _tracks: dict[UUID, _Track] = field(default_factory=dict)
    _http: requests.Session = field(default_factory=requests.Session)

    def run_forever(self, interval_s: float = 0.5) -> None:
        with ThreadPoolExecutor(self.workers) as pool:
            repeat("health prober", lambda: self.tick(pool), interval_s)

    def tick(self, pool: ThreadPoolExecutor) -> dict[str, bool]:
        """Probe the routes that are due; returns the readiness written."""
        now_s = time.time()
        targets = self.targets()
        self._forget_all_but({t.route_id for t in targets})
        due = [t for t in targets if self._track(t).next_due_s <= now_s]
        answers = list(pool.map(self._probe, due))
        readiness: dict[str, bool] = {}
        changed: list[str] = []
        for target, ok in zip(due, answers, strict=True):
            track = self._track(target)
            track.next_due_s = now_s + target.interval_s
            verdict = self._verdict(target, ok, now_s)
            if verdict is not None:
                readiness[str(target.route_id)] = verdict
                if verdict != track.written:
                    changed.append(str(target.route_id))
        self.health_store.update_readiness(readiness, changed=changed)
        for target in due:  # written: a later tick announces only a new change
            if str(target.route_id) in readiness:
                self._track(target).written = readiness[str(target.route_id)]
        return readiness

    def targets(self) -> list[ProbeTarget]:
        """Running routes, each with the health check of the revision it runs."""
        revision = sa.func.coalesce(routes.c.revision, deployments.c.current_revision)
        query = (
            sa.select(
                routes.c.id,
                sessions.c.host,
                sessions.c.port,
                sessions.c.started_at,
                *(_of_its_revision(name) for name in _HEALTH_CHECK_COLUMNS),
            )
            .join(sessions, sessions.c.id == routes.c.session_id)
            .join(deployments, deployments.c.id == routes.c.deployment_id)
            .outerjoin(
                deployment_revisions,
                sa.and_(
                    deployment_revisions.c.deployment_id == routes.c.deployment_id,
                    deployment_revisions.c.number == revision,
                ),
            )
            .where(
                routes.c.status.in_(_PROBED),
                sessions.c.status == "RUNNING",
                sessions.c.host.is_not(None),
                sessions.c.port.is_not(None),
            )
        )
        with transaction(self.engine) as conn:
            return [_target(row) for row in conn.execute(query).mappings()]

    def _probe(self, target: ProbeTarget) -> bool:
        if target.url is None:
            return True
        try:
            answer = self._http.get(target.url, timeout=target.timeout_s)
        except requests.RequestException:
            return False
        return answer.status_code == target.expected_status

    def _verdict(self, target: ProbeTarget, ok: bool, now_s: float) -> bool | None:
        """True/False to write, or None to write nothing yet."""
        track = self._track(target)
        if ok:
            track.failures = 0
            return True
        if now_s - target.started_at.timestamp() < target.initial_delay_s:
            return None  # still starting up: failures do not count yet
        track.failures += 1
        if track.failures < target.max_retries:
            return None
        log.info("route %s: %d failed probes in a row", target.route_id, track.failures)
        return False

    def _track(self, target: ProbeTarget) -> _Track:
        return self._tracks.setdefault(target.route_id, _Track())

    def _forget_all_but(self, route_ids: set[UUID]) -> None:
        for gone in set(self._tracks) - route_ids:
            del self._tracks[gone]


_HEALTH_CHECK_COLUMNS = (
    "health_check_path",
    "health_check_interval_s",
    "health_check_timeout_s",
    "health_check_initial_delay_s",
    "health_check_max_retries",
    "health_check_expected_status",
)


def _of_its_revision(name: str) -> sa.ColumnElement[Any]:
    """The revision's value, or the deployment's own copy when the revision is not kept."""
    kept = deployment_revisions.c.number.is_not(None)
    return sa.case((kept, deployment_revisions.c[name]), else_=deployments.c[name]).label(name)


def _target(row: sa.RowMapping) -> ProbeTarget:
    path = row["health_check_path"]
    return ProbeTarget(
        route_id=row["id"],
        url=None if path is None else f"http://{row['host']}:{row['port']}{path}",
        started_at=row["started_at"],
        interval_s=row["health_check_interval_s"],
        timeout_s=row["health_check_timeout_s"],
        initial_delay_s=row["health_check_initial_delay_s"],
        max_retries=max(row["health_check_max_retries"], 1),
        expected_status=row["health_check_expected_status"],
    )
