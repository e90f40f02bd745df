"""The Redis client the adapters share, and the translation of its failures."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from workers.errors import InfrastructureUnavailable


def create_redis_client(url: str) -> redis.Redis:
    """One pooled client per process (after fork); replies decoded to str."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=3,
        socket_timeout=5,
        health_check_interval=30,
    )


@contextmanager
def redis_errors() -> Iterator[None]:
    """Lost or refused Redis connections become `InfrastructureUnavailable`."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as error:
        raise InfrastructureUnavailable(f"redis unavailable: {error}") from error


def server_time_s(reply: tuple[int, int]) -> float:
    """A `TIME` reply as unix seconds: the one clock all writers and readers share."""
    seconds, microseconds = reply
    return int(seconds) + int(microseconds) / 1_000_000
