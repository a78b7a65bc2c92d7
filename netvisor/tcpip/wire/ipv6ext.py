"""IPv6 extension headers (RFC 8200 4): Hop-by-Hop, Routing, Fragment,
Destination Options, and the option TLVs of the two options headers (4.2).

Layout shared by Hop-by-Hop, Routing and Destination Options: next header
(1), header extension length in 8-octet units not counting the first 8 (1),
then data; the Fragment header is a fixed 8 bytes.

Options: Pad1 and PadN are padding and do not appear in a repr's
``options``; ``emit`` places options in the given order (callers order them
for alignment, e.g. Router Alert needs 2n+0, which it gets first in a
header) and pads the header to a multiple of 8 with Pad1/PadN. Every option
keeps its offset from the start of its header (``Ipv6Option.offset``, not
part of equality) so that a parameter problem can point at it (RFC 8200 4.2,
RFC 4443 3.4). The two high bits of an option type say what a node that
does not recognise it must do (``Ipv6Option.action``).

:func:`parse_chain` walks the headers after the fixed header up to the
upper-layer protocol. Departures: Jumbograms (RFC 2675) are not supported;
the walk stops after a Fragment header (what follows belongs to the
reassembled packet; walk that again).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Final, Self

from netvisor.tcpip.errors import MalformedPacket, Truncated
from netvisor.tcpip.wire._util import (
    BufferView,
    ReadableBuffer,
    WritableBuffer,
    as_view,
    check_room,
    need,
)
from netvisor.tcpip.wire.ip import (
    IPPROTO_DSTOPTS,
    IPPROTO_FRAGMENT,
    IPPROTO_HOPOPTS,
    IPPROTO_ROUTING,
)

# Option types (IANA "Destination Options and Hop-by-Hop Options").
OPT_PAD1: Final = 0x00
OPT_PADN: Final = 0x01
OPT_TUNNEL_LIMIT: Final = 0x04    # RFC 2473
OPT_ROUTER_ALERT: Final = 0x05    # RFC 2711
OPT_JUMBO: Final = 0xC2           # RFC 2675
OPT_HOME_ADDRESS: Final = 0xC9    # RFC 6275

# The two high-order bits of an option type (RFC 8200 4.2).
ACTION_SKIP: Final = 0
"""Skip over this option and continue processing the header."""
ACTION_DISCARD: Final = 1
"""Discard the packet."""
ACTION_DISCARD_ICMP: Final = 2
"""Discard, send ICMP parameter problem code 2 pointing at the option type."""
ACTION_DISCARD_ICMP_UNICAST: Final = 3
"""As 2, but only if the destination was not multicast."""

# Routing types (IANA "Routing Types").
ROUTING_TYPE_0: Final = 0     # deprecated, RFC 5095
ROUTING_TYPE_2: Final = 2     # Mobile IPv6, RFC 6275 6.4
ROUTING_TYPE_SRH: Final = 4   # Segment Routing, RFC 8754

FRAGMENT_HEADER_LEN: Final = 8
EXTENSION_PROTOCOLS: Final = frozenset((IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_FRAGMENT,
                                        IPPROTO_DSTOPTS))
"""Headers :func:`parse_chain` walks through (AH/ESP/Mobility count as upper layer)."""


class ParameterProblem(MalformedPacket):
    """A header the node must refuse with an ICMPv6 parameter problem (RFC 4443 3.4).

    ``pointer`` is relative to the buffer given to :func:`parse_chain` (add 40
    for the offset from the start of the IPv6 packet).
    """

    def __init__(self, message: str, *, code: int, pointer: int) -> None:
        super().__init__(message)
        self.code = code
        self.pointer = pointer


# -- option TLVs -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ipv6Option:
    """One Hop-by-Hop / Destination option (never Pad1/PadN)."""

    type: int
    data: bytes = b""
    offset: int = field(default=-1, compare=False)
    """Offset of the type byte from the start of its extension header (-1 if built)."""

    @property
    def action(self) -> int:
        """What to do if unrecognised: one of ``ACTION_*`` (type >> 6)."""
        return self.type >> 6

    @property
    def may_change(self) -> bool:
        """The data may change en route (type bit 0x20, RFC 8200 4.2)."""
        return bool(self.type & 0x20)


def parse_options(data: ReadableBuffer, base_offset: int = 2) -> tuple[Ipv6Option, ...]:
    """Parse option TLVs (``data`` = header bytes after next-header/length).

    ``base_offset`` is the offset of ``data`` in its header (2), used for
    ``Ipv6Option.offset``. Raises ``Truncated`` when an option runs past the end.
    """
    mv = as_view(data)
    out: list[Ipv6Option] = []
    i, n = 0, len(mv)
    while i < n:
        kind = mv[i]
        if kind == OPT_PAD1:
            i += 1
            continue
        if i + 1 >= n:
            raise Truncated(f"ipv6 option {kind:#x}: no length byte")
        length = mv[i + 1]
        if i + 2 + length > n:
            raise Truncated(f"ipv6 option {kind:#x}: length {length} runs past the header")
        if kind != OPT_PADN:
            out.append(Ipv6Option(kind, bytes(mv[i + 2:i + 2 + length]), base_offset + i))
        i += 2 + length
    return tuple(out)


def _padding(n: int) -> bytes:
    """n bytes of Pad1 (n == 1) or PadN."""
    if n == 0:
        return b""
    if n == 1:
        return bytes((OPT_PAD1,))
    return bytes((OPT_PADN, n - 2)) + b"\x00" * (n - 2)


def build_options(options: tuple[Ipv6Option, ...] | list[Ipv6Option]) -> bytes:
    """Encode options after the 2-byte next-header/length, padded so that the
    whole header is a multiple of 8 bytes."""
    out = bytearray()
    for opt in options:
        if opt.type in (OPT_PAD1, OPT_PADN):
            raise ValueError("padding is added by build_options; do not pass Pad1/PadN")
        if len(opt.data) > 255:
            raise ValueError(f"ipv6 option {opt.type:#x}: data longer than 255 bytes")
        out += bytes((opt.type, len(opt.data))) + opt.data
    pad = -(len(out) + 2) % 8
    out += _padding(pad)
    return bytes(out)


# -- generic views -------------------------------------------------------------------------


class ExtHeaderView(BufferView):
    """A view over a Hop-by-Hop, Routing or Destination Options header."""

    __slots__ = ()

    @classmethod
    def checked(cls, buf: ReadableBuffer) -> ExtHeaderView:
        """Raise ``Truncated`` when the header's length runs past the buffer."""
        need(buf, 8, "ipv6 extension header")
        view = cls(buf)
        need(view.buf, view.header_len, "ipv6 extension header (length)")
        return view

    @property
    def next_header(self) -> int:
        return self.buf[0]

    @property
    def header_len(self) -> int:
        """(Hdr Ext Len + 1) * 8."""
        return (self.buf[1] + 1) * 8

    @property
    def data(self) -> memoryview:
        """Bytes after next-header and length, up to the header's end."""
        return self.buf[2:self.header_len]

    @property
    def payload(self) -> memoryview:
        return self.buf[self.header_len:]


