"""The broker the e2e tests run Celery on: Redis (default) or RabbitMQ.

`MODELFLEET_TEST_BROKER=amqp` runs them on RabbitMQ (`MODELFLEET_TEST_AMQP_URL`,
default amqp://guest:guest@127.0.0.1:5672), each test in a vhost of its own,
made and deleted with `rabbitmqctl` (on amqp, `global_keyprefix` isolates
nothing). Results stay on Redis either way.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

BROKER_VARIABLE = "MODELFLEET_TEST_BROKER"
AMQP_URL_VARIABLE = "MODELFLEET_TEST_AMQP_URL"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672"
KINDS = ("redis", "amqp")


def broker_kind() -> str:
    kind = os.environ.get(BROKER_VARIABLE, "redis")
    if kind not in KINDS:
        raise ValueError(f"{BROKER_VARIABLE}: {kind!r}; allowed: {', '.join(KINDS)}")
    return kind


@contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """The URL of a new, empty vhost on the test RabbitMQ; deleted afterwards."""
    base = os.environ.get(AMQP_URL_VARIABLE, DEFAULT_AMQP_URL).rstrip("/")
    user = urlsplit(base).username or "guest"
    vhost = f"modelfleet-test-{uuid.uuid4().hex[:12]}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        yield f"{base}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)
