"""ICMP for IPv4 (RFC 792; next-hop MTU RFC 1191; host rules RFC 1122 3.2.2).

One repr for every message: ``type``, ``code``, the 4-byte "rest of header"
word as ``rest`` (so unknown types round-trip untouched), and ``data`` (echo
payload, or the quoted datagram of an error). Named accessors interpret
``rest`` per type: ``ident``/``seq`` (echo, timestamp, information),
``mtu`` (destination unreachable; meaningful for code 4, fragmentation
needed), ``pointer`` (parameter problem), ``gateway`` (redirect).
Constructors build the common messages. The quoted datagram of an error is
parsed with ``IPv4View.checked(data, allow_truncated=True)``.
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
    ToBytes,
    WritableBuffer,
    check_room,
    need,
)

HEADER_LEN: Final = 8
CHECKSUM_OFFSET: Final = 2

# Types (IANA "ICMP Type Numbers").
ECHO_REPLY: Final = 0
DEST_UNREACHABLE: Final = 3
SOURCE_QUENCH: Final = 4
REDIRECT: Final = 5
ECHO_REQUEST: Final = 8
ROUTER_ADVERT: Final = 9
ROUTER_SOLICIT: Final = 10
TIME_EXCEEDED: Final = 11
PARAMETER_PROBLEM: Final = 12
TIMESTAMP_REQUEST: Final = 13
TIMESTAMP_REPLY: Final = 14
INFO_REQUEST: Final = 15
INFO_REPLY: Final = 16

ERROR_TYPES: Final = frozenset((DEST_UNREACHABLE, SOURCE_QUENCH, REDIRECT, TIME_EXCEEDED,
                                PARAMETER_PROBLEM))
_IDENT_SEQ_TYPES: Final = frozenset((ECHO_REPLY, ECHO_REQUEST, TIMESTAMP_REQUEST,
                                     TIMESTAMP_REPLY, INFO_REQUEST, INFO_REPLY))

# Destination unreachable codes (RFC 792, RFC 1122 3.2.2.1, RFC 1812 5.2.7.1).
UNREACH_NET: Final = 0
UNREACH_HOST: Final = 1
UNREACH_PROTOCOL: Final = 2
UNREACH_PORT: Final = 3
UNREACH_FRAG_NEEDED: Final = 4
UNREACH_SOURCE_ROUTE_FAILED: Final = 5
UNREACH_NET_UNKNOWN: Final = 6
UNREACH_HOST_UNKNOWN: Final = 7
UNREACH_HOST_ISOLATED: Final = 8
UNREACH_NET_PROHIBITED: Final = 9
UNREACH_HOST_PROHIBITED: Final = 10
UNREACH_NET_TOS: Final = 11
UNREACH_HOST_TOS: Final = 12
UNREACH_ADMIN_PROHIBITED: Final = 13
UNREACH_HOST_PRECEDENCE: Final = 14
UNREACH_PRECEDENCE_CUTOFF: Final = 15

# Time exceeded codes.
TIME_EXCEEDED_TTL: Final = 0
TIME_EXCEEDED_REASSEMBLY: Final = 1

# Redirect codes.
REDIRECT_NET: Final = 0
REDIRECT_HOST: Final = 1
REDIRECT_TOS_NET: Final = 2
REDIRECT_TOS_HOST: Final = 3

# Parameter problem codes.
PARAMPROB_POINTER: Final = 0
PARAMPROB_MISSING_OPTION: Final = 1
PARAMPROB_BAD_LENGTH: Final = 2

ERROR_QUOTE_MIN: Final = 28
"""An error quotes the IP header + at least 8 bytes (RFC 792, RFC 1122 3.2.2)."""
ERROR_QUOTE_MAX: Final = 576 - 20 - HEADER_LEN
"""Linux quotes as much as fits in 576 bytes (icmp_send, RFC 1812 4.3.2.3)."""


class Icmpv4View(IcmpHeaderView):
    """A view over an ICMP message (the whole IPv4 payload)."""

    __slots__ = ()

    @classmethod
    def checked(cls, buf: ReadableBuffer) -> Icmpv4View:
        """Raise ``Truncated`` if shorter than the 8-byte header."""
        need(buf, HEADER_LEN, "icmpv4")
        return cls(buf)

    def checksum_ok(self) -> bool:
        return _csum.verify(self.buf)


@dataclass(frozen=True, slots=True)
class Icmpv4Repr(ToBytes):
    """An ICMP message (see the module docstring for ``rest``)."""

    type: int
    code: int
    rest: int = 0
    data: ReadableBuffer = b""

    # -- constructors for the messages the stack sends --------------------
    @classmethod
    def echo_request(cls, ident: int, seq: int, data: ReadableBuffer = b"") -> Icmpv4Repr:
        return cls(ECHO_REQUEST, 0, (ident << 16) | seq, data)

    @classmethod
    def echo_reply(cls, ident: int, seq: int, data: ReadableBuffer = b"") -> Icmpv4Repr:
        return cls(ECHO_REPLY, 0, (ident << 16) | seq, data)

    @classmethod
    def dest_unreachable(cls, code: int, quoted: ReadableBuffer, *, mtu: int = 0) -> Icmpv4Repr:
        """``mtu``: next-hop MTU for code 4 (RFC 1191 4)."""
        return cls(DEST_UNREACHABLE, code, mtu & 0xFFFF, quoted)

    @classmethod
    def time_exceeded(cls, code: int, quoted: ReadableBuffer) -> Icmpv4Repr:
        return cls(TIME_EXCEEDED, code, 0, quoted)

    @classmethod
    def parameter_problem(cls, pointer: int, quoted: ReadableBuffer,
                          code: int = PARAMPROB_POINTER) -> Icmpv4Repr:
        return cls(PARAMETER_PROBLEM, code, (pointer & 0xFF) << 24, quoted)

    @classmethod
    def redirect(cls, code: int, gateway: ipaddress.IPv4Address,
                 quoted: ReadableBuffer) -> Icmpv4Repr:
        return cls(REDIRECT, code, int(gateway), quoted)

    # -- interpretation of ``rest`` -------------------------------------------
    @property
    def is_error(self) -> bool:
        return self.type in ERROR_TYPES

    @property
    def ident(self) -> int:
        """Identifier of echo/timestamp/information messages."""
        return self.rest >> 16

    @property
    def seq(self) -> int:
        return self.rest & 0xFFFF

    @property
    def mtu(self) -> int:
        """Next-hop MTU of a destination unreachable (0 from pre-RFC 1191 routers)."""
        return self.rest & 0xFFFF if self.type == DEST_UNREACHABLE else 0

    @property
    def pointer(self) -> int:
        """Octet offset into the quoted header of a parameter problem."""
        return self.rest >> 24 if self.type == PARAMETER_PROBLEM else 0

    @property
    def gateway(self) -> ipaddress.IPv4Address | None:
        """The better first hop of a redirect."""
        return ipaddress.IPv4Address(self.rest) if self.type == REDIRECT else None

    # -- parse / emit ---------------------------------------------------------------
    @classmethod
    def parse(cls, view: Icmpv4View, *, verify_checksum: bool = True) -> Icmpv4Repr:
        """Raise ``MalformedPacket`` on a bad checksum (when asked) or an error
        message quoting less than an IPv4 header (RFC 1122 3.2.2)."""
        if verify_checksum and not view.checksum_ok():
            raise MalformedPacket("icmpv4: bad checksum")
        if view.type in ERROR_TYPES and len(view.data) < 20:
            raise MalformedPacket(f"icmpv4: error type {view.type} quotes {len(view.data)} bytes")
        return cls(type=view.type, code=view.code, rest=view.rest, data=view.data)

    @property
    def header_len(self) -> int:
        return HEADER_LEN

    @property
    def buffer_len(self) -> int:
        return HEADER_LEN + len(self.data)

    def emit(self, buf: WritableBuffer, offset: int = 0, *, checksum: bool = True) -> int:
        """Write header and data at ``buf[offset:]``; returns ``buffer_len``."""
        total = self.buffer_len
        check_room(buf, offset, total, "icmpv4")
        struct.pack_into("!BBHI", buf, offset, self.type, self.code, 0, self.rest)
        buf[offset + HEADER_LEN:offset + total] = self.data
        if checksum:
            _csum.fill_checksum(buf, offset, total, offset + CHECKSUM_OFFSET, 0,
                                _csum.ChecksumMode.FULL)
        return total