class FragmentView(BufferView):
    """A view over a Fragment header (RFC 8200 4.5)."""

    __slots__ = ()

    @classmethod
    def checked(cls, buf: ReadableBuffer) -> FragmentView:
        need(buf, FRAGMENT_HEADER_LEN, "ipv6 fragment header")
        return cls(buf)

    @property
    def next_header(self) -> int:
        return self.buf[0]

    @property
    def header_len(self) -> int:
        return FRAGMENT_HEADER_LEN

    @property
    def frag_offset(self) -> int:
        """Offset in bytes (the field counts 8-byte units)."""
        return int(struct.unpack_from("!H", self.buf, 2)[0]) & 0xFFF8

    @property
    def more_fragments(self) -> bool:
        return bool(self.buf[3] & 1)

    @property
    def ident(self) -> int:
        return int(struct.unpack_from("!I", self.buf, 4)[0])

    @property
    def payload(self) -> memoryview:
        return self.buf[FRAGMENT_HEADER_LEN:]


# -- reprs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OptionsHeaderRepr:
    """Options header (base of :class:`HopByHopRepr` and :class:`DestOptsRepr`)."""

    next_header: int
    options: tuple[Ipv6Option, ...] = ()

    @classmethod
    def parse(cls, view: ExtHeaderView) -> Self:
        """Options of a checked view; ``Truncated`` if an option overruns the header."""
        return cls(next_header=view.next_header, options=parse_options(view.data))

    def unrecognized(self, known: frozenset[int] | set[int]) -> Ipv6Option | None:
        """The first option whose type is not in ``known`` and whose action is
        not "skip" (the caller applies ``action``), or None."""
        for opt in self.options:
            if opt.type not in known and opt.action != ACTION_SKIP:
                return opt
        return None

    @property
    def header_len(self) -> int:
        body = sum(2 + len(o.data) for o in self.options)
        return body + 2 + (-(body + 2) % 8)

    @property
    def buffer_len(self) -> int:
        return self.header_len

    def emit(self, buf: WritableBuffer, offset: int = 0) -> int:
        """Write the header at ``buf[offset:]``; returns its length."""
        body = build_options(self.options)
        hlen = 2 + len(body)
        if hlen > 2048:
            raise ValueError("ipv6 options header longer than 2048 bytes")
        check_room(buf, offset, hlen, "ipv6 options header")
        buf[offset] = self.next_header
        buf[offset + 1] = hlen // 8 - 1
        buf[offset + 2:offset + hlen] = body
        return hlen

    def to_bytes(self) -> bytes:
        out = bytearray(self.header_len)
        self.emit(out)
        return bytes(out)


