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

Within that, a deployment's routing policy (its routes' `routing` label) picks the
replica: round robin is the rotation above; for least-request and prefix-cache the
weights choose the revision (the same smooth rotation over revisions: a canary keeps its
exact share) and `workers.policies.replica_choice` the replica within it, from the
requests each has in flight here and, for prefix-cache, this process's `PrefixIndex`.

The table remembers the generation of the published set it last applied: only a set at
least that new may withdraw routes from it (`may_withdraw`).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from workers.contracts.labels import from_labels
from workers.domain import ModelServiceMetadata, RoutingPolicy
from workers.policies.prefix_index import PrefixIndex
from workers.policies.replica_choice import (
    Candidate,
    Decision,
    anchor_of,
    by_prefix,
    least_request,
)

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
    routing: RoutingPolicy = RoutingPolicy.ROUND_ROBIN  # its deployment's

    @classmethod
    def of(cls, target: ModelServiceMetadata) -> Replica | None:
        """The replica a published scrape target stands for (None without an endpoint)."""
        labels = from_labels(target.labels)
        if labels is None:
            return None
        host = target.host if ":" not in target.host else f"[{target.host}]"
        revision = "" if labels.revision is None else str(labels.revision)
        return cls(str(target.route_id), str(labels.endpoint_id), f"{host}:{target.port}",
                   revision, labels.host or "", labels.traffic_ratio, labels.routing)  # fmt: skip


@dataclass(frozen=True)
class Pick:
    """A replica chosen for a request, and what prefix routing made of it."""

    replica: Replica
    decision: Decision | None = None  # prefix-cache only
    depth: int = 0  # blocks of the prompt's prefix the index knew (a hit's)


@dataclass
class _Ejection:
    until: float  # time.monotonic()
    failures: int


@dataclass
class _Endpoint:
    replicas: dict[str, Replica] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)  # per replica, or per revision
    _policy: RoutingPolicy | None = None

    def candidates(self, avoid_hosts: Collection[str], avoid_routes: Collection[str],
                   ejected: Collection[str]) -> list[Replica]:  # fmt: skip
        candidates = [r for r in self.replicas.values() if r.weight > 0]
        if avoid_hosts or avoid_routes:
            candidates = [
                r
                for r in candidates
                if r.host not in avoid_hosts and r.route_id not in avoid_routes
            ]
        healthy = [r for r in candidates if r.route_id not in ejected]
        return healthy or candidates  # an ejected replica is better than no answer

    def policy(self) -> RoutingPolicy:
        """Its replicas' policy (the most common, while a change reaches them all)."""
        if self._policy is None:
            found = Counter(r.routing for r in self.replicas.values())
            self._policy = found.most_common(1)[0][0] if found else RoutingPolicy.ROUND_ROBIN
        return self._policy

    def changed(self) -> None:
        self._policy = None

    def rotate(self, weighted: Sequence[tuple[str, float]]) -> str:
        """Smooth weighted round robin over (key, weight): a replica's id, or a revision's."""
        total = sum(weight for _, weight in weighted)
        for key, weight in weighted:
            self.scores[key] = self.scores.get(key, 0.0) + weight
        chosen = max(weighted, key=lambda item: (self.scores[item[0]], item[0]))[0]
        self.scores[chosen] -= total
        return chosen

    def revision_of_turn(self, candidates: Sequence[Replica]) -> list[Replica]:
        """The replicas of the revision the weights choose now (all, with one revision)."""
        weights: dict[str, float] = {}
        for replica in candidates:
            weights[replica.revision] = weights.get(replica.revision, 0.0) + replica.weight
        if len(weights) == 1:
            return list(candidates)
        turn = self.rotate([(f"revision {r}", w) for r, w in sorted(weights.items())])
        return [r for r in candidates if f"revision {r.revision}" == turn]


