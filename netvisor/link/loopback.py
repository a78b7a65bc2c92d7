"""In-memory endpoints: the stack's loopback, and a cross-connected pair.

Readiness: every in-memory endpoint owns an ``eventfd`` that is non-zero
exactly while its receive queue holds frames, so ``fileno()`` is a real fd
that ``select.poll``/``trio.lowlevel.wait_readable`` can watch beside TAP and
AF_PACKET fds; ``await wait_readable()`` waits on it. We picked an fd over a
``trio.Event`` so that a driver can poll every endpoint the same way.
``wait_writable`` has no fd (the queue frees up when the reader reads), so it
waits on a ``trio.Event`` that ``read_batch`` sets.

Queues are bounded (``queue_limit`` frames, default 1000 like Linux's
``txqueuelen``): ``write_batch`` takes only what fits and returns the count.

:class:`LoopbackEndpoint` is Linux ``lo``: MTU 65536, all-zero MAC, frames
written come back on read, checksums never needed (Linux marks loopback
skbs CHECKSUM_UNNECESSARY), never shaped. :func:`memory_pair` gives two
endpoints joined like a cable, for tests of two stacks talking (optionally
through a :class:`~netvisor.link.faults.FaultInjector`).
"""

from __future__ import annotations

import errno
import os
from collections import deque
from collections.abc import Sequence
from typing import Final

import trio

from netvisor.frame import GSO_NONE, Frame
from netvisor.link._kernel import close_notifying
from netvisor.link.endpoint import (
    GSO_MAX_SIZE,
    FixedLinkInfo,
    LinkCapabilities,
    LinkStats,
    complete_checksum,
)

DEFAULT_QUEUE_LIMIT: Final = 1000
"""Frames; Linux's default ``txqueuelen`` for Ethernet devices."""
LOOPBACK_MTU: Final = 65536
"""Linux ``lo`` MTU since 3.x (drivers/net/loopback.c)."""


class MemoryEndpoint(FixedLinkInfo):
    """An endpoint whose frames go into the receive queue of ``peer``.

    Frames are copied to ``bytes`` on write (the writer may reuse its buffer).
    With ``capabilities.checksum_offload_tx`` partial checksums and GSO frames
    are delivered as they are and marked ``csum_valid`` (like a veth pair,
    where the kernel never computes a checksum that no wire will see);
    without it partial checksums are completed and GSO frames dropped.
    """

    def __init__(self, mac: bytes, mtu: int, capabilities: LinkCapabilities,
                 *, queue_limit: int = DEFAULT_QUEUE_LIMIT) -> None:
        if len(mac) != 6:
            raise ValueError(f"mac must be 6 bytes, got {len(mac)}")
        if queue_limit < 1:
            raise ValueError(f"queue_limit must be >= 1, got {queue_limit}")
        self._mac = bytes(mac)
        self._mtu = mtu
        self._caps = capabilities
        self._limit = queue_limit
        self._rxq: deque[Frame] = deque()
        self._efd: int | None = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._signalled = False
        self._room = trio.Event()
        self.peer: MemoryEndpoint = self
        self.stats = LinkStats()

    # -- LinkEndpoint (mac, mtu, capabilities: FixedLinkInfo) ---------------
    def read_batch(self, max_frames: int) -> list[Frame]:
        q = self._rxq
        if not q or self._efd is None:
            return []
        n = min(max_frames, len(q))
        out = [q.popleft() for _ in range(n)]
        self.stats.rx_frames += n
        self.stats.rx_bytes += sum(len(f.data) for f in out)
        if not q:
            self._clear_signal()
        if n:
            # A writer waiting in wait_writable may now go on.
            self._room.set()
        return out

    def write_batch(self, frames: Sequence[Frame]) -> int:
        if self._efd is None:
            raise OSError(errno.EBADF, "endpoint closed")
        peer = self.peer
        room = peer._limit - len(peer._rxq)
        if peer._efd is None:
            room = len(frames)  # peer gone: the cable leads nowhere, frames vanish
        taken = 0
        offload = self._caps.checksum_offload_tx
        for frame in frames:
            if taken >= room:
                break
            taken += 1
            if frame.gso_type != GSO_NONE and not offload:
                self.stats.tx_dropped += 1
                continue
            if offload:
                data = bytes(frame.data)
                valid = frame.csum_start >= 0 or frame.csum_valid
                out = Frame(data, frame.csum_start, frame.csum_offset, valid,
                            frame.gso_type, frame.gso_size, frame.hdr_len)
            else:
                out = Frame(bytes(complete_checksum(frame)))
            self.stats.tx_frames += 1
            self.stats.tx_bytes += len(out.data)
            if peer._efd is not None:
                peer._rxq.append(out)
        if peer._rxq and peer._efd is not None:
            peer._set_signal()
        return taken

    def fileno(self) -> int | None:
        return self._efd

    async def wait_readable(self) -> None:
        if self._efd is None:
            raise OSError(errno.EBADF, "endpoint closed")
        if self._rxq:
            await trio.lowlevel.checkpoint()
            return
        await trio.lowlevel.wait_readable(self._efd)

    async def wait_writable(self) -> None:
        peer = self.peer
        while peer._efd is not None and len(peer._rxq) >= peer._limit:
            peer._room = trio.Event()
            await peer._room.wait()
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        if self._efd is None:
            return
        fd, self._efd = self._efd, None
        close_notifying(fd)
        self._rxq.clear()
        self._room.set()

    # -- readiness fd ---------------------------------------------------------
    def _set_signal(self) -> None:
        if not self._signalled and self._efd is not None:
            os.eventfd_write(self._efd, 1)
            self._signalled = True

    def _clear_signal(self) -> None:
        if self._signalled and self._efd is not None:
            try:
                os.eventfd_read(self._efd)
            except BlockingIOError:
                pass
            self._signalled = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} mac={self._mac.hex(':')} queued={len(self._rxq)}>"


class LoopbackEndpoint(MemoryEndpoint):
    """The stack's loopback device (Linux ``lo``): what is written is read back."""

    def __init__(self, *, mtu: int = LOOPBACK_MTU,
                 queue_limit: int = DEFAULT_QUEUE_LIMIT) -> None:
        # Checksums are never computed on lo, and the large MTU makes GSO
        # pointless: gso_max_size 0 keeps the stack's segments <= MTU.
        caps = LinkCapabilities(checksum_offload_tx=True, checksum_offload_rx=True,
                                gso_max_size=0, vnet_hdr=False, is_loopback=True)
        super().__init__(b"\x00" * 6, mtu, caps, queue_limit=queue_limit)


def memory_pair(mac_a: bytes = b"\x02\x00\x00\x00\x00\x0a",
                mac_b: bytes = b"\x02\x00\x00\x00\x00\x0b", *, mtu: int = 1500,
                offload: bool = False,
                queue_limit: int = DEFAULT_QUEUE_LIMIT) -> tuple[MemoryEndpoint, MemoryEndpoint]:
    """Two endpoints joined like a cable (what A writes, B reads, and back).

    ``offload=True`` models a veth pair with checksum offload and GSO: partial
    checksums and GSO frames pass through untouched and arrive ``csum_valid``.
    """
    caps = LinkCapabilities(checksum_offload_tx=offload, checksum_offload_rx=offload,
                            gso_max_size=GSO_MAX_SIZE if offload else 0)
    a = MemoryEndpoint(mac_a, mtu, caps, queue_limit=queue_limit)
    b = MemoryEndpoint(mac_b, mtu, caps, queue_limit=queue_limit)
    a.peer, b.peer = b, a
    return a, b
