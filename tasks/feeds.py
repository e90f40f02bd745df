"""Beat's feed watchers: a phase whose work is announced on a Redis stream starts as soon as
an entry lands, instead of at its next tick.

Each runs in beat (there is exactly one: workers would each wake), as a daemon thread
that blocks on its feed; a phase declares its watcher next to itself. A missed wake
(beat restarting) costs at most the phase's own tick, which stays the safety net.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol
from uuid import UUID

from workers.celery import app
from workers.phase_names import PhaseName

log = logging.getLogger(__name__)

BLOCK_S = 2.0  # one blocking read of a feed; under the Redis client's 5 s socket timeout


class Feed(Protocol):
    def last_taken(self) -> str:
        """Where the phase's last run stopped reading ("0": nothing taken yet)."""
        ...

    def wait_for_changes(self, after: str, block_s: float) -> str | None:
        """Block until entries after `after` land; the newest one's id, or None."""
        ...


def announced_ids(texts: Iterable[str]) -> list[UUID]:
    """The ids a feed announced, in order; anything else a writer put there is passed over."""
    found = []
    for text in texts:
        try:
            found.append(UUID(text))
        except ValueError:
            continue
    return found


def start_watcher(phase: PhaseName, feed: Callable[[], Feed]) -> None:
    """Start `phase` whenever `feed` announces work (a thread of this process)."""
    threading.Thread(target=_watch, args=(phase, feed), name=f"watch-{phase}", daemon=True).start()


def _watch(phase: PhaseName, feed: Callable[[], Feed]) -> None:
    after: str | None = None
    while True:
        try:
            source = feed()
            after = after or source.last_taken()  # what was announced while nobody watched
            newest = source.wait_for_changes(after, BLOCK_S)
            if newest is None:
                continue
            after = newest
            app.send_task(phase, kwargs={"rerun_if_busy": True})
        except Exception:  # a Redis or broker outage: beat ticks on; try again shortly
            log.warning("%s watcher: retrying in 1 s", phase, exc_info=True)
            time.sleep(1)
