"""A change feed in Redis: a stream whose entries name ids in one comma-separated field,
and a cursor the controller moves past what it took.

Writers add entries beside the data they change (the prober: routes whose readiness
changed; the proxy: deployments a held request waits for); beat's watcher blocks on
the stream and starts the phase that takes them (`tasks.feeds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from workers.adapters.redis.client import redis_errors
from workers.adapters.redis.keys import CHANGES_KEPT
from workers.contracts.feeds import FeedSpec

CHANGES_READ = 10_000  # the most entries one `take` reads


@dataclass(frozen=True)
class RedisFeed:
    client: redis.Redis
    stream: str
    cursor: str
    spec: FeedSpec  # how its entries name ids

    def announce(self, ids: list[str], pipe: Any = None) -> None:
        """An entry naming `ids` (on `pipe` when given: with the caller's other writes)."""
        target = self.client if pipe is None else pipe
        target.xadd(self.stream, self.spec.entry(ids), maxlen=CHANGES_KEPT, approximate=True)

    def take(self) -> list[str]:
        """Ids announced since the last call, oldest first, each once; the cursor moves past
        them (a reader holding the phase lock is the only one)."""
        with redis_errors():
            # replies are str (decode_responses); redis-py's types say bytes | str
            cursor: Any = self.client.get(self.cursor)
            start = f"({cursor}" if cursor else "-"
            entries: Any = self.client.xrange(self.stream, min=start, count=CHANGES_READ)
            if not entries:
                return []
            self.client.set(self.cursor, entries[-1][0])
        announced = (one for _, fields in entries for one in self.spec.ids_in(fields))
        return list(dict.fromkeys(announced))

    def last_taken(self) -> str:
        """The id of the last entry `take` took ("0": none yet); a watcher starting there
        wakes at once for anything announced and not yet acted on."""
        with redis_errors():
            cursor: Any = self.client.get(self.cursor)
        return str(cursor) if cursor else "0"

    def wait_for_changes(self, after: str, block_s: float) -> str | None:
        """Block until the stream has entries after `after`; the newest one's id, or None
        when `block_s` passed with nothing (keep it under the client's socket timeout)."""
        with redis_errors():
            reply: Any = self.client.xread({self.stream: after}, count=CHANGES_READ,
                                           block=int(block_s * 1000))  # fmt: skip
        return str(reply[0][1][-1][0]) if reply else None
