"""The host agent's heartbeat: it outlives any store's failure, writes each store on its own,
and the agent starts it again should it ever stop."""

from __future__ import annotations

import time
from uuid import uuid4

import redis
import sqlalchemy as sa

from workers.adapters.postgres.engine import create_agent_engine
from workers.adapters.postgres.schema import hosts
from workers.adapters.redis.keys import RedisKeys
from workers.standalone.heartbeat import Heartbeat

DEAD_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"


def _redis_beat(client: redis.Redis, keys: RedisKeys, name: str) -> float | None:
    found = client.hget(keys.host_heartbeats, name)
    return None if found is None else float(str(found))


def test_a_dead_database_stops_neither_the_thread_nor_the_redis_heartbeat(
    redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    dead = create_agent_engine(DEAD_DATABASE)
    heartbeat = Heartbeat(engine=dead, name="h1", every_s=0.1, redis_client=redis_client,
                          keys=redis_keys)  # fmt: skip
    heartbeat.start()
    try:
        time.sleep(0.3)
        first = _redis_beat(redis_client, redis_keys, "h1")
        time.sleep(0.5)
        assert all(thread.is_alive() for thread in heartbeat.threads)
        later = _redis_beat(redis_client, redis_keys, "h1")
        assert first is not None
        assert later is not None
        assert later > first
    finally:
        heartbeat.stop()
        dead.dispose()


def test_the_database_heartbeat_comes_back_with_the_database(
    engine: sa.Engine, unreachable_redis: redis.Redis
) -> None:
    a_minute_ago = sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, 60)
    with engine.begin() as conn:
        conn.execute(hosts.insert().values(id=uuid4(), name="h1", address="10.0.0.1",
                                           last_heartbeat_at=a_minute_ago))  # fmt: skip
    heartbeat = Heartbeat(engine=engine, name="h1", every_s=0.1, redis_client=unreachable_redis)
    assert heartbeat.beat_once() is False  # Redis refused: PostgreSQL heard it all the same
    with engine.connect() as conn:
        age = conn.execute(
            sa.select(sa.func.extract("epoch", sa.func.now() - hosts.c.last_heartbeat_at))
        ).scalar_one()
    assert float(age) < 5


def test_a_stopped_thread_is_started_again() -> None:
    dead = create_agent_engine(DEAD_DATABASE)
    heartbeat = Heartbeat(engine=dead, name="h1", every_s=0.05)
    try:
        assert heartbeat.ensure_running() is True  # never started: started
        assert heartbeat.ensure_running() is False  # running: left alone
        heartbeat._stop.set()
        [thread] = heartbeat.threads
        thread.join(timeout=5)
        heartbeat._stop.clear()  # it died without being asked to stop
        assert heartbeat.ensure_running() is True
        assert all(thread.is_alive() for thread in heartbeat.threads)
    finally:
        heartbeat.stop()
        dead.dispose()
