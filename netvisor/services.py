"""Small TCP services on a :class:`~netvisor.netstack.NetStack`'s sockets.

They give a peer (the Linux kernel in a test or benchmark) something to
measure against, each way, with an end-to-end SHA-256 check:

``echo``
    every byte read is written back; EOF from the peer -> our FIN.
``discard`` (sink)
    reads and counts everything; when the peer shuts its sending side down
    (our EOF), answers one 40-byte report -- the byte count as a big-endian
    ``u64`` followed by the SHA-256 of every byte received -- then closes.
    A peer that only wants the bytes gone may close without reading it.
``source``
    the peer sends a 16-byte request: length (big-endian ``u64``) and seed
    (``u64``); we write exactly ``length`` bytes of :func:`stream_block`
    (``seed``) repeated, then shut our side down, wait for the peer's FIN and
    close. The peer computes the expected SHA-256 itself
    (:func:`expected_sha256`), so a corrupted, lost or duplicated byte shows.

Every connection is served by its own task; reads and writes move up to
``CHUNK`` bytes per call so the per-call cost of the Python socket layer is
paid per 256 KiB, not per segment.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import random
import select
import socket
import struct
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any, Final

import trio

from netvisor.netstack import NetStack
from netvisor.tcpip.api import Socket
from netvisor.tcpip.errors import NetError

log = logging.getLogger(__name__)

CHUNK: Final = 256 * 1024
"""Bytes moved per recv/send call (a quarter of Linux's default autotuned window)."""
BLOCK_SIZE: Final = 1 << 20
"""Length of the repeated pseudo-random block of the source stream."""
REQUEST: Final = struct.Struct("!QQ")
"""source request: length, seed."""
REPORT: Final = struct.Struct("!Q32s")
"""discard report: byte count, SHA-256."""
LISTEN_BACKLOG: Final = 4096
"""Accept queue of every service (net.core.somaxconn); 1,000 concurrent clients fit."""


@lru_cache(maxsize=4)
def stream_block(seed: int) -> bytes:
    """The 1 MiB block that the source stream for ``seed`` repeats."""
    return random.Random(seed).randbytes(BLOCK_SIZE)


def stream_bytes(seed: int, offset: int, length: int) -> bytes:
    """``length`` bytes of the source stream for ``seed`` starting at ``offset``."""
    block = stream_block(seed)
    out = bytearray()
    while length > 0:
        start = offset % BLOCK_SIZE
        piece = block[start:start + length]
        out += piece
        offset += len(piece)
        length -= len(piece)
    return bytes(out)


def expected_sha256(seed: int, length: int) -> str:
    """Hex SHA-256 of the first ``length`` bytes of the source stream for ``seed``."""
    h = hashlib.sha256()
    block = stream_block(seed)
    full, rest = divmod(length, BLOCK_SIZE)
    for _ in range(full):
        h.update(block)
    h.update(block[:rest])
    return h.hexdigest()


# ---------------------------------------------------------------- helpers

async def _recv(ns: NetStack, conn: Socket, size: int) -> bytes:
    """Blocking-style recv over the non-blocking socket; b"" at EOF.

    Raises NetError for a connection error (ECONNRESET, ETIMEDOUT, ...).
    """
    while True:
        try:
            data = conn.recv(size)
        except NetError as exc:
            if exc.errno != errno.EAGAIN:
                raise
        else:
            ns.kick()  # the window update goes out this turn
            return data
        await ns.wait(conn, select.POLLIN)


async def _send_all(ns: NetStack, conn: Socket, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        try:
            n = conn.send(view)
        except NetError as exc:
            if exc.errno != errno.EAGAIN:
                raise
            n = 0
        if n:
            view = view[n:]
            ns.kick()
        if view:
            await ns.wait(conn, select.POLLOUT)


async def _finish(ns: NetStack, conn: Socket) -> None:
    """Our FIN, then wait (bounded) for the peer's, then close: no RST for unread data."""
    try:
        conn.shutdown(socket.SHUT_WR)
        ns.kick()
        with trio.move_on_after(30):
            while await _recv(ns, conn, CHUNK):
                pass
    except NetError:
        pass


def _close(ns: NetStack, conn: Socket) -> None:
    try:
        conn.close()
    except NetError:
        pass
    ns.kick()


# ---------------------------------------------------------------- services

Handler = Callable[[NetStack, Socket], Awaitable[None]]


class ServiceStats:
    """What a service did (tests read these in-process)."""

    def __init__(self) -> None:
        self.accepted = 0
        self.completed = 0
        self.failed = 0
        self.bytes_in = 0
        self.bytes_out = 0


async def serve(ns: NetStack, port: int, handler: Handler, *, family: int = socket.AF_INET6,
                backlog: int = LISTEN_BACKLOG, stats: ServiceStats | None = None,
                task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on ``port`` (dual-stack by default) and run ``handler`` per connection."""
    stats = stats if stats is not None else ServiceStats()
    lst = ns.socket(family, socket.SOCK_STREAM)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, struct.pack("i", 1))
    lst.bind(("::", port, 0, 0) if family == socket.AF_INET6 else ("0.0.0.0", port))
    lst.listen(backlog)
    ns.kick()
    task_status.started()
    async with trio.open_nursery() as nursery:
        try:
            while True:
                await ns.wait(lst, select.POLLIN)
                while True:
                    try:
                        conn, _addr = lst.accept()
                    except NetError:
                        break
                    stats.accepted += 1
                    nursery.start_soon(_run_one, ns, conn, handler, stats)
        finally:
            _close(ns, lst)


async def _run_one(ns: NetStack, conn: Socket, handler: Handler, stats: ServiceStats) -> None:
    try:
        await handler(ns, conn)
        stats.completed += 1
    except NetError as exc:
        stats.failed += 1
        log.debug("connection ended with %s", exc)
    finally:
        _close(ns, conn)


async def echo(ns: NetStack, conn: Socket) -> None:
    """Write back everything; EOF -> our FIN."""
    while True:
        data = await _recv(ns, conn, CHUNK)
        if not data:
            break
        await _send_all(ns, conn, data)
    await _finish(ns, conn)


async def discard(ns: NetStack, conn: Socket) -> None:
    """Read to EOF, then answer the 40-byte count + SHA-256 report (see module doc)."""
    h = hashlib.sha256()
    total = 0
    while True:
        data = await _recv(ns, conn, CHUNK)
        if not data:
            break
        total += len(data)
        h.update(data)
    try:
        await _send_all(ns, conn, REPORT.pack(total, h.digest()))
    except NetError:
        return  # the peer closed without reading the report: allowed
    await _finish(ns, conn)


async def source(ns: NetStack, conn: Socket) -> None:
    """Read a 16-byte request, write that many stream bytes, then FIN (see module doc)."""
    req = b""
    while len(req) < REQUEST.size:
        data = await _recv(ns, conn, REQUEST.size - len(req))
        if not data:
            return
        req += data
    length, seed = REQUEST.unpack(req)
    block = memoryview(stream_block(seed))
    offset = 0
    while offset < length:
        start = offset % BLOCK_SIZE
        piece = block[start:start + min(CHUNK, length - offset, BLOCK_SIZE - start)]
        await _send_all(ns, conn, piece)
        offset += len(piece)
    await _finish(ns, conn)


SERVICES: Final[dict[str, Handler]] = {"echo": echo, "discard": discard, "source": source}