class RoutingTable:
    """Endpoint -> replicas; read by every request, written by the feed (one event loop)."""

    def __init__(self, prefix_blocks: int = 100_000, load_margin: int = 3) -> None:
        self._endpoints: dict[str, _Endpoint] = {}
        self.prefixes = PrefixIndex(prefix_blocks)
        self.load_margin = load_margin  # prefix-cache: in flight over the least loaded
        self._in_flight: Counter[str] = Counter()  # route id -> requests sent, unanswered
        self._random = random.Random()
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
            self._remove(route_id, leaving=replica is None)
            if replica is not None:
                found = self._endpoints.setdefault(replica.endpoint, _Endpoint())
                found.replicas[route_id] = replica
                found.changed()
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
        """A replica for a request (a retry: its prompt is not looked at again)."""
        chosen = self.route(endpoint, avoid_hosts=avoid_hosts, avoid_routes=avoid_routes)
        return None if chosen is None else chosen.replica

    def route(
        self,
        endpoint: str,
        hashes: Sequence[int] | None = None,
        *,
        avoid_hosts: Collection[str] = (),
        avoid_routes: Collection[str] = (),
    ) -> Pick | None:
        """A replica for a request by the deployment's policy; `hashes`: its prompt's
        blocks (prefix-cache: the index learns where they went)."""
        found = self._endpoints.get(endpoint)
        if found is None:
            return None
        ejected = self._ejected_now(time.monotonic())
        candidates = found.candidates(avoid_hosts, avoid_routes, ejected)
        if not candidates:
            return None
        policy = found.policy()
        if policy is RoutingPolicy.ROUND_ROBIN:
            by_id = {r.route_id: r for r in candidates}
            return Pick(by_id[found.rotate([(r.route_id, r.weight) for r in candidates])])
        within = found.revision_of_turn(candidates)
        if policy is RoutingPolicy.LEAST_REQUEST or hashes is None:
            return Pick(self._replica_of(within, least_request(self._loads(within), self._random)))
        return self._by_prefix(endpoint, within, hashes)

    def policy(self, endpoint: str) -> RoutingPolicy | None:
        """How the endpoint's replicas are picked (None: no replica here)."""
        found = self._endpoints.get(endpoint)
        return None if found is None else found.policy()

    def sent(self, route_id: str) -> None:
        """A request went to `route_id` (its answer not in yet)."""
        self._in_flight[route_id] += 1

    def done(self, route_id: str) -> None:
        self._in_flight[route_id] -= 1
        if self._in_flight[route_id] <= 0:
            del self._in_flight[route_id]

    def _by_prefix(self, endpoint: str, within: list[Replica], hashes: Sequence[int]) -> Pick:
        match = self.prefixes.deepest(endpoint, hashes)
        chosen, decision = by_prefix(self._loads(within), match, anchor_of(hashes),
                                     self.load_margin)  # fmt: skip
        self.prefixes.record(endpoint, hashes, chosen.route_id)
        depth = match.depth if match is not None and decision is Decision.HIT else 0
        return Pick(self._replica_of(within, chosen), decision, depth)

    def _loads(self, replicas: Sequence[Replica]) -> list[Candidate]:
        return [Candidate(r.route_id, self._in_flight.get(r.route_id, 0)) for r in replicas]

    @staticmethod
    def _replica_of(replicas: Sequence[Replica], chosen: Candidate) -> Replica:
        return next(r for r in replicas if r.route_id == chosen.route_id)

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

    def _remove(self, route_id: str, *, leaving: bool) -> None:
        """Out of the table (`leaving`: for good, not to come back changed)."""
        self._ejected.pop(route_id, None)
        endpoint = self._where.pop(route_id, None)
        if endpoint is None:
            return
        if leaving and self._endpoints[endpoint].policy() is RoutingPolicy.PREFIX_CACHE:
            self.prefixes.forget(route_id)
        routes = self._endpoints[endpoint]
        routes.replicas.pop(route_id, None)
        routes.scores.pop(route_id, None)
        routes.changed()
        if not routes.replicas:
            del self._endpoints[endpoint]
