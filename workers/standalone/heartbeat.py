"""The host agent's heartbeat: its host row in PostgreSQL (the controller declares a silent
host lost, by the database clock) and a field in Redis (a second sign of life: a host
that reaches Redis but not PostgreSQL is cut off from the controller, not dead).

A thread per store, so a long pass of the agent (starting many sessions) never makes
its host look silent, and a store that hangs (a host cut off from it: a write waits on
TCP) never holds up the other: either may be down while the other still hears the
host. No error ends a thread (a heartbeat that died on the first connection error once
left every host of a fleet "lost" after a 15 s database outage); each store's failure
is logged once when it starts and once when it ends, and the agent's loop starts a
thread again should it ever stop (`ensure_running`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
import sqlalchemy as sa

from workers.adapters.postgres.engine import transaction
from workers.adapters.postgres.schema import hosts
from workers.adapters.redis.client import server_time_s
from workers.adapters.redis.keys import RedisKeys

log = logging.getLogger(__name__)


@dataclass
class _Store:
    """One store the heartbeat goes to, its thread, and whether writing to it fails now."""

    name: str
    write: Callable[[], None]
    failing: bool = False
    thread: threading.Thread | None = None

    def beat(self, host: str) -> bool:
        try:
            self.write()
        except Exception as error:  # any failure: the next beat tries again
            if not self.failing:
                log.warning("host %s: heartbeat to %s failed: %s", host, self.name, error)
            self.failing = True
            return False
        if self.failing:
            log.warning("host %s: heartbeat to %s back", host, self.name)
            self.failing = False
        return True


@dataclass
class Heartbeat:
    engine: sa.Engine
    name: str
    every_s: float = 2.0
    redis_client: redis.Redis | None = None
    keys: RedisKeys = field(default_factory=RedisKeys)
    _stop: threading.Event = field(default_factory=threading.Event)
    _stores: list[_Store] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stores = [_Store("PostgreSQL", self._beat_postgres)]
        if self.redis_client is not None:
            self._stores.append(_Store("Redis", self._beat_redis))

    def start(self) -> None:
        for store in self._stores:
            self._start(store)

    def ensure_running(self) -> bool:
        """Start any store's thread again that is not running; True when one had to."""
        if self._stop.is_set():
            return False
        dead = [s for s in self._stores if s.thread is None or not s.thread.is_alive()]
        for store in dead:
            if store.thread is not None:
                log.error("host %s: the heartbeat to %s had stopped; started again",
                          self.name, store.name)  # fmt: skip
            self._start(store)
        return bool(dead)

    @property
    def threads(self) -> list[threading.Thread]:
        return [s.thread for s in self._stores if s.thread is not None]

    def stop(self) -> None:
        self._stop.set()

    def beat_once(self) -> bool:
        """Say this host lives, to each store; True when every store heard it."""
        heard = [store.beat(self.name) for store in self._stores]
        return all(heard)

    def _beat_postgres(self) -> None:
        with transaction(self.engine) as conn:
            conn.execute(
                hosts.update()
                .where(hosts.c.name == self.name)
                .values(last_heartbeat_at=sa.func.now())
            )

    def _beat_redis(self) -> None:
        assert self.redis_client is not None
        now_s = server_time_s(self.redis_client.time())
        self.redis_client.hset(self.keys.host_heartbeats, self.name, f"{now_s:.3f}")

    def _start(self, store: _Store) -> None:
        store.thread = threading.Thread(target=self._beat, args=(store,), daemon=True,
                                        name=f"heartbeat-{store.name}-{self.name}")  # fmt: skip
        store.thread.start()

    def _beat(self, store: _Store) -> None:
        while not self._stop.is_set():
            store.beat(self.name)
            self._stop.wait(self.every_s)
