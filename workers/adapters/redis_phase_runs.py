"""The Redis half of a phase run: its lock, and the outcomes its header tasks store.

The lock is redis-py's: a random token under the phase's key with a TTL, released
only by the holder of that token, so a run that outlives its deadline can never
release the lock of the run after it. A follow-up that finds the phase busy
leaves a rerun request, so the run that holds the lock starts another when it
closes: work that a follow-up announces is never lost to a busy lock.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable
from typing import Any
from uuid import UUID

import redis
from redis.exceptions import LockNotOwnedError
from redis.lock import Lock

from workers.adapters.redis_client import redis_errors
from workers.adapters.redis_keys import OUTCOMES_KEPT_AFTER_CLOSE_S, RedisKeys
from workers.phase_runs import Outcome

log = logging.getLogger(__name__)


class RedisPhaseLock:
    def __init__(self, *, client: redis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys

    def acquire(self, phase: str, ttl_s: float) -> str | None:
        """A new token when the phase was free, None when a run holds it."""
        token = secrets.token_hex(16)
        with redis_errors():
            taken = self._lock(phase, ttl_s).acquire(blocking=False, token=token)
        return token if taken else None

    def release(self, phase: str, token: str) -> bool:
        """Free the phase if `token` still holds it; False when it had expired or moved on."""
        try:
            with redis_errors():
                self._lock(phase).do_release(token)
        except LockNotOwnedError:
            return False
        return True

    def request_rerun(self, phase: str, ttl_s: float) -> None:
        """Remember that a run was asked for while the phase was busy."""
        with redis_errors():
            self._client.set(self._keys.phase_rerun(phase), "1", px=max(1, int(ttl_s * 1000)))

    def take_rerun(self, phase: str) -> bool:
        """Whether a run was asked for meanwhile; the request is consumed."""
        with redis_errors():
            return self._client.delete(self._keys.phase_rerun(phase)) > 0

    def holder(self, phase: str) -> str | None:
        with redis_errors():
            value = self._client.get(self._keys.phase_lock(phase))
        return None if value is None else str(value)

    def _lock(self, phase: str, ttl_s: float | None = None) -> Lock:
        return Lock(self._client, self._keys.phase_lock(phase), timeout=ttl_s, thread_local=False)


class RedisOutcomeStore:
    def __init__(self, *, client: redis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys

    def save(self, run_id: UUID, outcomes: Iterable[Outcome], ttl_s: float) -> None:
        """Add outcomes to the run's hash (one round trip); a repeat of an item overwrites it."""
        mapping: dict[Any, str] = {str(o.id): json.dumps(o.to_json()) for o in outcomes}
        if not mapping:
            return
        key = self._keys.phase_outcomes(run_id)
        with redis_errors(), self._client.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=mapping)
            pipe.expire(key, max(int(ttl_s), 1))
            pipe.execute()

    def load(self, run_id: UUID) -> list[Outcome]:
        with redis_errors():
            stored = self._client.hgetall(self._keys.phase_outcomes(run_id))
        outcomes = []
        for item_id, record in stored.items():
            try:
                outcomes.append(Outcome.from_json(json.loads(record)))
            except (ValueError, KeyError, TypeError):
                log.error("run %s: unreadable outcome for item %s: %r", run_id, item_id, record)
        return outcomes

    def expire_soon(self, run_id: UUID) -> None:
        """A closed run's outcomes stay a little while for people to read, then go."""
        with redis_errors():
            self._client.expire(self._keys.phase_outcomes(run_id), OUTCOMES_KEPT_AFTER_CLOSE_S)
