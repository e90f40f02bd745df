"""Prefix-cache routing in the request path: a request's prompt read once, its replica
chosen (`RoutingTable.route`), and what the replica's answer says of its cache learned.

Only requests for a deployment routed by prefix-cache are read: a JSON body of
`/v1/completions` or `/v1/chat/completions` (`workers.contracts.prompts`). The answer
passes through untouched; the last bytes of it are kept to find its `usage`
(`prompt_tokens_details.cached_tokens`, which vLLM sends; in a stream's last chunk when
the client asked for it). A replica that got a request because it was thought to hold
its prefix, and says it had cached less than half of it, no longer counts as holding it.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

from workers.contracts.prompts import block_hashes, prompt_of
from workers.domain import RoutingPolicy
from workers.policies.replica_choice import Decision
from workers.standalone.proxy import counting
from workers.standalone.proxy.routing import Pick, RoutingTable

TAIL_BYTES = 4096  # of an answer, kept to find its usage
CHARS_PER_TOKEN = 4  # what a cached token is taken to be worth, in the prompt's characters
_CACHED = re.compile(rb'"cached_tokens"\s*:\s*(\d+)')
_PROMPT_TOKENS = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')


@dataclass
class Routed:
    """A request routed by its prompt: its blocks, the pick, and its answer's tail."""

    endpoint: str
    hashes: list[int]
    pick: Pick
    block_chars: int
    tail: bytearray = field(default_factory=bytearray)

    def seen(self, chunk: bytes) -> None:
        """A piece of the answer as it passes (only its last bytes are kept)."""
        self.tail += chunk
        del self.tail[:-TAIL_BYTES]


def route_by_prompt(table: RoutingTable, endpoint: str, path: str, body: bytes,
                    block_chars: int) -> Routed | None:  # fmt: skip
    """The replica for a request by its prompt, when its deployment is routed by
    prefix-cache and its body carries one (None: route it as any other)."""
    if table.policy(endpoint) is not RoutingPolicy.PREFIX_CACHE:
        return None
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    prompt = prompt_of(path, parsed) if isinstance(parsed, dict) else None
    if prompt is None:
        return None
    started = time.perf_counter()
    hashes = block_hashes(prompt, block_chars)
    pick = table.route(endpoint, hashes)
    counting.DECISION_TIME.labels(endpoint).observe(time.perf_counter() - started)
    if pick is None:
        return None
    counting.DECISIONS.labels(endpoint, (pick.decision or Decision.COLD).value).inc()
    counting.INDEX_BLOCKS.set(len(table.prefixes))
    return Routed(endpoint, hashes, pick, block_chars)


def learn(table: RoutingTable, routed: Routed) -> None:
    """What the answer's usage says of the replica's cache."""
    tail = bytes(routed.tail)
    cached, prompt_tokens = _last(_CACHED, tail), _last(_PROMPT_TOKENS, tail)
    if cached is None:
        return
    endpoint, pick = routed.endpoint, routed.pick
    counting.CACHED_TOKENS.labels(endpoint).inc(cached)
    if prompt_tokens is not None:
        counting.PROMPT_TOKENS.labels(endpoint).inc(prompt_tokens)
    predicted_chars = pick.depth * routed.block_chars
    counting.CHARS_SAVED.labels(endpoint).inc(min(predicted_chars, cached * CHARS_PER_TOKEN))
    if pick.decision is Decision.HIT and cached * CHARS_PER_TOKEN < predicted_chars / 2:
        table.prefixes.drop(endpoint, routed.hashes, pick.replica.route_id)


def _last(pattern: re.Pattern[bytes], tail: bytes) -> int | None:
    found = pattern.findall(tail)
    return int(found[-1]) if found else None
