"""Autoscaling metrics in Redis, written by a collector and read by the autoscaler.

Two hash families (see `redis_keys`), each field a metric name and its value:
`autoscaling:metrics:deployment:{deployment_id}` for what a deployment's model
servers export (inference-framework metrics, already aggregated), and
`autoscaling:metrics:session:{session_id}` for one session's resource usage.
Keys expire after `METRICS_TTL_S`, so a stopped collector leaves no stale value.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping
from typing import TypeVar
from uuid import UUID

import redis

from workers.adapters.redis.client import redis_errors
from workers.adapters.redis.keys import METRICS_TTL_S, RedisKeys
from workers.domain import SessionId

log = logging.getLogger(__name__)

MetricValues = dict[str, float]
Owner = TypeVar("Owner", UUID, SessionId)


class RedisMetricsStore:
    def __init__(self, *, client: redis.Redis, keys: RedisKeys) -> None:
        self._client = client
        self._keys = keys

    def read(
        self, deployment_ids: Collection[UUID], session_ids: Collection[SessionId]
    ) -> tuple[dict[UUID, MetricValues], dict[SessionId, MetricValues]]:
        """Metrics per deployment and per session, in one round trip; absent keys are left out."""
        deployments, sessions = list(deployment_ids), list(session_ids)
        if not deployments and not sessions:
            return {}, {}
        with redis_errors():
            pipe = self._client.pipeline(transaction=False)
            for deployment_id in deployments:
                pipe.hgetall(self._keys.deployment_metrics(deployment_id))
            for session_id in sessions:
                pipe.hgetall(self._keys.session_metrics(session_id))
            replies = pipe.execute()
        by_deployment = _parsed(deployments, replies[: len(deployments)])
        by_session = _parsed(sessions, replies[len(deployments) :])
        return by_deployment, by_session

    def write_deployment_metrics(self, deployment_id: UUID, values: Mapping[str, float]) -> None:
        self._write(self._keys.deployment_metrics(deployment_id), values)

    def write_session_metrics(self, session_id: SessionId, values: Mapping[str, float]) -> None:
        self._write(self._keys.session_metrics(session_id), values)

    def _write(self, key: str, values: Mapping[str, float]) -> None:
        if not values:
            return
        with redis_errors():
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(key, mapping={name: repr(float(value)) for name, value in values.items()})
            pipe.expire(key, METRICS_TTL_S)
            pipe.execute()


def _parsed(owners: list[Owner], replies: list[dict[str, str]]) -> dict[Owner, MetricValues]:
    parsed: dict[Owner, MetricValues] = {}
    for owner, fields in zip(owners, replies, strict=True):
        values = {}
        for name, raw in fields.items():
            try:
                value = float(raw)
            except ValueError:
                value = math.nan
            if math.isfinite(value):
                values[name] = value
            else:
                log.warning("metrics of %s: %s=%r is not a number; ignored", owner, name, raw)
        if values:
            parsed[owner] = values
    return parsed
