"""Whether a replica's connection still moves: the data-path evidence a retry rests on.

A request written to a replica goes again to another only when the replica's answer
cannot come: the connection was refused or reset (`forwarding`), or the replica's
machine stopped speaking TCP for `dead_s`: it acknowledged none of the request, or it
acknowledged the request and then answered none of the kernel's keep-alive probes (a
cut link: the request was being computed there, and its answer can never arrive). A
frozen process on a live machine still has its kernel acknowledge the bytes and the
probes; that request waits (it may yet be answered, and a copy sent elsewhere would run
twice). Whether the machine's agent heartbeats says nothing either way: a host cut off
from the control plane may serve perfectly well.

One loop per proxy process looks at every request waiting for its answer's first byte,
a few times per `dead_s`, with the kernel's own account of the connection (`TCP_INFO`):
nothing is added to a request that is answered promptly, and a connection's probes
are a few bytes a second while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from aiohttp import TCPConnector
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection

log = logging.getLogger(__name__)

LOOKS_PER_DEAD_S = 4
# struct tcp_info (linux/tcp.h): eight u8 fields (the 4th, tcpi_probes: keep-alive probes
# sent and not answered), then u32s; tcpi_unacked is the 5th u32 and tcpi_last_ack_recv
# (ms since the peer last acknowledged anything) the 13th.
_TCP_INFO = struct.Struct("8B13I")
_TCP_INFO_BYTES = 104
_PROBES, _UNACKED, _LAST_ACK_RECV_MS = 3, 8 + 4, 8 + 12
# Two probes unanswered in a row: a live machine's kernel answers within a round trip.
_UNANSWERED_PROBES = 2

# The connections a request got from the pool, for the watch to look at.
_CONNECTIONS: ContextVar[list[Connection] | None] = ContextVar("connections", default=None)


class WatchedConnector(TCPConnector):
    """aiohttp's pooled connector; each connection handed to a watched request is noted,
    and probes its peer when silent (TCP keep-alive, every `probe_every_s`)."""

    def __init__(self, *, probe_every_s: int = 1, **options: Any) -> None:
        super().__init__(**options)
        self._probe_every_s = probe_every_s

    async def connect(self, req: ClientRequest, traces: Any, timeout: Any) -> Connection:
        connection = await super().connect(req, traces, timeout)
        held = _CONNECTIONS.get()
        if held is not None:
            held.append(connection)
            _probe_when_silent(connection, self._probe_every_s)
        return connection


def probe_every_s(dead_s: float) -> int:
    """Keep-alive probes often enough that two go unanswered within `dead_s` (the kernel
    counts whole seconds, 1 at least)."""
    return max(1, int(dead_s // (_UNANSWERED_PROBES + 1)))


def _probe_when_silent(connection: Connection, every_s: int) -> None:
    sock = _socket(connection)
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, every_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, every_s)
        # Past the watch's verdict, the kernel closes a connection nobody answers (an
        # idle one in the pool, to a machine gone).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3 * _UNANSWERED_PROBES)


def silent_for_s(connection: Connection) -> float | None:
    """Seconds since the peer last acknowledged anything, while it owes an
    acknowledgement: of bytes sent, or of keep-alive probes (two in a row unanswered);
    None while nothing is owed (or it cannot be told)."""
    sock = _socket(connection)
    if sock is None:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
    except (OSError, AttributeError):
        return None
    info = _TCP_INFO.unpack_from(raw)
    if info[_UNACKED] == 0 and info[_PROBES] < _UNANSWERED_PROBES:
        return None
    return float(info[_LAST_ACK_RECV_MS]) / 1000


def _socket(connection: Connection) -> socket.socket | None:
    transport = connection.transport
    return None if transport is None else transport.get_extra_info("socket")


@dataclass
class PathWatch:
    dead_s: float = 3.0
    _watched: dict[int, tuple[list[Connection], asyncio.Timeout]] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._look_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def watching(self) -> AsyncIterator[asyncio.Timeout]:
        """While inside, a dead path to the replica ends the wait with TimeoutError (the
        yielded timeout then says `expired()`)."""
        held: list[Connection] = []
        token = _CONNECTIONS.set(held)
        try:
            async with asyncio.timeout(None) as dead:
                self._watched[id(dead)] = (held, dead)
                try:
                    yield dead
                finally:
                    self._watched.pop(id(dead), None)
        finally:
            _CONNECTIONS.reset(token)

    async def _look_forever(self) -> None:
        while True:
            await asyncio.sleep(self.dead_s / LOOKS_PER_DEAD_S)
            self.look()

    def look(self) -> int:
        """End the wait of every request whose path is dead; how many."""
        ended = 0
        for key, (held, dead) in list(self._watched.items()):
            silent_s = silent_for_s(held[-1]) if held else None
            if silent_s is not None and silent_s >= self.dead_s:
                dead.reschedule(asyncio.get_running_loop().time())
                self._watched.pop(key, None)
                ended += 1
        return ended
