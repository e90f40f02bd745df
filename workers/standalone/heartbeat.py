"""The host agent's heartbeat: its host row in PostgreSQL (the controller declares a silent
host lost, by the database clock) and a field in Redis (a second sign of life: a host
that reaches Redis but not PostgreSQL is cut off from the controller, not dead).

A thread of its own, so a long pass of the agent (starting many sessions) never makes
its host look silent. The two stores are written independently: either may be down
while the other still hears the host. No error ends the thread (a heartbeat that died on
the first connection error once left every host of a fleet "lost" after a 15 s database
outage); each store's failure is logged once when it starts and once when it ends, and
the agent's loop starts the thread again should it ever stop (`ensure_running`).
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
    """One store the heartbeat goes to, and whether writing to it is failing now."""

    name: str
    write: Callable[[], None]
    failing: bool = False

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
    _thread: threading.Thread | None = None
    _stores: list[_Store] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stores = [_Store("PostgreSQL", self._beat_postgres)]
        if self.redis_client is not None:
            self._stores.append(_Store("Redis", self._beat_redis))

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat-{self.name}", daemon=True
        )
        self._thread.start()

    def ensure_running(self) -> bool:
        """Start the thread again if it is not running; True when it had to."""
        if self._stop.is_set() or (self._thread is not None and self._thread.is_alive()):
            return False
        if self._thread is not None:
            log.error("host %s: the heartbeat thread had stopped; started again", self.name)
        self.start()
        return True

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

    def _beat(self) -> None:
        while not self._stop.is_set():
            self.beat_once()
            self._stop.wait(self.every_s)
