"""The Redis half of a phase run: its lock, and the outcomes its header tasks store.

The lock is redis-py's: a random token under the phase's key with a TTL, released
only by the holder of that token, so a run that outlives its deadline can never
release the lock of the run after it. A follow-up that finds the phase busy
leaves a rerun request, so the run that holds the lock starts another when it
closes: work that a follow-up announces is never lost to a busy lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterable
from uuid import UUID

import redis
from redis.exceptions import LockNotOwnedError
from redis.lock import Lock

from workers.adapters.redis.client import redis_errors, server_time_s
from workers.adapters.redis.keys import (
    OUTCOMES_KEPT_AFTER_CLOSE_S,
    WORKER_ALIVE_EVERY_S,
    WORKER_ALIVE_TTL_S,
    RedisKeys,
)
from workers.domain import OutcomeBucket
from workers.phase_runs import Outcome, RunProgress

log = logging.getLogger(__name__)


class RedisPhaseLock:
    def __init__(self, *, client: redis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys

    def acquire(
        self, phase: str, ttl_s: float, owner: str = "", run_id: UUID | None = None
    ) -> str | None:
        """A new token when the phase was free, None when a run holds it. The token names
        its `owner` (a worker process) and the run it will open, so a lock left by a
        dead process, or one whose release failed after its run closed, can be told."""
        token = "/".join((owner, str(run_id or ""), secrets.token_hex(16)))
        with redis_errors():
            taken = self._lock(phase, ttl_s).acquire(blocking=False, token=token)
        return token if taken else None

    @staticmethod
    def owner_of(token: str) -> str:
        """The worker process a token names ("" when it names none)."""
        return token.split("/", maxsplit=1)[0] if token.count("/") == _TOKEN_SEPARATORS else ""

    @staticmethod
    def run_of(token: str) -> UUID | None:
        """The run a token was taken for (None when it names none)."""
        if token.count("/") != _TOKEN_SEPARATORS:
            return None
        try:
            return UUID(token.split("/")[1])
        except ValueError:
            return None

    def held_for_s(self, phase: str, ttl_s: float) -> float:
        """How long the phase's lock, taken with `ttl_s`, has been held (0: not held)."""
        with redis_errors():
            left_ms = int(self._client.pttl(self._keys.phase_lock(phase)))
        return 0.0 if left_ms < 0 else max(ttl_s - left_ms / 1000, 0.0)

    def take_tick(self, phase: str, hold_s: float) -> bool:
        """Whether this tick of `phase` may start a run: no other tick took it within the
        last `hold_s` (by Redis' clock, which every process shares). A backlog of ticks
        runs once, whatever the clocks of beat and the workers say."""
        with redis_errors():
            taken = self._client.set(
                self._keys.phase_tick(phase), "1", px=max(1, int(hold_s * 1000)), nx=True
            )
        return bool(taken)

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

    def save(self, run_id: UUID, outcomes: Iterable[Outcome], ttl_s: float, *, part: str) -> None:
        """Store one header task's outcomes as one field of the run's hash (one round
        trip); a redelivered task (same `part`) replaces what it stored before.

        A field holds a line per outcome: the item's id in hex (a quarter of the cost
        of the dashed form), then the bucket's name for one that says nothing more
        (most of them: 10,000 JSON documents took 0.4 s to parse back), else its JSON
        record. A field per task, not per item: 20,000 outcomes took 95 ms to store and
        27 ms to read back as 20,000 fields, 3 ms and 10 ms as one.
        """
        blob = "\n".join(f"{o.id.hex} {_encoded(o)}" for o in outcomes)
        if not blob:
            return
        key = self._keys.phase_outcomes(run_id)
        with redis_errors(), self._client.pipeline(transaction=True) as pipe:
            pipe.hset(key, part, blob)
            pipe.expire(key, max(int(ttl_s), 1))
            pipe.execute()

    def load(self, run_id: UUID) -> list[Outcome]:
        """Every outcome stored for the run (an item twice: the first one read)."""
        with redis_errors():
            stored: dict[str, str] = self._client.hgetall(self._keys.phase_outcomes(run_id))  # type: ignore[assignment]
        outcomes: dict[UUID, Outcome] = {}
        for part, blob in stored.items():
            for line in blob.split("\n"):
                try:
                    outcome = _decoded(*line.split(" ", 1))
                except (ValueError, KeyError, TypeError):
                    log.error("run %s: unreadable outcome in %s: %r", run_id, part, line)
                    continue
                outcomes.setdefault(outcome.id, outcome)
        return list(outcomes.values())

    def expire_soon(self, run_id: UUID) -> None:
        """A closed run's outcomes stay a little while for people to read, then go."""
        with redis_errors():
            self._client.expire(self._keys.phase_outcomes(run_id), OUTCOMES_KEPT_AFTER_CLOSE_S)