@dataclass(frozen=True, slots=True)
class HopByHopRepr(OptionsHeaderRepr):
    """Hop-by-Hop Options header (RFC 8200 4.3); only directly after the IPv6 header."""

    protocol = IPPROTO_HOPOPTS


@dataclass(frozen=True, slots=True)
class DestOptsRepr(OptionsHeaderRepr):
    """Destination Options header (RFC 8200 4.6)."""

    protocol = IPPROTO_DSTOPTS


@dataclass(frozen=True, slots=True)
class RoutingRepr:
    """Routing header (RFC 8200 4.4).

    ``data`` is the type-specific part after the first 4 bytes (for types 0
    and 2: 4 reserved bytes then addresses), so ``4 + len(data)`` is a
    multiple of 8. RFC 8200 4.4: with ``segments_left == 0`` an unrecognised
    type is ignored; otherwise the packet gets a parameter problem pointing
    at the routing type (offset 2). Types 0 (RFC 5095) is deprecated.
    """

    next_header: int
    routing_type: int
    segments_left: int
    data: bytes = b"\x00\x00\x00\x00"

    protocol = IPPROTO_ROUTING

    @classmethod
    def parse(cls, view: ExtHeaderView) -> RoutingRepr:
        return cls(next_header=view.next_header, routing_type=view.buf[2],
                   segments_left=view.buf[3], data=bytes(view.buf[4:view.header_len]))

    @property
    def addresses(self) -> tuple[ipaddress.IPv6Address, ...]:
        """Addresses of a type 0 or 2 header (after 4 reserved bytes)."""
        if self.routing_type not in (ROUTING_TYPE_0, ROUTING_TYPE_2):
            return ()
        body = self.data[4:]
        return tuple(ipaddress.IPv6Address(body[i:i + 16])
                     for i in range(0, len(body) - 15, 16))

    @property
    def header_len(self) -> int:
        return 4 + len(self.data)

    @property
    def buffer_len(self) -> int:
        return self.header_len

    def emit(self, buf: WritableBuffer, offset: int = 0) -> int:
        hlen = self.header_len
        if hlen % 8 or hlen > 2048:
            raise ValueError(f"ipv6 routing header of {hlen} bytes (not a multiple of 8)")
        check_room(buf, offset, hlen, "ipv6 routing header")
        struct.pack_into("!BBBB", buf, offset, self.next_header, hlen // 8 - 1,
                         self.routing_type, self.segments_left)
        buf[offset + 4:offset + hlen] = self.data
        return hlen

    def to_bytes(self) -> bytes:
        out = bytearray(self.header_len)
        self.emit(out)
        return bytes(out)


