"""The contract every link endpoint (and every wrapper) fulfils.

A link endpoint moves Ethernet frames (:class:`netvisor.frame.Frame`) between
the stack and something outside: a TAP file descriptor, an AF_PACKET socket on
a veth, an in-memory loopback queue. Wrappers (pcap sniffer, fault injector,
egress shaper) take an endpoint and are one, forwarding whatever they do not
change (smoltcp's ``phy`` middleware, gVisor's ``link/sniffer``).

Rules every implementation follows:

- Nothing blocks. ``read_batch`` returns what is there now (empty list when
  nothing); ``write_batch`` takes what it can now and returns how many frames
  it took, in order; the rest stay with the caller (that is the backpressure
  signal). Waiting happens only in the ``async wait_*`` methods.
- One call moves a batch: an endpoint drains its fd until EAGAIN (or
  ``max_frames``) in one call, so the driver awaits once per batch, never once
  per frame (see /work/shared/notes/syscall-trapping.md: an await costs
  10-15 us, a read 2 us).
- Frames returned by ``read_batch`` own their bytes: the caller may keep them
  (reassembly queues, pcap) after the next call.
- Readiness: ``fileno()`` returns an fd that polls readable when
  ``read_batch`` would return frames (so a driver may ``select.poll`` many
  endpoints at once), or ``None`` for endpoints without one; in both cases
  ``await wait_readable()`` works. It may return spuriously (then
  ``read_batch`` returns ``[]``).
- Offload metadata (``Frame.csum_*``, ``gso_*``) is honoured on transmit only
  when :attr:`LinkCapabilities` says so; the stack must not ask otherwise.
  Endpoints complete a partial checksum in software when they have no
  checksum offload (cheap insurance), and count a GSO frame they cannot send
  as a drop.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

from netvisor.frame import GSO_NONE, Frame
from netvisor.tcpip.wire.checksum import fold, partial_sum

ETH_HLEN: Final = 14
"""Ethernet II header length (no 802.1Q tag): what Linux adds to the MTU for
the largest frame a device carries (``dev->mtu + dev->hard_header_len``)."""

GSO_MAX_SIZE: Final = 65536
"""Linux's default ``gso_max_size`` (GSO_LEGACY_MAX_SIZE): the largest
packet (IP header included, Ethernet header not) handed to a device for
segmentation."""


@dataclass(frozen=True, slots=True)
class LinkCapabilities:
    """What an endpoint does for the stack.

    ``checksum_offload_tx``: the endpoint (or the kernel behind it) completes
    a transport checksum left partial (``Frame.csum_start >= 0``).
    ``checksum_offload_rx``: received frames may carry ``csum_valid`` (the
    kernel verified or will never need the checksum); without it the stack
    verifies every checksum.
    ``gso_max_size``: largest packet (IP header included) the endpoint accepts
    with ``gso_type != GSO_NONE``; 0 = no GSO/TSO, send MTU-sized packets.
    ``vnet_hdr``: frames cross the kernel with a ``virtio_net_hdr`` (the
    mechanism behind the three above on TAP and AF_PACKET).
    ``is_loopback``: the stack's own loopback; never shaped, never ARPed.
    """

    checksum_offload_tx: bool = False
    checksum_offload_rx: bool = False
    gso_max_size: int = 0
    vnet_hdr: bool = False
    is_loopback: bool = False


@dataclass(slots=True)
class LinkStats:
    """Counters every concrete endpoint keeps (wrappers keep their own)."""

    rx_frames: int = 0
    rx_bytes: int = 0
    tx_frames: int = 0
    tx_bytes: int = 0
    rx_errors: int = 0
    """Reads that failed or frames that could not be decoded (counted, skipped)."""
    tx_errors: int = 0
    """Frames the kernel refused with a hard error (EINVAL, EMSGSIZE, ...);
    they count as taken so that one bad frame cannot wedge a queue."""
    tx_dropped: int = 0
    """Frames dropped before the kernel (GSO asked of an endpoint without GSO)."""


@runtime_checkable
class LinkEndpoint(Protocol):
    """One network interface as seen by the stack (see the module docstring)."""

    @property
    def mac(self) -> bytes:
        """The stack's 6-byte MAC address on this link."""
        ...

    @property
    def mtu(self) -> int:
        """Largest IP packet (Ethernet header excluded) without GSO."""
        ...

    @property
    def capabilities(self) -> LinkCapabilities: ...

    def read_batch(self, max_frames: int) -> list[Frame]:
        """Up to ``max_frames`` received frames, ``[]`` when none; never blocks."""
        ...

    def write_batch(self, frames: Sequence[Frame]) -> int:
        """Transmit a prefix of ``frames``; return its length. Never blocks."""
        ...

    def fileno(self) -> int | None:
        """An fd that polls readable when frames wait, or None."""
        ...

    async def wait_readable(self) -> None:
        """Return when ``read_batch`` may return frames (possibly spuriously)."""
        ...

    async def wait_writable(self) -> None:
        """Return when ``write_batch`` may take frames again (possibly spuriously)."""
        ...

    def close(self) -> None:
        """Release the fd/queue; idempotent."""
        ...