class RedisRunProgress:
    """Which worker process runs each header task of a run, and whether it still lives.

    A header task claims its run on start and lets go when it ends; every worker
    process keeps a short-lived key alive from a background thread. A run whose
    unfinished tasks all sat on processes that are gone, and that has made no
    progress for a while, cannot get more outcomes by waiting (their messages come
    back only after the broker's visibility timeout, long after).
    """

    def __init__(self, *, client: redis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys
        self._heartbeat_pid: int | None = None
        self._stopped = threading.Event()

    @property
    def worker_id(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}"

    @property
    def worker_alive_key(self) -> str:
        return self._keys.worker_alive(self.worker_id)

    def claim(self, run_id: UUID, task_id: str, ttl_s: float) -> None:
        """This process runs `task_id` of the run (and says so until it exits)."""
        self.keep_alive()
        with redis_errors(), self._client.pipeline(transaction=True) as pipe:
            pipe.hset(self._keys.phase_claims(run_id), task_id, self.worker_id)
            pipe.expire(self._keys.phase_claims(run_id), max(int(ttl_s), 1))
            self._stamp(pipe, run_id, ttl_s)
            pipe.execute()

    def release(self, run_id: UUID, task_id: str, ttl_s: float) -> None:
        with redis_errors(), self._client.pipeline(transaction=True) as pipe:
            pipe.hdel(self._keys.phase_claims(run_id), task_id)
            self._stamp(pipe, run_id, ttl_s)
            pipe.execute()

    def snapshot(self, run_id: UUID) -> RunProgress:
        """When the run last moved, and which of its tasks sit on live processes."""
        with redis_errors():
            pipe = self._client.pipeline(transaction=False)
            pipe.time()
            pipe.info("server")
            pipe.get(self._keys.phase_progress(run_id))
            pipe.hgetall(self._keys.phase_claims(run_id))
            time_reply, server, progress, claims = pipe.execute()
            workers = sorted(set(claims.values()))
            pipe = self._client.pipeline(transaction=False)
            for worker in workers:
                pipe.exists(self._keys.worker_alive(worker))
            live = {worker for worker, found in zip(workers, pipe.execute(), strict=True) if found}
        now_s = server_time_s(time_reply)
        return RunProgress(
            now_s=now_s,
            store_started_s=now_s - float(server.get("uptime_in_seconds", now_s)),
            last_progress_s=float(progress) if progress is not None else None,
            claims=dict(claims),
            live_workers=frozenset(live),
        )

    def alive(self, worker_id: str) -> bool:
        """Whether that worker process still says it is alive."""
        with redis_errors():
            return bool(self._client.exists(self._keys.worker_alive(worker_id)))

    def _stamp(self, pipe: redis.client.Pipeline, run_id: UUID, ttl_s: float) -> None:
        pipe.eval(_STAMP_WITH_SERVER_TIME, 1, self._keys.phase_progress(run_id), max(int(ttl_s), 1))

    def keep_alive(self) -> None:
        """Start this process's heartbeat thread once (again in a forked child)."""
        if self._heartbeat_pid == os.getpid():
            return
        self._heartbeat_pid = os.getpid()
        with redis_errors():  # alive from the first claim on, not from the first beat
            self._client.set(self.worker_alive_key, "1", ex=WORKER_ALIVE_TTL_S)
        beat = threading.Thread(
            target=self._beat, args=(self.worker_alive_key,), name="modelfleet-alive", daemon=True
        )
        beat.start()

    def close(self) -> None:
        """Stop this process's heartbeat and say it is gone."""
        self._stopped.set()
        if self._heartbeat_pid == os.getpid():
            with contextlib.suppress(redis.RedisError):
                self._client.delete(self.worker_alive_key)

    def _beat(self, key: str) -> None:
        while not self._stopped.wait(WORKER_ALIVE_EVERY_S):
            try:
                self._client.set(key, "1", ex=WORKER_ALIVE_TTL_S)
            except redis.RedisError as error:  # a Redis outage: the next beat tries again
                log.debug("worker heartbeat failed: %s", error)


_BUCKETS = {bucket.value: bucket for bucket in OutcomeBucket}
_TOKEN_SEPARATORS = 2  # owner/run/random


def _encoded(outcome: Outcome) -> str:
    return outcome.bucket.value if outcome.bare else json.dumps(outcome.to_json())


def _decoded(item_id: str, record: str) -> Outcome:
    bucket = _BUCKETS.get(record)
    if bucket is not None:
        return Outcome(UUID(item_id), bucket)
    return Outcome.from_json(json.loads(record))


# SET key to the server's clock: one clock for every worker.
_STAMP_WITH_SERVER_TIME = """
local t = redis.call('TIME')
redis.call('SET', KEYS[1], t[1] .. '.' .. string.format('%06d', t[2]), 'EX', ARGV[1])
"""
