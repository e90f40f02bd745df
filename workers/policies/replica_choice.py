"""Which replica of a revision gets a request, by the deployment's routing policy (pure).

The revision is chosen first, by the weights (a canary keeps its exact share); these
choose among that revision's replicas:

- **least-request:** of two replicas drawn at random, the one with fewer requests in
  flight (the power of two choices);
- **prefix-cache:** the replica that got the prompt's longest known prefix (the deepest
  block in the `PrefixIndex`), unless it has more than `margin` requests in flight over
  the least loaded: then one within the margin of the least loaded (picked as a cold
  prompt's is), which will hold the prefix too (no hot spot). A prompt whose deepest
  known block was sent to many of the replicas (a template, a chat's system message:
  a shared start says nothing of where the rest is) or to none is cold: among the
  replicas within the margin of the least loaded, the one rendezvous hashing of its
  anchor block picks, so that every proxy process sends the same prefix to the same
  replica.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from workers.policies.prefix_index import Match

# The block that names a cold prompt for rendezvous hashing: deep enough to tell
# documents apart, shallow enough that a conversation's turns share it.
ANCHOR_BLOCKS = 8


class Decision(StrEnum):
    HIT = "hit"  # to a replica that got its prefix
    LOAD = "load"  # that replica was too busy: the least loaded instead
    COLD = "cold"  # no prefix known (or only a shared start)


@dataclass(frozen=True)
class Candidate:
    route_id: str
    in_flight: int


def least_request(candidates: Sequence[Candidate], rng: random.Random) -> Candidate:
    """The power of two choices: the less busy of two drawn at random."""
    if len(candidates) == 1:
        return candidates[0]
    first, second = rng.sample(list(candidates), 2)
    return min((first, second), key=lambda c: c.in_flight)


def by_prefix(
    candidates: Sequence[Candidate], match: Match | None, anchor: int | None, margin: int
) -> tuple[Candidate, Decision]:
    """The replica for a prompt whose longest known prefix is `match` (see the module)."""
    least = min(c.in_flight for c in candidates)
    within = [c for c in candidates if c.in_flight <= least + margin]
    by_id = {c.route_id: c for c in candidates}
    holders = [by_id[h] for h in (match.holders if match else ()) if h in by_id]
    shared = len(holders) >= max(2, math.ceil(len(candidates) / 2))
    if holders and not shared:
        best = min(holders, key=lambda c: (c.in_flight, -holders.index(c)))
        if best in within:
            return best, Decision.HIT
        return rendezvous(within, anchor), Decision.LOAD
    return rendezvous(within, anchor), Decision.COLD


def anchor_of(hashes: Sequence[int]) -> int | None:
    """The block a cold prompt is known by (None: no full block)."""
    return hashes[min(len(hashes), ANCHOR_BLOCKS) - 1] if hashes else None


def rendezvous(candidates: Sequence[Candidate], anchor: int | None) -> Candidate:
    """Highest random weight of (anchor, replica): every process agrees; the least
    loaded when there is no anchor."""
    if anchor is None:
        return min(candidates, key=lambda c: (c.in_flight, c.route_id))
    return max(candidates, key=lambda c: _weight(anchor, c.route_id))


def _weight(anchor: int, route_id: str) -> bytes:
    return hashlib.blake2b(anchor.to_bytes(8, "big") + route_id.encode(), digest_size=8).digest()