@dataclass(frozen=True, slots=True)
class FragmentRepr:
    """Fragment header (RFC 8200 4.5); ``frag_offset`` in bytes, a multiple of 8.

    The two reserved fields are written as 0 and ignored on receipt.
    """

    next_header: int
    frag_offset: int
    more_fragments: bool
    ident: int

    protocol = IPPROTO_FRAGMENT

    @classmethod
    def parse(cls, view: FragmentView) -> FragmentRepr:
        return cls(next_header=view.next_header, frag_offset=view.frag_offset,
                   more_fragments=view.more_fragments, ident=view.ident)

    @property
    def is_atomic(self) -> bool:
        """Offset 0 and no more fragments: a whole packet (RFC 6946)."""
        return self.frag_offset == 0 and not self.more_fragments

    @property
    def header_len(self) -> int:
        return FRAGMENT_HEADER_LEN

    @property
    def buffer_len(self) -> int:
        return FRAGMENT_HEADER_LEN

    def emit(self, buf: WritableBuffer, offset: int = 0) -> int:
        if self.frag_offset % 8 or not 0 <= self.frag_offset <= 0xFFF8:
            raise ValueError(f"ipv6 fragment offset {self.frag_offset}")
        check_room(buf, offset, FRAGMENT_HEADER_LEN, "ipv6 fragment header")
        struct.pack_into("!BBHI", buf, offset, self.next_header, 0,
                         self.frag_offset | int(self.more_fragments), self.ident)
        return FRAGMENT_HEADER_LEN

    def to_bytes(self) -> bytes:
        out = bytearray(FRAGMENT_HEADER_LEN)
        self.emit(out)
        return bytes(out)


ExtHeaderRepr = HopByHopRepr | DestOptsRepr | RoutingRepr | FragmentRepr


@dataclass(frozen=True, slots=True)
class ExtHeader:
    """One header found by :func:`parse_chain`."""

    protocol: int
    """IPPROTO_HOPOPTS / ROUTING / FRAGMENT / DSTOPTS."""
    offset: int
    """Offset of the header in the buffer given to :func:`parse_chain`."""
    repr: ExtHeaderRepr


@dataclass(frozen=True, slots=True)
class ExtChain:
    """The extension headers of a packet and where the upper layer starts."""

    headers: tuple[ExtHeader, ...]
    upper_protocol: int
    """The last next-header value (59 = no next header)."""
    upper_offset: int
    """Offset of the upper-layer header (or of the fragment data)."""
    upper_protocol_pointer: int
    """Offset of the next-header byte that named ``upper_protocol`` (-1 for the
    IPv6 header's own field, i.e. pointer 6 from the packet start): the
    pointer of a parameter problem code 1 (unknown next header)."""

    @property
    def fragment(self) -> FragmentRepr | None:
        """The Fragment header, if the walk stopped at one."""
        if self.headers and isinstance(self.headers[-1].repr, FragmentRepr):
            return self.headers[-1].repr
        return None

    def find(self, protocol: int) -> ExtHeader | None:
        for h in self.headers:
            if h.protocol == protocol:
                return h
        return None


def parse_chain(first: int, buf: ReadableBuffer) -> ExtChain:
    """Walk extension headers from ``first`` (the IPv6 next header) over ``buf``
    (the IPv6 payload) until an upper-layer protocol or a Fragment header.

    Raises ``Truncated`` when a header runs past the end, and
    :class:`ParameterProblem` (code 1, pointing at the offending next-header
    field) for a Hop-by-Hop header anywhere but first (RFC 8200 4.1; Linux
    ``ipv6_parse_hopopts`` is only called for the first header).
    """
    mv = as_view(buf)
    headers: list[ExtHeader] = []
    proto, off, pointer = first, 0, -1
    while proto in EXTENSION_PROTOCOLS:
        if proto == IPPROTO_HOPOPTS and off != 0:
            raise ParameterProblem("ipv6: Hop-by-Hop header not first", code=1,
                                   pointer=pointer)
        rest = mv[off:]
        ext: ExtHeaderRepr
        if proto == IPPROTO_FRAGMENT:
            fview = FragmentView.checked(rest)
            ext = FragmentRepr.parse(fview)
            headers.append(ExtHeader(proto, off, ext))
            return ExtChain(tuple(headers), ext.next_header, off + FRAGMENT_HEADER_LEN, off)
        view = ExtHeaderView.checked(rest)
        if proto == IPPROTO_ROUTING:
            ext = RoutingRepr.parse(view)
        elif proto == IPPROTO_HOPOPTS:
            ext = HopByHopRepr.parse(view)
        else:
            ext = DestOptsRepr.parse(view)
        headers.append(ExtHeader(proto, off, ext))
        pointer = off
        proto = view.next_header
        off += view.header_len
    return ExtChain(tuple(headers), proto, off, pointer)
