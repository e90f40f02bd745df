"""The host agent's heartbeat: its host row in PostgreSQL (the controller declares a silent
host lost, by the database clock) and a field in Redis the proxy reads (a replica whose
host has missed heartbeats gets no new requests, even before the host is declared lost).

A thread of its own, so a long pass of the agent (starting many sessions) never makes
its host look silent.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import redis
import sqlalchemy as sa

from workers.adapters.postgres.engine import transaction
from workers.adapters.postgres.schema import hosts
from workers.adapters.redis.client import server_time_s
from workers.adapters.redis.keys import RedisKeys

log = logging.getLogger(__name__)


@dataclass
class Heartbeat:
    engine: sa.Engine
    name: str
    every_s: float = 2.0
    redis_client: redis.Redis | None = None
    keys: RedisKeys = field(default_factory=RedisKeys)
    _stop: threading.Event = field(default_factory=threading.Event)
    _failing: bool = False

    def start(self) -> None:
        threading.Thread(target=self._beat, name=f"heartbeat-{self.name}", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def beat_once(self) -> None:
        """Say this host lives, to PostgreSQL and (for the proxy) to Redis."""
        with transaction(self.engine) as conn:
            conn.execute(
                hosts.update()
                .where(hosts.c.name == self.name)
                .values(last_heartbeat_at=sa.func.now())
            )
        if self.redis_client is not None:
            now_s = server_time_s(self.redis_client.time())
            self.redis_client.hset(self.keys.host_heartbeats, self.name, f"{now_s:.3f}")

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.beat_once()
            except (sa.exc.SQLAlchemyError, redis.RedisError, OSError) as error:
                if not self._failing:  # one line when it starts failing, one when back
                    log.warning("host %s: heartbeat failed: %s", self.name, error)
                self._failing = True
                continue
            if self._failing:
                log.warning("host %s: heartbeat back", self.name)
                self._failing = False
