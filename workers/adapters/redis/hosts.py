"""What Redis says of the hosts: when each one's agent last beat there (a second sign of
life beside its PostgreSQL heartbeat), read with the Redis server's clock."""

from __future__ import annotations

import logging

import redis

from workers.adapters.redis.client import redis_errors, server_time_s
from workers.adapters.redis.keys import RedisKeys

log = logging.getLogger(__name__)


class RedisHostSignals:
    def __init__(self, *, client: redis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys

    def heartbeat_ages_s(self) -> dict[str, float]:
        """Seconds since each host's agent last beat in Redis (a value that is not a time
        is left out: that host's Redis heartbeat is unknown, not old)."""
        with redis_errors():
            pipe = self._client.pipeline(transaction=False)
            pipe.time()
            pipe.hgetall(self._keys.host_heartbeats)
            time_reply, beats = pipe.execute()
        now_s = server_time_s(time_reply)
        ages: dict[str, float] = {}
        for host, at in beats.items():
            try:
                ages[host] = max(now_s - float(at), 0.0)
            except ValueError:
                log.warning("host %s: unreadable Redis heartbeat %r; left out", host, at[:40])
        return ages
