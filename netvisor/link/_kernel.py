"""What the endpoints backed by a kernel fd (TAP, AF_PACKET) have in common.

Shared here: the MAC/MTU/capabilities that follow from ``vnet_hdr``, the
receive buffer, the send loop (vnet header + frame as one gathered write, or
a plain frame with its checksum completed in software), readiness through
trio, and closing with ``notify_closing`` so that a task waiting on the fd
wakes up (``trio.ClosedResourceError``) instead of waiting on a reused fd
number. The receive loops stay in each module: they differ in the calls
that are worth their cost per frame (``os.read`` for plain TAP frames,
``recvfrom_into`` to skip outgoing frames on old kernels).
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any, Generic, Self, TypeVar

import trio

from netvisor.frame import Frame
from netvisor.link.endpoint import (
    ETH_HLEN,
    GSO_MAX_SIZE,
    FixedLinkInfo,
    LinkCapabilities,
    LinkStats,
    prepare_plain_tx,
)
from netvisor.link.vnet import VNET_HDR_LEN, emit

RX_BUF_MIN = GSO_MAX_SIZE + ETH_HLEN + 4
"""Largest frame the kernel may hand us: a 64 KB GSO packet plus Ethernet
header (and a VLAN tag); a larger device MTU makes the buffer larger."""


def close_notifying(handle: int | socket.socket) -> None:
    """Wake trio tasks waiting on ``handle``, then close it (fd or socket)."""
    try:
        trio.lowlevel.notify_closing(handle)
    except RuntimeError:
        pass  # outside trio: nobody waits
    if isinstance(handle, int):
        os.close(handle)
    else:
        handle.close()


H = TypeVar("H", int, socket.socket)


class KernelEndpoint(FixedLinkInfo, Generic[H]):
    """Base of :class:`TapEndpoint` and :class:`PacketEndpoint`.

    A subclass opens its handle ``_io`` (an fd or a socket), calls
    :meth:`_init_link`, and provides ``read_batch``, ``_senders`` and the
    ``_frame_errors`` its kernel path reports for one bad frame.
    """

    _kind = "kernel"
    """Name in the EBADF message after close."""
    _frame_errors: frozenset[int] = frozenset()
    """Errors that mean "this one frame is bad", not "the device is full":
    the frame counts as taken so that it cannot wedge the caller's queue."""

    _io: H | None
    name: str
    stats: LinkStats

    def _init_link(self, mac: bytes, mtu: int, vnet_hdr: bool) -> None:
        self._mac = mac
        self._mtu = mtu
        self._vnet = vnet_hdr
        self._hdr = VNET_HDR_LEN if vnet_hdr else 0
        self._rxbuf = bytearray(max(RX_BUF_MIN, mtu + ETH_HLEN + 4) + self._hdr)
        self._rxview = memoryview(self._rxbuf)
        self._caps = LinkCapabilities(
            checksum_offload_tx=vnet_hdr,
            checksum_offload_rx=vnet_hdr,
            gso_max_size=GSO_MAX_SIZE if vnet_hdr else 0,
            vnet_hdr=vnet_hdr,
        )

    def _closed(self) -> OSError:
        return OSError(errno.EBADF, f"{self._kind} endpoint closed")

    def _senders(self, io: H) -> tuple[Callable[[Sequence[Any]], int], Callable[[Any], int]]:
        """(send a vnet header and a frame as one write, send one plain frame)."""
        raise NotImplementedError

    # -- LinkEndpoint (mac, mtu, capabilities: FixedLinkInfo) -------------------
    def write_batch(self, frames: Sequence[Frame]) -> int:
        io = self._io
        if io is None:
            raise self._closed()
        send_parts, send_plain = self._senders(io)
        stats, errors, vnet = self.stats, self._frame_errors, self._vnet
        taken = 0
        for frame in frames:
            try:
                if vnet:
                    send_parts((emit(frame), frame.data))
                else:
                    data = prepare_plain_tx(frame, stats)
                    if data is None:  # GSO without offload: counted drop
                        taken += 1
                        continue
                    send_plain(data)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno not in errors:
                    raise
                stats.tx_errors += 1
                taken += 1
                continue
            taken += 1
            stats.tx_frames += 1
            stats.tx_bytes += len(frame.data)
        return taken

    def fileno(self) -> int | None:
        io = self._io
        if io is None:
            return None
        return io if isinstance(io, int) else io.fileno()

    async def wait_readable(self) -> None:
        if self._io is None:
            raise self._closed()
        await trio.lowlevel.wait_readable(self._io)

    async def wait_writable(self) -> None:
        if self._io is None:
            raise self._closed()
        await trio.lowlevel.wait_writable(self._io)

    def close(self) -> None:
        if self._io is None:
            return
        io, self._io = self._io, None
        close_notifying(io)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} vnet_hdr={self._vnet} mtu={self._mtu}>"
