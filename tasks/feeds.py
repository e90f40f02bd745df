"""Beat's feed watchers: a phase whose work is announced on a Redis stream starts as soon as
an entry lands, instead of at its next tick.

Each runs in beat (there is exactly one: workers would each wake), as a thread that
blocks on its feed, a read at a time, until stopped (when beat exits); a phase declares
its watcher next to itself. A missed wake
(beat restarting) costs at most the phase's own tick, which stays the safety net.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
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


@dataclass
class Watcher:
    """One phase's feed watcher: a thread of this process until `stop()`."""

    phase: PhaseName
    feed: Callable[[], Feed]
    _stopped: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Watcher:
        self._thread = threading.Thread(target=self._watch, name=f"watch-{self.phase}",
                                        daemon=True)  # fmt: skip
        self._thread.start()
        return self

    def stop(self, timeout_s: float = BLOCK_S + 1) -> bool:
        """Stop after the read in progress (at most BLOCK_S); whether it has stopped."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        return self._thread is None or not self._thread.is_alive()

    def _watch(self) -> None:
        after: str | None = None
        while not self._stopped.is_set():
            try:
                source = self.feed()
                after = after or source.last_taken()  # what was announced while nobody watched
                newest = source.wait_for_changes(after, BLOCK_S)
                if newest is None or self._stopped.is_set():
                    continue
                after = newest
                app.send_task(self.phase, kwargs={"rerun_if_busy": True})
            except Exception:  # a Redis or broker outage: beat ticks on; try again shortly
                log.warning("%s watcher: retrying in 1 s", self.phase, exc_info=True)
                self._stopped.wait(1)


# The watchers this process started, stopped together when it exits.
WATCHERS: list[Watcher] = []


def start_watcher(phase: PhaseName, feed: Callable[[], Feed]) -> Watcher:
    """Start `phase` whenever `feed` announces work (a thread of this process)."""
    watcher = Watcher(phase, feed).start()
    WATCHERS.append(watcher)
    return watcher


@atexit.register
def stop_watchers() -> None:
    for watcher in WATCHERS:
        watcher.stop()
    WATCHERS.clear()
