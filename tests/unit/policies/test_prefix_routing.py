"""Prefix-cache routing, pure: the index, the choice, the load margin, the shared start,
two processes agreeing, canary shares kept, a replica leaving, what answers teach."""

from __future__ import annotations

import random
from collections import Counter
from uuid import uuid4

from workers.contracts.labels import RouteLabels, to_labels
from workers.contracts.prompts import block_hashes
from workers.domain import ModelServiceMetadata, RoutingPolicy
from workers.policies.prefix_index import PrefixIndex
from workers.policies.replica_choice import (
    Candidate,
    Decision,
    anchor_of,
    by_prefix,
    least_request,
)
from workers.standalone.proxy.prefix_routing import Routed, learn
from workers.standalone.proxy.routing import RoutingTable

E = str(uuid4())
DOC = "the quarterly report says " * 40  # ~1,000 characters: several blocks


def test_the_deepest_known_block_decides_and_the_index_stays_within_its_bound() -> None:
    index = PrefixIndex(capacity=6)
    index.record(E, [1, 2, 3], "a")
    index.record(E, [1, 2, 9], "b")
    match = index.deepest(E, [1, 2, 3, 4])
    assert match is not None
    assert (match.depth, match.holders) == (3, ("a",))
    assert index.deepest(E, [1, 2])  # both went there: the holders are a, then b
    index.record(E, [10, 11, 12, 13], "c")  # 9 blocks asked, 6 kept: the oldest go
    assert len(index) == 6
    assert index.deepest(E, [1]) is None


def test_a_replica_that_leaves_or_reports_a_miss_no_longer_holds_its_blocks() -> None:
    index = PrefixIndex(capacity=100)
    index.record(E, [1, 2], "a")
    index.record(E, [1, 2], "b")
    index.drop(E, [2], "b")
    match = index.deepest(E, [1, 2])
    assert match is not None
    assert match.holders == ("a",)
    index.forget("a")
    only_b = index.deepest(E, [1, 2])
    assert only_b is not None
    assert (only_b.depth, only_b.holders) == (1, ("b",))


def _candidates(*loads: int) -> list[Candidate]:
    return [Candidate(f"r{i}", load) for i, load in enumerate(loads)]


def test_a_known_prefix_goes_where_it_is_unless_that_replica_is_too_busy() -> None:
    index = PrefixIndex(capacity=100)
    hashes = block_hashes(DOC, 64)
    index.record(E, hashes, "r2")
    match = index.deepest(E, hashes)
    chosen, decision = by_prefix(_candidates(1, 0, 2, 0), match, anchor_of(hashes), margin=3)
    assert (chosen.route_id, decision) == ("r2", Decision.HIT)
    hot, decision = by_prefix(_candidates(1, 0, 9, 0), match, anchor_of(hashes), margin=3)
    assert decision is Decision.LOAD  # a hot prefix spreads once its replica is loaded
    assert hot.route_id in {"r0", "r1", "r3"}  # within the margin of the least loaded


def test_a_shared_start_neither_pins_nor_counts_as_a_hit() -> None:
    index = PrefixIndex(capacity=1000)
    system = "system: you are a helpful assistant. " * 8
    for i, replica in enumerate(["r0", "r1", "r2", "r3"]):
        index.record(E, block_hashes(system + f"user: question {i} " * 20, 64), replica)
    fresh = block_hashes(system + "user: something else entirely " * 20, 64)
    match = index.deepest(E, fresh)
    assert match is not None
    assert len(match.holders) == 4  # only the system message is known
    anchors = [anchor_of(block_hashes(system + c * 600, 64)) for c in "abcd"]
    chosen = {by_prefix(_candidates(0, 0, 0, 0), match, anchor, margin=3) for anchor in anchors}
    assert {decision for _, decision in chosen} == {Decision.COLD}
    assert len({c.route_id for c, _ in chosen}) > 1  # spread, not pinned to one replica


def test_two_processes_send_a_cold_prefix_to_the_same_replica() -> None:
    hashes = block_hashes(DOC, 64)
    first = by_prefix(_candidates(0, 0, 0, 0), None, anchor_of(hashes), margin=3)
    second = by_prefix(list(reversed(_candidates(0, 0, 0, 0))), None, anchor_of(hashes), 3)
    assert first[0].route_id == second[0].route_id
    assert first[1] is Decision.COLD


def test_least_request_takes_the_less_busy_of_two() -> None:
    rng = random.Random(1)
    picks = Counter(least_request(_candidates(5, 0, 5, 5), rng).route_id for _ in range(400))
    assert picks["r1"] > 150  # whenever drawn, it wins


def _target(route_id: str, revision: int, weight: float) -> ModelServiceMetadata:
    labels = RouteLabels(uuid4(), uuid4(), "m", "custom", revision, "h", weight,
                         RoutingPolicy.PREFIX_CACHE)  # fmt: skip
    fields = {**to_labels(labels), "endpoint_id": E, "route_id": route_id}
    return ModelServiceMetadata(route_id, "m", "127.0.0.1", 8000, "/metrics", fields)  # type: ignore[arg-type]


def test_canary_weights_still_choose_the_revision_under_prefix_cache() -> None:
    table = RoutingTable()
    old = [_target(str(uuid4()), 1, 45.0) for _ in range(2)]
    new = [_target(str(uuid4()), 2, 5.0) for _ in range(2)]
    table.replace_all(old + new)
    revisions: Counter[str] = Counter()
    for i in range(1000):
        pick = table.route(E, block_hashes(f"prompt {i} " * 40, 64))
        assert pick is not None
        revisions[pick.replica.revision] += 1
    assert revisions == {"1": 900, "2": 100}  # exactly 10 %


def test_an_answers_cached_tokens_teach_the_index() -> None:
    table = RoutingTable()
    route_id = str(uuid4())
    table.replace_all([_target(route_id, 1, 1.0)])
    hashes = block_hashes(DOC, 64)
    first = table.route(E, hashes)
    assert first is not None
    assert first.decision is Decision.COLD
    again = table.route(E, hashes)
    assert again is not None
    assert again.decision is Decision.HIT
    routed = Routed(E, hashes, again, 64)
    routed.seen(b'{"usage": {"prompt_tokens": 250, "prompt_tokens_details": {"cached_tokens": 0}}}')
    learn(table, routed)  # it was thought to hold the prefix, and said it did not
    assert table.prefixes.deepest(E, hashes) is None
