"""ICMPv6 (RFC 4443): echo and errors; the common header of NDP and MLD.

Like :mod:`icmpv4`, one repr for every message: ``type``, ``code``, the
32-bit word after the checksum as ``rest`` and ``data``. Accessors interpret
``rest``: ``ident``/``seq`` (echo), ``mtu`` (packet too big, full 32 bits),
``pointer`` (parameter problem, full 32 bits). NDP (:mod:`ndp`) and MLD
(:mod:`mld`) parse their bodies from the same :class:`Icmpv6View`.

The checksum covers the IPv6 pseudo-header (RFC 4443 2.3), so ``parse`` and
``emit`` take ``src``/``dst``; ``emit`` supports the NIC's partial mode.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

from netvisor.tcpip.errors import MalformedPacket
from netvisor.tcpip.wire import checksum as _csum
from netvisor.tcpip.wire._util import (
    IcmpHeaderView,
    ReadableBuffer,
    WritableBuffer,
    check_room,
    need,
)
from netvisor.tcpip.wire.checksum import ChecksumMode
from netvisor.tcpip.wire.ip import IPPROTO_ICMPV6

HEADER_LEN: Final = 8
CHECKSUM_OFFSET: Final = 2

# Types (IANA "ICMPv6 Parameters").
DEST_UNREACHABLE: Final = 1
PACKET_TOO_BIG: Final = 2
TIME_EXCEEDED: Final = 3
PARAMETER_PROBLEM: Final = 4
ECHO_REQUEST: Final = 128
ECHO_REPLY: Final = 129
MLD_QUERY: Final = 130
MLD_REPORT_V1: Final = 131
MLD_DONE: Final = 132
ROUTER_SOLICIT: Final = 133
ROUTER_ADVERT: Final = 134
NEIGHBOR_SOLICIT: Final = 135
NEIGHBOR_ADVERT: Final = 136
REDIRECT: Final = 137
MLD_REPORT_V2: Final = 143

# Destination unreachable codes (RFC 4443 3.1).
UNREACH_NO_ROUTE: Final = 0
UNREACH_ADMIN_PROHIBITED: Final = 1
UNREACH_BEYOND_SCOPE: Final = 2
UNREACH_ADDRESS: Final = 3
UNREACH_PORT: Final = 4
UNREACH_POLICY_FAILED: Final = 5
UNREACH_REJECT_ROUTE: Final = 6

# Time exceeded codes (RFC 4443 3.3).
TIME_EXCEEDED_HOP_LIMIT: Final = 0
TIME_EXCEEDED_REASSEMBLY: Final = 1

# Parameter problem codes (RFC 4443 3.4, RFC 7112).
PARAMPROB_HEADER: Final = 0
PARAMPROB_NEXT_HEADER: Final = 1
PARAMPROB_OPTION: Final = 2
PARAMPROB_FIRST_FRAGMENT_INCOMPLETE: Final = 3

_QUOTING_ERRORS: Final = frozenset((DEST_UNREACHABLE, PACKET_TOO_BIG, TIME_EXCEEDED,
                                    PARAMETER_PROBLEM))

ERROR_QUOTE_MAX: Final = 1280 - 40 - HEADER_LEN
"""An error quotes as much as fits in the minimum MTU (RFC 4443 2.4(c))."""


def is_error_type(icmp_type: int) -> bool:
    """Types 0..127 are errors (RFC 4443 2.1)."""
    return icmp_type < 128


def checksum_ok(message: ReadableBuffer, src: ipaddress.IPv6Address,
                dst: ipaddress.IPv6Address) -> bool:
    """The ICMPv6 checksum of ``message`` verifies with the pseudo-header."""
    pseudo = _csum.pseudo_header_sum(src, dst, IPPROTO_ICMPV6, len(message))
    return _csum.verify(message, pseudo)


def fill_checksum(buf: WritableBuffer, offset: int, length: int, src: ipaddress.IPv6Address,
                  dst: ipaddress.IPv6Address,
                  checksum: ChecksumMode | str = ChecksumMode.FULL) -> None:
    """Fill the checksum of the ICMPv6 message at ``buf[offset:offset+length]``."""
    if checksum == ChecksumMode.NONE:
        raise ValueError("icmpv6: the checksum is mandatory")
    pseudo = _csum.pseudo_header_sum(src, dst, IPPROTO_ICMPV6, length)
    _csum.fill_checksum(buf, offset, length, offset + CHECKSUM_OFFSET, pseudo, checksum)


class Icmpv6View(IcmpHeaderView):
    """A view over an ICMPv6 message (the whole upper-layer payload)."""

    __slots__ = ()

    @classmethod
    def checked(cls, buf: ReadableBuffer) -> Icmpv6View:
        """Raise ``Truncated`` if shorter than 4 bytes (type, code, checksum).

        Every message defined so far has 8 bytes; a 4..7-byte message is
        accepted by the view so that its checksum can be checked, and refused
        by the repr.
        """
        need(buf, 4, "icmpv6")
        return cls(buf)

    @property
    def body(self) -> memoryview:
        """Bytes after type/code/checksum (NDP and MLD parse from here)."""
        return self.buf[4:]

    def checksum_ok(self, src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address) -> bool:
        return checksum_ok(self.buf, src, dst)


@dataclass(frozen=True, slots=True)
class Icmpv6Repr:
    """An ICMPv6 message (see the module docstring for ``rest``)."""

    type: int
    code: int
    rest: int = 0
    data: ReadableBuffer = b""

    @classmethod
    def echo_request(cls, ident: int, seq: int, data: ReadableBuffer = b"") -> Icmpv6Repr:
        return cls(ECHO_REQUEST, 0, (ident << 16) | seq, data)

    @classmethod
    def echo_reply(cls, ident: int, seq: int, data: ReadableBuffer = b"") -> Icmpv6Repr:
        return cls(ECHO_REPLY, 0, (ident << 16) | seq, data)

    @classmethod
    def dest_unreachable(cls, code: int, quoted: ReadableBuffer) -> Icmpv6Repr:
        return cls(DEST_UNREACHABLE, code, 0, quoted)

    @classmethod
    def packet_too_big(cls, mtu: int, quoted: ReadableBuffer) -> Icmpv6Repr:
        return cls(PACKET_TOO_BIG, 0, mtu, quoted)

    @classmethod
    def time_exceeded(cls, code: int, quoted: ReadableBuffer) -> Icmpv6Repr:
        return cls(TIME_EXCEEDED, code, 0, quoted)

    @classmethod
    def parameter_problem(cls, code: int, pointer: int, quoted: ReadableBuffer) -> Icmpv6Repr:
        return cls(PARAMETER_PROBLEM, code, pointer, quoted)

    @property
    def is_error(self) -> bool:
        return is_error_type(self.type)

    @property
    def ident(self) -> int:
        return self.rest >> 16

    @property
    def seq(self) -> int:
        return self.rest & 0xFFFF

    @property
    def mtu(self) -> int:
        """MTU of a packet too big (RFC 4443 3.2), else 0."""
        return self.rest if self.type == PACKET_TOO_BIG else 0

    @property
    def pointer(self) -> int:
        """Offset of the offending octet (parameter problem, RFC 4443 3.4), else 0."""
        return self.rest if self.type == PARAMETER_PROBLEM else 0

    @classmethod
    def parse(cls, view: Icmpv6View, *, src: ipaddress.IPv6Address | None = None,
              dst: ipaddress.IPv6Address | None = None,
              verify_checksum: bool = True) -> Icmpv6Repr:
        """Raise ``MalformedPacket`` on a bad checksum (when asked; needs src/dst),
        a message shorter than 8 bytes, or a known error (types 1..4) quoting
        less than an IPv6 header."""
        if verify_checksum:
            if src is None or dst is None:
                raise TypeError("icmpv6: verifying the checksum needs src and dst")
            if not view.checksum_ok(src, dst):
                raise MalformedPacket("icmpv6: bad checksum")
        if len(view.buf) < HEADER_LEN:
            raise MalformedPacket(f"icmpv6: message of {len(view.buf)} bytes")
        if view.type in _QUOTING_ERRORS and len(view.buf) < HEADER_LEN + 40:
            # Linux icmpv6_notify drops an error that quotes less than an IPv6 header.
            raise MalformedPacket(f"icmpv6: error type {view.type} quotes "
                                  f"{len(view.buf) - HEADER_LEN} bytes")
        return cls(type=view.type, code=view.code, rest=view.rest, data=view.data)

    @property
    def header_len(self) -> int:
        return HEADER_LEN

    @property
    def buffer_len(self) -> int:
        return HEADER_LEN + len(self.data)

    def emit(self, buf: WritableBuffer, offset: int = 0, *, src: ipaddress.IPv6Address,
             dst: ipaddress.IPv6Address, checksum: ChecksumMode | str = ChecksumMode.FULL) -> int:
        """Write the message at ``buf[offset:]``; returns ``buffer_len``."""
        total = self.buffer_len
        check_room(buf, offset, total, "icmpv6")
        struct.pack_into("!BBHI", buf, offset, self.type, self.code, 0, self.rest)
        buf[offset + HEADER_LEN:offset + total] = self.data
        fill_checksum(buf, offset, total, src, dst, checksum)
        return total

    def to_bytes(self, *, src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address,
                 checksum: ChecksumMode | str = ChecksumMode.FULL) -> bytes:
        out = bytearray(self.buffer_len)
        self.emit(out, src=src, dst=dst, checksum=checksum)
        return bytes(out)
