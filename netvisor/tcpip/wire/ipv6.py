"""The IPv6 fixed header (RFC 8200 3).

Extension headers live in :mod:`netvisor.tcpip.wire.ipv6ext`. The view checks
lengths (40 bytes, payload length within the buffer); ``payload`` stops at
the payload length, so link padding is ignored. Jumbograms (RFC 2675,
payload length 0 with a Jumbo option) are not supported: payload length 0
means an empty payload.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

from netvisor.tcpip.errors import MalformedPacket, Truncated
from netvisor.tcpip.wire._util import ReadableBuffer, WritableBuffer, as_view, check_room
from netvisor.tcpip.wire.ip import (  # re-exported for callers of this module
    IPPROTO_DSTOPTS,
    IPPROTO_FRAGMENT,
    IPPROTO_HOPOPTS,
    IPPROTO_ICMPV6,
    IPPROTO_NONE,
    IPPROTO_ROUTING,
    IPPROTO_TCP,
    IPPROTO_UDP,
)

__all__ = [
    "HEADER_LEN",
    "IPPROTO_DSTOPTS",
    "IPPROTO_FRAGMENT",
    "IPPROTO_HOPOPTS",
    "IPPROTO_ICMPV6",
    "IPPROTO_NONE",
    "IPPROTO_ROUTING",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "MIN_MTU",
    "IPv6Repr",
    "IPv6View",
]

HEADER_LEN: Final = 40
MIN_MTU: Final = 1280  # RFC 8200 5
MAX_PAYLOAD_LEN: Final = 65535
_FIXED: Final = struct.Struct("!IHBB16s16s")


class IPv6View:
    """A view over an IPv6 packet (fixed header + everything after it)."""

    __slots__ = ("buf", "truncated")

    def __init__(self, buf: ReadableBuffer, *, truncated: bool = False) -> None:
        """Wrap ``buf`` without checks; prefer :meth:`checked`."""
        self.buf = as_view(buf)
        self.truncated = truncated

    @classmethod
    def checked(cls, buf: ReadableBuffer, *, allow_truncated: bool = False) -> IPv6View:
        """Raise ``Truncated`` if the header is short or the payload length lies.

        ``allow_truncated``: accept a payload length past the end (a packet
        quoted in an ICMPv6 error, RFC 4443 2.4(c)); ``truncated`` is then set.
        """
        mv = as_view(buf)
        n = len(mv)
        if n < HEADER_LEN:
            raise Truncated(f"ipv6: need {HEADER_LEN} bytes, have {n}")
        plen = (mv[4] << 8) | mv[5]
        truncated = False
        if HEADER_LEN + plen > n:
            if not allow_truncated:
                raise Truncated(f"ipv6: payload length {plen} > {n - HEADER_LEN} bytes present")
            truncated = True
        return cls(mv, truncated=truncated)

    @property
    def version(self) -> int:
        return self.buf[0] >> 4

    @property
    def traffic_class(self) -> int:
        return int((struct.unpack_from("!I", self.buf, 0)[0] >> 20) & 0xFF)

    @property
    def flow_label(self) -> int:
        return int(struct.unpack_from("!I", self.buf, 0)[0] & 0xFFFFF)

    @property
    def payload_len(self) -> int:
        return int(struct.unpack_from("!H", self.buf, 4)[0])

    @property
    def next_header(self) -> int:
        return self.buf[6]

    @property
    def hop_limit(self) -> int:
        return self.buf[7]

    @property
    def src(self) -> ipaddress.IPv6Address:
        return ipaddress.IPv6Address(bytes(self.buf[8:24]))

    @property
    def dst(self) -> ipaddress.IPv6Address:
        return ipaddress.IPv6Address(bytes(self.buf[24:40]))

    @property
    def header(self) -> memoryview:
        return self.buf[:HEADER_LEN]

    @property
    def payload(self) -> memoryview:
        """Extension headers + upper layer, bounded by the payload length."""
        return self.buf[HEADER_LEN:HEADER_LEN + self.payload_len]

    def set_hop_limit(self, hop_limit: int) -> None:
        self.buf[7] = hop_limit


@dataclass(frozen=True, slots=True)
class IPv6Repr:
    """The fixed header's meaning; ``next_header`` is the first header after it."""

    src: ipaddress.IPv6Address
    dst: ipaddress.IPv6Address
    next_header: int
    payload_len: int
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0

    @classmethod
    def parse(cls, view: IPv6View) -> IPv6Repr:
        """Raise ``MalformedPacket`` on version != 6."""
        word, plen, nh, hops, src, dst = _FIXED.unpack_from(view.buf, 0)
        if word >> 28 != 6:
            raise MalformedPacket(f"ipv6: version {word >> 28}")
        return cls(ipaddress.IPv6Address(src), ipaddress.IPv6Address(dst), nh, plen, hops,
                   (word >> 20) & 0xFF, word & 0xFFFFF)

    @property
    def header_len(self) -> int:
        return HEADER_LEN

    @property
    def buffer_len(self) -> int:
        return HEADER_LEN + self.payload_len

    def emit(self, buf: WritableBuffer, offset: int = 0) -> int:
        """Write the 40-byte header at ``buf[offset:]``; returns 40."""
        check_room(buf, offset, HEADER_LEN, "ipv6")
        if not 0 <= self.payload_len <= MAX_PAYLOAD_LEN:
            raise ValueError(f"ipv6: payload length {self.payload_len}")
        if not 0 <= self.flow_label <= 0xFFFFF or not 0 <= self.traffic_class <= 0xFF:
            raise ValueError("ipv6: flow label or traffic class out of range")
        word = (6 << 28) | (self.traffic_class << 20) | self.flow_label
        struct.pack_into("!IHBB16s16s", buf, offset, word, self.payload_len, self.next_header,
                         self.hop_limit, self.src.packed, self.dst.packed)
        return HEADER_LEN

    def to_bytes(self, payload: ReadableBuffer = b"") -> bytes:
        """Header + ``payload`` (whose length must equal ``payload_len``)."""
        if len(payload) != self.payload_len:
            raise ValueError(f"payload is {len(payload)} bytes, repr says {self.payload_len}")
        out = bytearray(self.buffer_len)
        self.emit(out)
        out[HEADER_LEN:] = payload
        return bytes(out)
