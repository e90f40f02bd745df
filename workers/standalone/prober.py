"""A health prober: `modelfleet prober`.

It probes each route's running session on its deployment's health path and
uses that deployment's health-check settings: the interval, the timeout, the
expected status, an initial delay counted from the session's start, and a
budget of consecutive failures (`max_retries`). It writes readiness through the
health store's writer in one batch per pass.

A route that has never answered as expected is probed twice a second
(`FIRST_PROBES_EVERY_S`), so it turns ready within half a second of its model
server. Failures count once the initial delay has passed, and `max_retries` of
them in a row make a route unhealthy, never one slow answer; a route that never
answered as expected must also have spent its health budget (the initial
delay, then `max_retries` intervals), since it is probed faster than that.
With each result goes what the probe saw ("/health answered 503"), which the
controller quotes when a replica never becomes healthy. A deployment with no
health path is ready as soon as its session runs.

It keeps probing through a database outage, the routes it last listed (the data plane's
health must not depend on the controller's store). After each pass it says it lives
(`modelfleet status` shows a prober gone silent) and what it saw of each host: a probe
that passed, or one that got no answer at all (not even a refusal) from the machine, so
the controller places nothing more on a host its probes cannot reach. Two probers may
run at once (give each its `--name`): either may die.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

import requests
import sqlalchemy as sa

from workers.adapters.postgres.engine import transaction
from workers.adapters.postgres.phase_targets import (
    HEALTH_CHECK_COLUMNS,
    of_its_revision,
    with_its_revision,
)
from workers.adapters.postgres.schema import deployments, routes, sessions
from workers.adapters.postgres.terms import SESSION_HOST
from workers.adapters.redis.health import RedisHealthStore
from workers.adapters.redis.hosts import RedisProbeSignals
from workers.domain import RouteStatus
from workers.errors import InfrastructureUnavailable
from workers.standalone.loop import repeat

log = logging.getLogger(__name__)

_PROBED = [s.value for s in (RouteStatus.DEGRADED, RouteStatus.HEALTHY, RouteStatus.UNHEALTHY)]
FIRST_PROBES_EVERY_S = 0.5  # until a route first answers as expected (a wake waits on it)


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
    path: str = ""
    ever_healthy: bool = False  # the controller saw it pass once (a restarted prober asks)
    host: str = ""  # the machine its session runs on (placed_on, else its runner)

    @property
    def budget_s(self) -> float:
        return self.initial_delay_s + self.interval_s * self.max_retries


@dataclass
class _Track:
    next_due_s: float = 0.0
    failures: int = 0
    written: bool | None = None  # the readiness last written for the route
    ever_ok: bool = False  # it has answered as expected at least once


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    seen: str  # what the probe saw, for people: "/health answered 503"
    reached: bool = True  # the machine answered (an answer, a refusal): not cut off


@dataclass
class HealthProber:
    engine: sa.Engine
    health_store: RedisHealthStore
    signals: RedisProbeSignals | None = None
    name: str = "prober"
    workers: int = 16
    _tracks: dict[UUID, _Track] = field(default_factory=dict)
    _http: requests.Session = field(default_factory=requests.Session)
    _listed: list[ProbeTarget] | None = None  # what the database last said to probe

    def run_forever(self, interval_s: float = 0.5) -> None:
        with ThreadPoolExecutor(self.workers) as pool:
            repeat("health prober", lambda: self.tick(pool), interval_s)

    def tick(self, pool: ThreadPoolExecutor) -> dict[str, bool]:
        """Probe the routes that are due; returns the readiness written."""
        now_s = time.time()
        targets = self._targets_or_last()
        self._forget_all_but({t.route_id for t in targets})
        due = [t for t in targets if self._track(t).next_due_s <= now_s]
        answers = list(pool.map(self._probe, due))
        readiness: dict[str, bool] = {}
        changed: list[str] = []
        seen: dict[str, str] = {}
        for target, answer in zip(due, answers, strict=True):
            track = self._track(target)
            verdict = self._verdict(target, answer.ok, now_s)
            track.next_due_s = now_s + (
                target.interval_s if track.ever_ok else min(target.interval_s, FIRST_PROBES_EVERY_S)
            )
            route = str(target.route_id)
            seen[route] = answer.seen  # also while undecided: a route never ready says why
            if verdict is not None:
                readiness[route] = verdict
                if verdict != track.written:
                    changed.append(route)
                    log.info("route %s: %s (%s)", route, "ready" if verdict else "not ready",
                             answer.seen)  # fmt: skip
        self.health_store.update_readiness(readiness, changed=changed, seen=seen)
        for target in due:  # written: a later tick announces only a new change
            if str(target.route_id) in readiness:
                self._track(target).written = readiness[str(target.route_id)]
        if self.signals is not None:
            passed, unreached = _hosts_seen(due, answers)
            self.signals.note(self.name, passed, unreached)
        return readiness

    def _targets_or_last(self) -> list[ProbeTarget]:
        """The routes to probe; while the database cannot be read, those it last listed."""
        try:
            self._listed = self.targets()
        except InfrastructureUnavailable as error:
            if self._listed is None:
                raise
            log.debug("database unavailable (%s): probing the %d routes last listed",
                      error, len(self._listed))  # fmt: skip
        return self._listed

    def targets(self) -> list[ProbeTarget]:
        """Running routes, each with the health check of the revision it runs."""
        query = with_its_revision(
            sa.select(
                routes.c.id,
                SESSION_HOST.label("machine"),
                sessions.c.host,
                sessions.c.port,
                sessions.c.started_at,
                routes.c.first_healthy_at,
                *(of_its_revision(name) for name in HEALTH_CHECK_COLUMNS),
            )
            .join(sessions, sessions.c.id == routes.c.session_id)
            .join(deployments, deployments.c.id == routes.c.deployment_id)
        ).where(
            routes.c.status.in_(_PROBED),
            sessions.c.status == "RUNNING",
            sessions.c.host.is_not(None),
            sessions.c.port.is_not(None),
        )
        with transaction(self.engine) as conn:
            return [_target(row) for row in conn.execute(query).mappings()]

    def _probe(self, target: ProbeTarget) -> ProbeResult:
        if target.url is None:
            return ProbeResult(ok=True, seen="no health check: ready once running")
        try:
            answer = self._http.get(target.url, timeout=target.timeout_s)
        except requests.RequestException as error:
            return _failed(target, error)
        return ProbeResult(
            answer.status_code == target.expected_status,
            f"{target.path} answered {answer.status_code}",
        )

    def _verdict(self, target: ProbeTarget, ok: bool, now_s: float) -> bool | None:
        """True/False to write, or None to write nothing yet.

        Failures count once the initial delay has passed; `max_retries` in a row
        make a route unhealthy. A route that never answered as expected is probed
        faster than its interval, so it must also have spent its health budget.
        """
        track = self._track(target)
        if ok:
            track.failures, track.ever_ok = 0, True
            return True
        starting_for_s = now_s - target.started_at.timestamp()
        if starting_for_s < target.initial_delay_s:
            return None  # still starting up: failures do not count yet
        track.failures += 1
        if track.failures < target.max_retries:
            return None
        if not track.ever_ok and starting_for_s < target.budget_s:
            return None
        return False

    def _track(self, target: ProbeTarget) -> _Track:
        return self._tracks.setdefault(target.route_id, _Track(ever_ok=target.ever_healthy))

    def _forget_all_but(self, route_ids: set[UUID]) -> None:
        for gone in set(self._tracks) - route_ids:
            del self._tracks[gone]


def _target(row: sa.RowMapping) -> ProbeTarget:
    path = row["health_check_path"]
    return ProbeTarget(
        path=path or "",
        route_id=row["id"],
        url=None if path is None else f"http://{row['host']}:{row['port']}{path}",
        started_at=row["started_at"],
        interval_s=row["health_check_interval_s"],
        timeout_s=row["health_check_timeout_s"],
        initial_delay_s=row["health_check_initial_delay_s"],
        max_retries=max(row["health_check_max_retries"], 1),
        expected_status=row["health_check_expected_status"],
        ever_healthy=row["first_healthy_at"] is not None,
        host=row["machine"] or "",
    )


def _failed(target: ProbeTarget, error: requests.RequestException) -> ProbeResult:
    """What a probe that got no answer saw, and whether the machine answered at all."""
    if isinstance(error, requests.ConnectTimeout):
        seen = f"{target.path}: no connection within {target.timeout_s:g} s"
        return ProbeResult(False, seen, reached=False)
    if isinstance(error, requests.Timeout):
        return ProbeResult(False, f"{target.path}: no answer within {target.timeout_s:g} s")
    if isinstance(error, requests.ConnectionError):
        if _refused(error):
            return ProbeResult(False, f"{target.path}: connection refused")
        return ProbeResult(False, f"{target.path}: {type(error).__name__}", reached=False)
    return ProbeResult(False, f"{target.path}: {type(error).__name__}")


def _hosts_seen(
    targets: list[ProbeTarget], answers: list[ProbeResult]
) -> tuple[set[str], dict[str, str]]:
    """Hosts where a probe passed, and hosts that gave no answer at all (what was seen)."""
    passed = {t.host for t, a in zip(targets, answers, strict=True) if t.host and a.ok}
    unreached = {t.host: a.seen for t, a in zip(targets, answers, strict=True)
                 if t.host and not a.reached}  # fmt: skip
    return passed, unreached


def _refused(error: requests.ConnectionError) -> bool:
    """The machine answered with a refusal (nothing listens there): reached, not cut off."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return True
        cause = cause.__cause__ or cause.__context__
    return "refused" in str(error).lower()
