"""The Redis transport's workaround: an ack on the channel of a lost connection is a
connection error (Celery logs it and carries on), not an AttributeError that kills the worker."""

from __future__ import annotations

import logging

import pytest
from kombu.connection import Connection
from kombu.entity import Queue
from kombu.messaging import Producer

from workers.adapters.kombu_redis import TRANSPORT_PATH
from workers.adapters.redis.keys import RedisKeys
from workers.celery import celery_config
from workers.config import Settings


@pytest.mark.parametrize(("transport", "survives"), [(None, False), (TRANSPORT_PATH, True)])
def test_an_ack_after_the_connection_was_lost_is_a_connection_error(
    redis_url: str, redis_keys: RedisKeys, transport: str | None, survives: bool
) -> None:
    conn = Connection(
        redis_url, transport=transport, transport_options={"global_keyprefix": redis_keys.prefix}
    )
    queue = Queue("late-acks", routing_key="late-acks")
    channel = conn.channel()
    Producer(channel).publish({"task": 1}, routing_key="late-acks", declare=[queue])
    message = queue(channel).get(no_ack=False)
    assert message is not None
    errors = conn.connection_errors  # what Celery's consumer catches around an ack
    conn.close()  # the broker went away (a Redis restart)
    # A channel that had not used its own pool yet when the connection was lost: kombu
    # builds one on the ack, from connection details that are gone (kombu#582).
    channel._pool = None
    if survives:
        message.ack_log_error(logging.getLogger(__name__), errors)
    else:
        with pytest.raises(AttributeError):
            message.ack_log_error(logging.getLogger(__name__), errors)


def test_the_workaround_is_used_on_a_redis_broker_only() -> None:
    on_redis = celery_config(Settings(broker_url="redis://127.0.0.1:6379/0"))
    on_amqp = celery_config(Settings(broker_url="amqp://guest:guest@127.0.0.1:5672/x"))
    assert on_redis["broker_transport"] == TRANSPORT_PATH
    assert "broker_transport" not in on_amqp
    assert on_redis["worker_cancel_long_running_tasks_on_connection_loss"] is True
