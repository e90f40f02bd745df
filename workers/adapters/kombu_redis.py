"""kombu's Redis transport, with one of its defects worked around.

After the broker connection drops (a Redis restart), Celery can still ack a
late-acked message on the channel of the closed connection. That channel has
no connection info left, and kombu raises `AttributeError` (`'NoneType' object
has no attribute 'hostname'` in `_connparams`; kombu#582). Celery's consumer
treats that as unrecoverable and the worker exits (1 Redis restart in 17).
Counted among the transport's connection errors, it is what it is: an ack that
could not be delivered on a lost connection. Celery logs "Couldn't ack" and
carries on; the message comes back after the visibility timeout, and every
task here is idempotent.
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis


class Transport(kombu_redis.Transport):
    connection_errors = (*kombu_redis.Transport.connection_errors, AttributeError)


TRANSPORT_PATH = f"{__name__}:Transport"
