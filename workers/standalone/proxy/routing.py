"""The proxy's routing table, in memory: each endpoint's replicas and how requests spread.

Smooth weighted round robin (nginx's): every pick adds each candidate's weight to
its running score, takes the highest, and takes the total off the winner. Over any
window of `sum(weights)` picks each replica gets exactly its weight's share, in an
even interleave, without randomness or shared state; so a canary at weight 1
against 9 sees every tenth request, from the first one. (Least outstanding requests
would adapt to slow replicas, but its split depends on latency, and a canary's
share must be what its weight says.) A replica of weight 0 gets nothing.

A replica whose host went silent (its agent missed two heartbeats) gets no new
request while another can take it; a retry after a refused connection goes to a
replica on another host, or else to another replica on the same one.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from workers.domain import ModelServiceMetadata


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
        labels = target.labels
        endpoint = labels.get("endpoint_id")
        if not endpoint:
            return None
        try:
            weight = max(float(labels.get("traffic_ratio", "1")), 0.0)
        except ValueError:
            weight = 1.0
        host = target.host if ":" not in target.host else f"[{target.host}]"
        return cls(str(target.route_id), endpoint, f"{host}:{target.port}",
                   labels.get("revision", ""), labels.get("host", ""), weight)  # fmt: skip


@dataclass
class _Endpoint:
    replicas: dict[str, Replica] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)

    def pick(self, avoid_hosts: Collection[str], avoid_routes: Collection[str],
             stale_hosts: Collection[str]) -> Replica | None:  # fmt: skip
        candidates = [r for r in self.replicas.values() if r.weight > 0]
        if avoid_hosts or avoid_routes:
            candidates = [
                r
                for r in candidates
                if r.host not in avoid_hosts and r.route_id not in avoid_routes
            ]
        fresh = [r for r in candidates if r.host not in stale_hosts]
        candidates = fresh or candidates  # a silent host is better than no answer at all
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
        self.stale_hosts: frozenset[str] = frozenset()
        self.updated_at = time.monotonic()

    def replace_all(self, targets: Iterable[ModelServiceMetadata]) -> None:
        """The whole published set (a full read)."""
        current = {str(t.route_id): t for t in targets}
        gone: dict[str, ModelServiceMetadata | None] = dict.fromkeys(
            set(self._where) - set(current)
        )
        self.apply({**gone, **current})

    def apply(self, changes: Mapping[str, ModelServiceMetadata | None]) -> None:
        """Routes published (or changed), and routes gone (None)."""
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
        self.updated_at = time.monotonic()

    def pick(
        self,
        endpoint: str,
        *,
        avoid_hosts: Collection[str] = (),
        avoid_routes: Collection[str] = (),
    ) -> Replica | None:
        found = self._endpoints.get(endpoint)
        return None if found is None else found.pick(avoid_hosts, avoid_routes, self.stale_hosts)

    def route_ids(self) -> set[str]:
        return set(self._where)

    def replicas(self, endpoint: str) -> list[Replica]:
        found = self._endpoints.get(endpoint)
        return [] if found is None else list(found.replicas.values())

    def _replica(self, route_id: str) -> Replica | None:
        endpoint = self._where.get(route_id)
        return None if endpoint is None else self._endpoints[endpoint].replicas.get(route_id)

    def _remove(self, route_id: str) -> None:
        endpoint = self._where.pop(route_id, None)
        if endpoint is None:
            return
        routes = self._endpoints[endpoint]
        routes.replicas.pop(route_id, None)
        routes.scores.pop(route_id, None)
        if not routes.replicas:
            del self._endpoints[endpoint]
