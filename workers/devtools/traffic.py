"""Traffic through the dev app proxy, counted: how a test or a benchmark proves "no request failed".

`LoadLoop` sends completions at a steady rate for as long as it runs and keeps
every answer (status, latency, the revision that answered). `LivenessWatch`
polls the Prometheus service-discovery endpoint and every published replica's
port, and records each moment a replica was published while nothing listened
on its port: the window in which a request can fail. `PublishedWatch` keeps which
routes each poll saw published (a route that must never come back).
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from workers.devtools.model_server import REQUEST_ID_HEADER

CONNECTION_ERROR = 0  # the status recorded when no HTTP answer came back


@dataclass(frozen=True)
class Answer:
    sent_at: float  # time.monotonic() when the request left
    status: int  # HTTP status, or CONNECTION_ERROR
    latency_s: float
    body: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def revision(self) -> int | None:
        value = (self.body or {}).get("revision")
        return value if isinstance(value, int) else None


def served_twice(served_dir: Path) -> list[str]:
    """Request ids the sample models computed more than once (MODEL_SERVED_DIR)."""
    counts = Counter(
        line for ledger in served_dir.glob("*.served") for line in ledger.read_text().split()
    )
    return sorted(request_id for request_id, count in counts.items() if count > 1)


def failures(answers: Sequence[Answer]) -> list[Answer]:
    """Every answer other than 200, connection errors included."""
    return [answer for answer in answers if not answer.ok]


def between(answers: Sequence[Answer], start: float, end: float) -> list[Answer]:
    return [answer for answer in answers if start <= answer.sent_at < end]


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


@dataclass
class LoadLoop:
    """Completions at `rate_per_s` through `url` (an endpoint URL of the dev proxy)."""

    url: str
    rate_per_s: float = 20.0
    clients: int = 4
    timeout_s: float = 10.0
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def running(self) -> Iterator[LoadLoop]:
        threads = [
            threading.Thread(target=self._client, args=(i,), daemon=True)
            for i in range(self.clients)
        ]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(timeout=self.timeout_s + 5)

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def _client(self, index: int) -> None:
        period_s = self.clients / self.rate_per_s
        next_at = time.monotonic() + index * period_s / self.clients
        with requests.Session() as session:
            while not self._stop.is_set():
                self._stop.wait(max(0.0, next_at - time.monotonic()))
                if self._stop.is_set():
                    return
                next_at += period_s
                answer = self._send(session)
                with self._lock:
                    self.answers.append(answer)

    def _send(self, session: requests.Session) -> Answer:
        sent_at = time.monotonic()
        headers = {REQUEST_ID_HEADER: uuid.uuid4().hex}  # the sample model notes it (duplicates)
        try:
            reply = session.post(f"{self.url}/v1/completions", json={"prompt": "to be"},
                                 headers=headers, timeout=self.timeout_s)  # fmt: skip
        except requests.RequestException:
            return Answer(sent_at, CONNECTION_ERROR, time.monotonic() - sent_at)
        latency_s = time.monotonic() - sent_at
        try:
            body = reply.json()
        except ValueError:
            body = None
        kept = body if isinstance(body, dict) else None
        return Answer(sent_at, reply.status_code, latency_s, kept)


@dataclass(frozen=True)
class DeadWhilePublished:
    seen_at: float
    route_id: str
    address: str


@dataclass
class LivenessWatch:
    """Polls service discovery (`sd_url`) and each published port every `interval_s`."""

    sd_url: str
    interval_s: float = 0.2
    violations: list[DeadWhilePublished] = field(default_factory=list)
    polls: int = 0

    @contextmanager
    def running(self) -> Iterator[LivenessWatch]:
        with _polling(self.sd_url, self.interval_s, self._check):
            yield self

    def _check(self, groups: list[dict[str, Any]]) -> None:
        self.polls += 1
        for group in groups:
            for address in group["targets"]:
                if not _listening(address):
                    self.violations.append(
                        DeadWhilePublished(
                            time.monotonic(), group["labels"].get("route_id", "?"), address
                        )
                    )


@dataclass(frozen=True)
class Publication:
    seen_at: float  # time.monotonic() of the poll
    routes: frozenset[str]  # the route ids published then


@dataclass
class PublishedWatch:
    """Polls service discovery (`sd_url`) every `interval_s` and keeps what each poll saw."""

    sd_url: str
    interval_s: float = 0.2
    seen: list[Publication] = field(default_factory=list)

    @contextmanager
    def running(self) -> Iterator[PublishedWatch]:
        with _polling(self.sd_url, self.interval_s, self._keep):
            yield self

    def last_seen(self, route_ids: set[str]) -> float | None:
        """When a poll last saw any of `route_ids` published (None: never)."""
        return max((p.seen_at for p in self.seen if p.routes & route_ids), default=None)

    def _keep(self, groups: list[dict[str, Any]]) -> None:
        routes = frozenset(group["labels"].get("route_id", "?") for group in groups)
        self.seen.append(Publication(time.monotonic(), routes))


@contextmanager
def _polling(
    sd_url: str, interval_s: float, seen: Callable[[list[dict[str, Any]]], None]
) -> Iterator[None]:
    """A thread handing `seen` the service-discovery document every `interval_s`."""
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(interval_s):
            try:
                groups = requests.get(sd_url, timeout=2).json()
            except (requests.RequestException, ValueError):
                continue
            seen(groups)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def _listening(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
            return True
    except OSError:
        return False
