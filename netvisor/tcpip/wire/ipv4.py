"""IPv4 headers (RFC 791), options (RFC 791 3.1), header checksum (RFC 1071).

The view checks lengths only: IHL >= 5, IHL and total length within the
buffer, total length >= IHL. Bytes past the total length (Ethernet padding)
are ignored: ``payload`` stops at the total length. The repr checks meaning:
version 4, header checksum (unless asked not to), well-formed options.

Departure: the reserved flag bit (RFC 791 "bit 0, must be zero"; RFC 3514's
"evil bit") is ignored on parse and written as 0, as Linux does.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

from netvisor.tcpip.errors import MalformedPacket, Truncated
from netvisor.tcpip.wire import checksum as _csum
from netvisor.tcpip.wire._util import ReadableBuffer, WritableBuffer, as_view, check_room
from netvisor.tcpip.wire.ip import (  # re-exported for callers of this module
    IPPROTO_ICMP,
    IPPROTO_IGMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
)

__all__ = [
    "HEADER_LEN",
    "IPPROTO_ICMP",
    "IPPROTO_IGMP",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "MAX_HEADER_LEN",
    "OPT_EOL",
    "OPT_LSRR",
    "OPT_NOP",
    "OPT_RA",
    "OPT_RR",
    "OPT_SSRR",
    "OPT_TS",
    "IPv4Repr",
    "IPv4View",
    "build_options",
    "parse_options",
]

HEADER_LEN: Final = 20
MAX_HEADER_LEN: Final = 60
MAX_PACKET_LEN: Final = 65535

_FIXED: Final = struct.Struct("!BBHHHBBHII")
"""The 20-byte fixed header in one unpack (version/IHL .. destination)."""

FLAG_DF: Final = 0x4000
FLAG_MF: Final = 0x2000
_OFFSET_MASK: Final = 0x1FFF

# Option types (IANA "IP Option Numbers"): copy bit | class | number.
OPT_EOL: Final = 0
OPT_NOP: Final = 1
OPT_RR: Final = 7          # Record Route
OPT_TS: Final = 68         # Timestamp
OPT_LSRR: Final = 131      # Loose Source and Record Route
OPT_SSRR: Final = 137      # Strict Source and Record Route
OPT_RA: Final = 148        # Router Alert (RFC 2113)


def parse_options(raw: ReadableBuffer) -> list[tuple[int, bytes]]:
    """Options as ``[(type, data), ...]`` (data without the type/length bytes).

    NOP and EOL are padding and do not appear in the list; parsing stops at
    EOL (RFC 791: "the end of the option list"). A length byte < 2 or running
    past the header raises ``MalformedPacket`` (Linux ip_options_compile
    answers such packets with a parameter problem; here the caller decides).
    """
    out: list[tuple[int, bytes]] = []
    mv = as_view(raw)
    i, n = 0, len(mv)
    while i < n:
        kind = mv[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            raise Truncated(f"ipv4 option {kind}: no length byte")
        length = mv[i + 1]
        if length < 2:
            raise MalformedPacket(f"ipv4 option {kind}: length {length} < 2")
        if i + length > n:
            raise Truncated(f"ipv4 option {kind}: length {length} runs past the header")
        out.append((kind, bytes(mv[i + 2:i + length])))
        i += length
    return out


def build_options(options: list[tuple[int, bytes]] | tuple[tuple[int, bytes], ...]) -> bytes:
    """Encode ``(type, data)`` options, padded with EOL to a multiple of 4 bytes."""
    out = bytearray()
    for kind, data in options:
        if kind in (OPT_EOL, OPT_NOP):
            out.append(kind)
            continue
        if len(data) > 253:
            raise ValueError("ipv4 option data too long")
        out += bytes((kind, len(data) + 2)) + bytes(data)
    out += b"\x00" * (-len(out) % 4)
    if len(out) > MAX_HEADER_LEN - HEADER_LEN:
        raise ValueError(f"ipv4 options: {len(out)} bytes > 40")
    return bytes(out)


class IPv4View:
    """A view over an IPv4 packet (header + payload)."""

    __slots__ = ("buf", "truncated")

    def __init__(self, buf: ReadableBuffer, *, truncated: bool = False) -> None:
        """Wrap ``buf`` without checks; prefer :meth:`checked`."""
        self.buf = as_view(buf)
        self.truncated = truncated

    @classmethod
    def checked(cls, buf: ReadableBuffer, *, allow_truncated: bool = False) -> IPv4View:
        """Wrap ``buf``; raise ``Truncated`` when IHL or total length lie.

        ``allow_truncated``: accept a total length past the end of ``buf``
        (a datagram quoted in an ICMP error, RFC 1812 4.3.2.3); ``payload``
        is then whatever is present and ``truncated`` is set.
        """
        mv = as_view(buf)
        n = len(mv)
        if n < HEADER_LEN:
            raise Truncated(f"ipv4: need {HEADER_LEN} bytes, have {n}")
        hlen = (mv[0] & 0x0F) * 4
        if hlen < HEADER_LEN:
            raise Truncated(f"ipv4: IHL {hlen // 4} < 5")
        if hlen > n:
            raise Truncated(f"ipv4: IHL says {hlen} bytes, have {n}")
        total = (mv[2] << 8) | mv[3]
        if total < hlen:
            raise Truncated(f"ipv4: total length {total} < header length {hlen}")
        truncated = False
        if total > n:
            if not allow_truncated:
                raise Truncated(f"ipv4: total length {total} > {n} bytes present")
            truncated = True
        return cls(mv, truncated=truncated)

    @property
    def version(self) -> int:
        return self.buf[0] >> 4

    @property
    def header_len(self) -> int:
        """IHL * 4."""
        return (self.buf[0] & 0x0F) * 4

    @property
    def tos(self) -> int:
        """The whole TOS byte (DSCP << 2 | ECN)."""
        return self.buf[1]

    @property
    def dscp(self) -> int:
        return self.buf[1] >> 2

    @property
    def ecn(self) -> int:
        return self.buf[1] & 3

    @property
    def total_len(self) -> int:
        return int(struct.unpack_from("!H", self.buf, 2)[0])

    @property
    def ident(self) -> int:
        return int(struct.unpack_from("!H", self.buf, 4)[0])

    @property
    def _flags_frag(self) -> int:
        return int(struct.unpack_from("!H", self.buf, 6)[0])

    @property
    def dont_fragment(self) -> bool:
        return bool(self._flags_frag & FLAG_DF)

    @property
    def more_fragments(self) -> bool:
        return bool(self._flags_frag & FLAG_MF)

    @property
    def frag_offset(self) -> int:
        """Fragment offset in bytes (the field counts 8-byte units)."""
        return (self._flags_frag & _OFFSET_MASK) * 8

    @property
    def is_fragment(self) -> bool:
        return bool(self._flags_frag & (FLAG_MF | _OFFSET_MASK))

    @property
    def ttl(self) -> int:
        return self.buf[8]

    @property
    def protocol(self) -> int:
        return self.buf[9]

    @property
    def checksum(self) -> int:
        return int(struct.unpack_from("!H", self.buf, 10)[0])

    @property
    def src(self) -> ipaddress.IPv4Address:
        return ipaddress.IPv4Address(bytes(self.buf[12:16]))

    @property
    def dst(self) -> ipaddress.IPv4Address:
        return ipaddress.IPv4Address(bytes(self.buf[16:20]))

    @property
    def options(self) -> memoryview:
        """Raw option bytes (header bytes 20..IHL*4)."""
        return self.buf[HEADER_LEN:self.header_len]

    @property
    def header(self) -> memoryview:
        return self.buf[:self.header_len]

    @property
    def payload(self) -> memoryview:
        """Bytes after the header up to the total length (or the end, if truncated)."""
        return self.buf[self.header_len:self.total_len]

    def checksum_ok(self) -> bool:
        """The header checksum verifies (RFC 1071: the header sums to 0xFFFF)."""
        return _csum.verify(self.header)

    # Setters for in-place edits of a mutable buffer (forwarding, fragmenting).
    def set_ttl(self, ttl: int) -> None:
        self.buf[8] = ttl

    def fill_checksum(self) -> None:
        """Recompute the header checksum in place."""
        struct.pack_into("!H", self.buf, 10, 0)
        struct.pack_into("!H", self.buf, 10, _csum.checksum(self.header))


@dataclass(frozen=True, slots=True)
class IPv4Repr:
    """An IPv4 header's meaning.

    ``payload_len`` is the transport length (total length - header length).
    ``frag_offset`` is in bytes and must be a multiple of 8. ``options`` are
    the raw option bytes (a multiple of 4 long, at most 40; see
    :func:`parse_options` / :func:`build_options`).
    """

    src: ipaddress.IPv4Address
    dst: ipaddress.IPv4Address
    protocol: int
    payload_len: int
    ttl: int = 64
    tos: int = 0
    ident: int = 0
    dont_fragment: bool = False
    more_fragments: bool = False
    frag_offset: int = 0
    options: bytes = b""

    @classmethod
    def parse(cls, view: IPv4View, *, verify_checksum: bool = True) -> IPv4Repr:
        """Raise ``MalformedPacket`` on version != 4, bad checksum or bad options.

        ``verify_checksum=False`` when the device already did (Frame.csum_valid).
        """
        buf = view.buf
        (vihl, tos, total, ident, flags, ttl, proto, _, src, dst) = _FIXED.unpack_from(buf, 0)
        if vihl >> 4 != 4:
            raise MalformedPacket(f"ipv4: version {vihl >> 4}")
        hlen = (vihl & 0x0F) * 4
        if verify_checksum and not _csum.verify(buf[:hlen]):
            raise MalformedPacket("ipv4: bad header checksum")
        options = b""
        if hlen > HEADER_LEN:
            options = bytes(buf[HEADER_LEN:hlen])
            parse_options(options)  # validate option lengths
        return cls(ipaddress.IPv4Address(src), ipaddress.IPv4Address(dst), proto, total - hlen,
                   ttl, tos, ident, bool(flags & FLAG_DF), bool(flags & FLAG_MF),
                   (flags & _OFFSET_MASK) * 8, options)

    @property
    def header_len(self) -> int:
        return HEADER_LEN + len(self.options)

    @property
    def buffer_len(self) -> int:
        """Header plus payload (the total length field)."""
        return self.header_len + self.payload_len

    def emit(self, buf: WritableBuffer, offset: int = 0, *, checksum: bool = True) -> int:
        """Write the header at ``buf[offset:]`` (checksum included unless told not
        to, e.g. for a NIC that offloads it); returns the header length."""
        hlen = self.header_len
        check_room(buf, offset, hlen, "ipv4")
        if len(self.options) % 4 or hlen > MAX_HEADER_LEN:
            raise ValueError("ipv4: options must be a multiple of 4 bytes, at most 40")
        if self.frag_offset % 8 or not 0 <= self.frag_offset <= _OFFSET_MASK * 8:
            raise ValueError(f"ipv4: fragment offset {self.frag_offset}")
        total = hlen + self.payload_len
        if total > MAX_PACKET_LEN:
            raise ValueError(f"ipv4: total length {total} > 65535")
        flags = ((FLAG_DF if self.dont_fragment else 0) | (FLAG_MF if self.more_fragments else 0)
                 | (self.frag_offset // 8))
        struct.pack_into("!BBHHHBBH4s4s", buf, offset, 0x40 | (hlen // 4), self.tos, total,
                         self.ident, flags, self.ttl, self.protocol, 0,
                         self.src.packed, self.dst.packed)
        if self.options:
            buf[offset + HEADER_LEN:offset + hlen] = self.options
        if checksum:
            mv = memoryview(buf)
            struct.pack_into("!H", buf, offset + 10,
                             _csum.checksum(mv[offset:offset + hlen]))
        return hlen

    def to_bytes(self, payload: ReadableBuffer = b"") -> bytes:
        """Header + ``payload`` (whose length must equal ``payload_len``)."""
        if len(payload) != self.payload_len:
            raise ValueError(f"payload is {len(payload)} bytes, repr says {self.payload_len}")
        out = bytearray(self.buffer_len)
        hlen = self.emit(out)
        out[hlen:] = payload
        return bytes(out)
