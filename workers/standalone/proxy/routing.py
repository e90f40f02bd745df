"""The proxy's routing table, in memory: each endpoint's replicas and how requests spread.

Smooth weighted round robin (nginx's): every pick adds each candidate's weight to
its running score, takes the highest, and takes the total off the winner. Over any
window of `sum(weights)` picks each replica gets exactly its weight's share, in an
even interleave, without randomness or shared state; so a canary at weight 1
against 9 sees every tenth request, from the first one. (Least outstanding requests
would adapt to slow replicas, but its split depends on latency, and a canary's
share must be what its weight says.) A replica of weight 0 gets nothing.

A replica the data path showed unreachable (no connection within the connect timeout, or
silent to TCP) is ejected for a while (Envoy's outlier detection): it gets no new request
while another can take it, for `EJECT_S` doubling with each failure in a row, until one
succeeds. Whether its
host's agent heartbeats says nothing about it: a host silent to the control plane may
serve perfectly well. A retry after a refused connection goes to a replica on another
host, or else to another replica on the same one.

The table remembers the generation of the published set it last applied: only a set at
least that new may withdraw routes from it (`may_withdraw`).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from workers.contracts.labels import from_labels
from workers.domain import ModelServiceMetadata

EJECT_S = 5.0  # the first ejection; each failure in a row doubles it
EJECT_MAX_S = 60.0


@dataclass(frozen=True)
class Replica:
    route_id: str
    endpoint: str
    address: str  # host:port its model server listens on
    revision: str  # "" when the route has no revision label
    host: str  # the machine it runs on ("" when unknown)
    weight: float = 1.0

    @classmethod
    def of(cls, target: ModelServiceMetadata) -> Replica | None:
        """The replica a published scrape target stands for (None without an endpoint)."""
        labels = from_labels(target.labels)
        if labels is None:
            return None
        host = target.host if ":" not in target.host else f"[{target.host}]"
        revision = "" if labels.revision is None else str(labels.revision)
        return cls(str(target.route_id), str(labels.endpoint_id), f"{host}:{target.port}",
                   revision, labels.host or "", labels.traffic_ratio)  # fmt: skip


@dataclass
class _Ejection:
    until: float  # time.monotonic()
    failures: int


@dataclass
class _Endpoint:
    replicas: dict[str, Replica] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)

    def pick(self, avoid_hosts: Collection[str], avoid_routes: Collection[str],
             ejected: Collection[str]) -> Replica | None:  # fmt: skip
        candidates = [r for r in self.replicas.values() if r.weight > 0]
        if avoid_hosts or avoid_routes:
            candidates = [
                r
                for r in candidates
                if r.host not in avoid_hosts and r.route_id not in avoid_routes
            ]
        healthy = [r for r in candidates if r.route_id not in ejected]
        candidates = healthy or candidates  # an ejected replica is better than no answer
        if not candidates:
            return None
        total = sum(r.weight for r in candidates)
        for replica in candidates:
            self.scores[replica.route_id] = self.scores.get(replica.route_id, 0.0) + replica.weight
        chosen = max(candidates, key=lambda r: (self.scores[r.route_id], r.route_id))
        self.scores[chosen.route_id] -= total
        return chosen


class RoutingTable:
    """Endpoint -> replicas; read by every request, written by the feed (one event loop)."""

    def __init__(self) -> None:
        self._endpoints: dict[str, _Endpoint] = {}
        self._where: dict[str, str] = {}  # route id -> endpoint
        self._ejected: dict[str, _Ejection] = {}
        self.generation: int | None = None  # of the published set last applied
        self.confirmed_at = time.monotonic()  # when a read last matched the published set

    def replace_all(self, targets: Iterable[ModelServiceMetadata]) -> None:
        """The whole set (what a test or a first read hands over)."""
        current = {str(t.route_id): t for t in targets}
        gone: dict[str, ModelServiceMetadata | None] = dict.fromkeys(
            set(self._where) - set(current)
        )
        self.apply({**gone, **current})

    def apply(self, changes: Mapping[str, ModelServiceMetadata | None]) -> None:
        """Routes published (or changed), and routes withdrawn (None)."""
        for route_id, target in changes.items():
            replica = None if target is None else Replica.of(target)
            if replica is not None and replica == self._replica(route_id):
                continue  # unchanged (a full read): its place in the rotation is kept
            self._remove(route_id)
            if replica is not None:
                self._endpoints.setdefault(replica.endpoint, _Endpoint()).replicas[route_id] = (
                    replica
                )
                self._where[route_id] = replica.endpoint

    def may_withdraw(self, generation: int | None) -> bool:
        """Whether a published set of `generation` is the controller's word on what to
        remove: it has one, and it is not older than the one applied last."""
        return generation is not None and (self.generation is None or generation >= self.generation)

    def confirm(self, generation: int | None) -> None:
        """A read of the published set was applied (its generation, when it had one)."""
        if generation is not None and self.may_withdraw(generation):
            self.generation = generation
            self.confirmed_at = time.monotonic()

    def age_s(self) -> float:
        return time.monotonic() - self.confirmed_at

    def pick(
        self,
        endpoint: str,
        *,
        avoid_hosts: Collection[str] = (),
        avoid_routes: Collection[str] = (),
    ) -> Replica | None:
        found = self._endpoints.get(endpoint)
        if found is None:
            return None
        return found.pick(avoid_hosts, avoid_routes, self._ejected_now(time.monotonic()))

    def eject(self, route_id: str, now: float | None = None) -> float:
        """The data path showed `route_id` gone: no new request for a while; how long."""
        now = time.monotonic() if now is None else now
        before = self._ejected.get(route_id)
        failures = 1 if before is None else before.failures + 1
        for_s: float = min(EJECT_S * 2.0 ** (failures - 1), EJECT_MAX_S)
        self._ejected[route_id] = _Ejection(now + for_s, failures)
        return for_s

    def answered(self, route_id: str) -> None:
        """`route_id` answered: it is no longer ejected."""
        if self._ejected:
            self._ejected.pop(route_id, None)

    def route_ids(self) -> set[str]:
        return set(self._where)

    def replicas(self, endpoint: str) -> list[Replica]:
        found = self._endpoints.get(endpoint)
        return [] if found is None else list(found.replicas.values())

    def _ejected_now(self, now: float) -> set[str]:
        return {route_id for route_id, e in self._ejected.items() if e.until > now}

    def _replica(self, route_id: str) -> Replica | None:
        endpoint = self._where.get(route_id)
        return None if endpoint is None else self._endpoints[endpoint].replicas.get(route_id)

    def _remove(self, route_id: str) -> None:
        self._ejected.pop(route_id, None)
        endpoint = self._where.pop(route_id, None)
        if endpoint is None:
            return
        routes = self._endpoints[endpoint]
        routes.replicas.pop(route_id, None)
        routes.scores.pop(route_id, None)
        if not routes.replicas:
            del self._endpoints[endpoint]
