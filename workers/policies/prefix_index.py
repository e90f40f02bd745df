"""Which replicas probably hold a prompt's prefix in their KV cache: a proxy's index (pure).

Each entry is one block of a prompt (its chained hash, `workers.contracts.prompts`) of
one deployment, with the replicas it was last sent to (a few, most recent last). The
deepest block of a prompt in the index is the longest cached prefix the proxy knows of.
The index holds at most `capacity` blocks, least recently used first out: its memory is
bounded whatever the traffic (vLLM production-stack's unbounded trie ran its router out
of memory). A replica that leaves, or reports a miss for blocks it was thought to hold,
drops out of them.
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

HOLDERS_KEPT = 4  # replicas remembered per block: a hot prefix spreads over a few


@dataclass(frozen=True)
class Match:
    depth: int  # blocks of the prompt, from its start, the index knows
    holders: tuple[str, ...]  # replicas the deepest of them went to, most recent last


class PrefixIndex:
    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        # key: the block's hash mixed with its endpoint's (an int: no tuple per lookup)
        self._entries: OrderedDict[int, list[str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def deepest(self, endpoint: str, hashes: Sequence[int]) -> Match | None:
        """The deepest block of the prompt the index holds, and who it went to."""
        salt, entries = _salt(endpoint), self._entries
        for depth in range(len(hashes), 0, -1):
            holders = entries.get(hashes[depth - 1] ^ salt)
            if holders:
                return Match(depth, tuple(holders))
        return None

    def record(self, endpoint: str, hashes: Sequence[int], route_id: str) -> None:
        """`route_id` got the prompt: it holds every block of it now."""
        salt, entries = _salt(endpoint), self._entries
        for digest in hashes:
            key = digest ^ salt
            holders = entries.get(key)
            if holders is None:
                entries[key] = [route_id]
                continue
            if holders[-1] != route_id:
                if route_id in holders:
                    holders.remove(route_id)
                holders.append(route_id)
                del holders[:-HOLDERS_KEPT]
            entries.move_to_end(key)
        while len(entries) > self.capacity:
            entries.popitem(last=False)

    def drop(self, endpoint: str, hashes: Sequence[int], route_id: str) -> None:
        """`route_id` does not hold these blocks (it said so)."""
        salt = _salt(endpoint)
        for digest in hashes:
            holders = self._entries.get(digest ^ salt)
            if holders and route_id in holders:
                holders.remove(route_id)
                if not holders:
                    del self._entries[digest ^ salt]

    def forget(self, route_id: str) -> None:
        """A replica left: it holds nothing any more."""
        for key in [k for k, holders in self._entries.items() if route_id in holders]:
            holders = self._entries[key]
            holders.remove(route_id)
            if not holders:
                del self._entries[key]


@functools.lru_cache(maxsize=4096)
def _salt(endpoint: str) -> int:
    """A 64-bit value of the endpoint, mixed into its blocks' keys."""
    return int.from_bytes(hashlib.blake2b(endpoint.encode(), digest_size=8).digest(), "big")