class FixedLinkInfo:
    """``mac``, ``mtu`` and ``capabilities`` of a concrete endpoint, fixed when
    it is made (the subclass sets ``_mac``, ``_mtu`` and ``_caps``)."""

    _mac: bytes
    _mtu: int
    _caps: LinkCapabilities

    @property
    def mac(self) -> bytes:
        return self._mac

    @property
    def mtu(self) -> int:
        return self._mtu

    @property
    def capabilities(self) -> LinkCapabilities:
        return self._caps


class ForwardingEndpoint:
    """Base for wrappers: every :class:`LinkEndpoint` call goes to ``inner``.

    A wrapper subclasses it and overrides only what it changes (gVisor's
    ``link/nested``, smoltcp's ``phy`` middleware). Any other attribute
    (``stats``, ``name``, ``ifindex``...) is the inner endpoint's too, through
    ``__getattr__``. ``inner`` stays an instance attribute: the driver walks a
    wrapper chain through instance dictionaries (``netstack._chain``).
    """

    def __init__(self, inner: LinkEndpoint) -> None:
        self.inner = inner

    @property
    def mac(self) -> bytes:
        return self.inner.mac

    @property
    def mtu(self) -> int:
        return self.inner.mtu

    @property
    def capabilities(self) -> LinkCapabilities:
        return self.inner.capabilities

    def read_batch(self, max_frames: int) -> list[Frame]:
        return self.inner.read_batch(max_frames)

    def write_batch(self, frames: Sequence[Frame]) -> int:
        return self.inner.write_batch(frames)

    def fileno(self) -> int | None:
        return self.inner.fileno()

    async def wait_readable(self) -> None:
        await self.inner.wait_readable()

    async def wait_writable(self) -> None:
        await self.inner.wait_writable()

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not found on the wrapper: forward. Not
        # for ``inner`` itself (before __init__ set it), which would recurse.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def complete_checksum(frame: Frame) -> bytes | bytearray | memoryview:
    """The frame's bytes with a partial transport checksum completed in software.

    ``csum_start``/``csum_offset`` follow virtio_net_hdr NEEDS_CSUM: the field
    holds the pseudo-header sum, and the checksum covers everything from
    ``csum_start`` to the end (Linux ``skb_checksum_help``). Returns the data
    unchanged when nothing is partial or the offsets do not fit the frame.
    """
    start = frame.csum_start
    data = frame.data
    if start < 0:
        return data
    field = start + frame.csum_offset
    if field + 2 > len(data):
        return data
    buf = bytearray(data)
    csum = ~fold(partial_sum(memoryview(buf)[start:])) & 0xFFFF
    # RFC 768: a UDP checksum of 0 is sent as 0xFFFF; harmless for TCP
    # (0 and 0xFFFF are the same ones'-complement value).
    struct.pack_into("!H", buf, field, csum or 0xFFFF)
    return buf


def prepare_plain_tx(frame: Frame, stats: LinkStats) -> bytes | bytearray | memoryview | None:
    """Bytes to put on a link without vnet header, or None (counted drop) for GSO."""
    if frame.gso_type != GSO_NONE:
        stats.tx_dropped += 1
        return None
    return complete_checksum(frame)
