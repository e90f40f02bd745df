"""Serving the proxy: one process, or `--workers N` processes on one port.

Each worker process binds the port with SO_REUSEPORT, so the kernel spreads
connections over them, and runs its own event loop (uvloop when installed) with its
own routing table and keep-alive pools; their `/metrics` are summed through
prometheus_client's multiprocess directory, and their request counts add up in Redis.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

import redis.asyncio as aioredis
from aiohttp import web

from workers.adapters.redis.keys import RedisKeys
from workers.config import ProxySettings, Settings
from workers.standalone.proxy.counting import MULTIPROCESS_DIR_VARIABLE
from workers.standalone.proxy.forwarding import Proxy

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def serve(make_proxy: ProxyFactory, *, host: str, port: int, workers: int = 1) -> None:
    """Serve until interrupted; the port is bound (or refused) before anything is said."""
    listening = socket.create_server((host, port), reuse_port=True)
    if workers <= 1:
        _serve_one(make_proxy, listening, host, port)
        return
    _serve_many(make_proxy, listening, host, port, workers)


def _serve_one(make_proxy: Callable[[], Proxy], listening: socket.socket, host: str,
               port: int) -> None:  # fmt: skip
    _use_uvloop()
    log.info("proxy: listening on http://%s:%d (pid %d)", host, port, os.getpid())
    # No access log: a line per request costs more than forwarding it (logging is per event).
    web.run_app(
        make_proxy().app(), sock=listening, print=None, handle_signals=True, access_log=None
    )


def _serve_many(make_proxy: ProxyFactory, listening: socket.socket, host: str, port: int,
                workers: int) -> None:  # fmt: skip
    listening.close()  # each worker binds its own socket on the port (SO_REUSEPORT)
    folder = tempfile.mkdtemp(prefix="modelfleet-proxy-metrics-")
    os.environ[MULTIPROCESS_DIR_VARIABLE] = folder  # before the workers import the metrics
    spawn = multiprocessing.get_context("spawn")
    children = [spawn.Process(target=_worker, args=(make_proxy, host, port), daemon=False)
                for _ in range(workers)]  # fmt: skip
    for child in children:
        child.start()
    log.info("proxy: %d workers on http://%s:%d", workers, host, port)

    def stop(_signum: int, _: FrameType | None) -> None:
        for child in children:
            if child.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for child in children:
            child.join()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _worker(make_proxy: ProxyFactory, host: str, port: int) -> None:
    logging.basicConfig(level=make_proxy.log_level, format=LOG_FORMAT)
    _serve_one(make_proxy, socket.create_server((host, port), reuse_port=True), host, port)


def _use_uvloop() -> None:
    try:
        import uvloop  # noqa: PLC0415  # optional: the standard loop when it is not installed
    except ImportError:
        return
    uvloop.install()


@dataclass(frozen=True)
class ProxyFactory:
    """What each worker process builds its proxy from (picklable: workers are spawned)."""

    redis_url: str = field(repr=False)  # may hold a password
    redis_key_prefix: str
    settings: ProxySettings
    token: str = field(repr=False)
    public_url: str
    log_level: int = logging.INFO

    @classmethod
    def of(cls, settings: Settings, token: str, public_url: str) -> ProxyFactory:
        return cls(settings.redis_url, settings.redis_key_prefix, settings.proxy, token,
                   public_url, logging.getLogger().getEffectiveLevel())  # fmt: skip

    def __call__(self) -> Proxy:
        return Proxy(
            redis_client=aioredis.Redis.from_url(
                self.redis_url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5
            ),
            keys=RedisKeys(self.redis_key_prefix),
            token=self.token,
            public_url=self.public_url,
            settings=self.settings,
        )
