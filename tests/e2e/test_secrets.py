"""The app-proxy token is nowhere it should not be: a grep over every log, table, Redis
key, Celery result and Flower page of a running system finds no piece of it.

The reference world serves its demo with the dev proxy's token; a second group
holds the same token with a trailing newline (stored as an older version could),
so every registration there fails inside requests with the token quoted, and
that failure travels through history rows, error samples, Celery results,
Flower and the worker log.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import redis
import requests
import sqlalchemy as sa

from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.schema import deployment_history, metadata, scaling_groups
from workers.adapters.redis.keys import RedisKeys
from workers.devtools import dev, smoke
from workers.devtools.processes import wait_for
from workers.domain import DeploymentInfo, ModelRevision

TIMEOUT_S = 90
PIECE = 8  # no run of this many characters of the token may appear anywhere


def test_no_piece_of_the_token_is_in_any_log_table_redis_key_result_or_flower_page(
    system: dev.DevSystem, redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    demo = system.demo()
    Catalog(engine=system.engine).create_scaling_group(
        "broken", app_proxy_addr=system.proxy_url, app_proxy_api_token=system.proxy_token + "\n"
    )
    broken = Catalog(engine=system.engine).create_deployment(
        DeploymentInfo(uuid.uuid4(), "broken", "broken", 1, ModelRevision(image="i"))
    )
    wait_for(lambda: smoke.deployment_url(system.engine, demo.id), timeout_s=TIMEOUT_S,
             what="the demo registered with the token")  # fmt: skip
    wait_for(lambda: _failed_registrations(system.engine, broken.id), lambda n: n >= 2,
             timeout_s=TIMEOUT_S, what="registrations with the bad token to fail")  # fmt: skip

    token = system.proxy_token
    places = {
        "logs": _logs(system.folder),
        "tables": _tables(system.engine),
        "redis": _redis(redis_client, redis_keys.prefix),
        "flower": _flower(system.flower_url),
    }
    assert "InvalidHeader" in places["tables"], "the failure being checked did not happen"
    leaks = {where: _pieces_of(token, text) for where, text in places.items()}
    assert leaks == {where: [] for where in places}


def _failed_registrations(engine: sa.Engine, deployment_id: uuid.UUID) -> int:
    with engine.connect() as conn:
        attempts = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(deployment_history.c.attempts), 0)).where(
                deployment_history.c.deployment_id == deployment_id,
                deployment_history.c.result == "error",
            )
        ).scalar_one()
    return int(attempts)


def _logs(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def _tables(engine: sa.Engine) -> str:
    """Every row of every table as JSON, but the one column that holds tokens on purpose."""
    dumped = []
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            columns = [c for c in table.c if c is not scaling_groups.c.app_proxy_api_token]
            for row in conn.execute(sa.select(*columns)).mappings():
                dumped.append(repr(dict(row)))
    return "\n".join(dumped)


def _redis(client: redis.Redis, prefix: str) -> str:
    """Every value under the test's prefix: Celery's queue, results and chords included."""
    return "\n".join(
        f"{key} {_value(client, key)!r}" for key in client.scan_iter(match=f"{prefix}*", count=1000)
    )


def _value(client: redis.Redis, key: str) -> Any:
    kind = str(client.type(key))
    if kind == "string":
        return client.get(key)
    if kind == "hash":
        return client.hgetall(key)
    if kind == "list":
        return client.lrange(key, 0, -1)
    if kind == "set":
        return client.smembers(key)
    return client.zrange(key, 0, -1, withscores=True) if kind == "zset" else ""


def _flower(url: str) -> str:
    auth = ("admin", "admin")
    pages = []
    for path in ("/", "/tasks", "/api/tasks", "/workers", "/broker"):
        try:
            pages.append(requests.get(f"{url}{path}", auth=auth, timeout=10).text)
        except requests.RequestException:
            continue
    tasks = requests.get(f"{url}/api/tasks", auth=auth, timeout=10).json()
    for task_id in list(tasks)[:50]:
        pages.append(requests.get(f"{url}/task/{task_id}", auth=auth, timeout=10).text)
    return "\n".join(pages)


def _pieces_of(secret: str, text: str) -> list[str]:
    pieces = {secret[i : i + PIECE] for i in range(len(secret) - PIECE + 1)}
    return sorted(piece for piece in pieces if piece in text)
