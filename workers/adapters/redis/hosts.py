"""What Redis says of the hosts: when each one's agent last beat there (a second sign of
life beside its PostgreSQL heartbeat), what the probers saw of each host's replicas, and
when each prober last beat; read (and, for the probers, written) with the Redis clock."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

import redis

from workers.adapters.redis.client import redis_errors, server_time_s
from workers.adapters.redis.keys import RedisKeys
from workers.contracts.probes import time_from_field, unreached_field, unreached_from_field
from workers.domain import ProbeReach

log = logging.getLogger(__name__)


class RedisHostSignals:
    def __init__(self, *, client: redis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys

    def heartbeat_ages_s(self) -> dict[str, float]:
        """Seconds since each host's agent last beat in Redis (a value that is not a time
        is left out: that host's Redis heartbeat is unknown, not old)."""
        now_s, [beats] = self._read(self._keys.host_heartbeats)
        return _ages(now_s, beats)

    def prober_ages_s(self) -> dict[str, float]:
        """Seconds since each prober last finished a pass."""
        now_s, [beats] = self._read(self._keys.prober_heartbeats)
        return _ages(now_s, beats)

    def probe_reach(self) -> dict[str, ProbeReach]:
        """Per host: how long ago a probe of one of its replicas last passed, and last got no
        answer at all from it (with what it saw)."""
        now_s, [passed, unreached] = self._read(
            self._keys.host_probes_passed, self._keys.host_probes_unreached
        )
        reach: dict[str, ProbeReach] = {}
        for host in set(passed) | set(unreached):
            passed_at = time_from_field(passed.get(host, ""))
            missed = unreached_from_field(unreached.get(host, ""))
            reach[host] = ProbeReach(
                passed_s_ago=None if passed_at is None else max(now_s - passed_at, 0.0),
                unreached_s_ago=None if missed is None else max(now_s - missed.at_s, 0.0),
                detail="" if missed is None else missed.detail,
            )
        return reach

    def _read(self, *hashes: str) -> tuple[float, list[dict[str, str]]]:
        """The Redis clock and each hash whole, in one round trip."""
        with redis_errors():
            pipe = self._client.pipeline(transaction=False)
            pipe.time()
            for key in hashes:
                pipe.hgetall(key)
            time_reply, *found = pipe.execute()
        return server_time_s(time_reply), found


class RedisProbeSignals:
    """What a prober says besides readiness: that it lives, and what it saw of each host."""

    def __init__(self, *, client: redis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys

    def note(self, prober: str, passed: Collection[str], unreached: Mapping[str, str]) -> None:
        """A pass ended: hosts where a probe passed, hosts that did not answer at all (what
        the probe saw), and the prober's own heartbeat; one round trip after the clock."""
        with redis_errors():
            now_s = server_time_s(self._client.time())
            pipe = self._client.pipeline(transaction=False)
            if passed:
                pipe.hset(self._keys.host_probes_passed,
                          mapping=dict.fromkeys(passed, f"{now_s:.3f}"))  # fmt: skip
            if unreached:
                pipe.hset(self._keys.host_probes_unreached, mapping={
                    host: unreached_field(now_s, detail) for host, detail in unreached.items()
                })  # fmt: skip
            pipe.hset(self._keys.prober_heartbeats, prober, f"{now_s:.3f}")
            pipe.execute()


def _ages(now_s: float, beats: Mapping[str, str]) -> dict[str, float]:
    ages: dict[str, float] = {}
    for name, at in beats.items():
        at_s = time_from_field(at)
        if at_s is None:
            log.warning("%s: unreadable heartbeat %r; left out", name, at[:40])
            continue
        ages[name] = max(now_s - at_s, 0.0)
    return ages
