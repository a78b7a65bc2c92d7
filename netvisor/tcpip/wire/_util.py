"""Small helpers shared by the wire modules (buffer types, bounds checks, and
the IGMPv3/MLDv2 encodings the two protocols share).

Not public API: each protocol module re-exports what callers need.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, TypeAlias, TypeVar

from netvisor.tcpip.errors import Truncated

ReadableBuffer: TypeAlias = bytes | bytearray | memoryview
"""Anything a view can wrap (parsing never copies it)."""

WritableBuffer: TypeAlias = bytearray | memoryview
"""A caller-provided buffer that ``emit`` writes into."""


def as_view(buf: ReadableBuffer) -> memoryview:
    """``buf`` as a flat unsigned-byte memoryview (no copy)."""
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    return mv


def need(buf: ReadableBuffer, length: int, what: str) -> None:
    """Raise :class:`Truncated` unless ``buf`` holds at least ``length`` bytes."""
    if len(buf) < length:
        raise Truncated(f"{what}: need {length} bytes, have {len(buf)}")


def check_room(buf: WritableBuffer, offset: int, length: int, what: str) -> None:
    """Raise ValueError when ``buf[offset:offset+length]`` does not fit (caller bug)."""
    if offset < 0 or offset + length > len(buf):
        raise ValueError(f"{what}: buffer of {len(buf)} bytes too small for "
                         f"{length} bytes at offset {offset}")


# -- IGMPv3 / MLDv2 (RFC 3376 is RFC 3810 with 4-byte addresses) ---------------

def decode_float_code(code: int, mant_bits: int) -> int:
    """A floating-point code -> value: below ``1 << (mant_bits + 3)`` the code is
    the value, above it ``1|exp(3)|mant(mant_bits)`` means ``(0x1 mant) << (exp + 3)``.
    IGMPv3 Max Resp Code/QQIC and MLDv2 QQIC use 4 mantissa bits (RFC 3376
    4.1.1, 4.1.7; RFC 3810 5.1.9), MLDv2's Maximum Response Code 12 (5.1.3)."""
    if code < 1 << (mant_bits + 3):
        return code
    mask = (1 << mant_bits) - 1
    return ((code & mask) | (1 << mant_bits)) << (((code >> mant_bits) & 7) + 3)


def encode_float_code(value: int, mant_bits: int) -> int:
    """The code (see :func:`decode_float_code`) whose value is the largest <= ``value``."""
    top = 1 << (mant_bits + 3)
    if value < top:
        return value
    implicit = 1 << mant_bits
    for exp in range(7, -1, -1):
        mant = (value >> (exp + 3)) - implicit
        if 0 <= mant < implicit:
            return top | (exp << mant_bits) | mant
    return (top << 1) - 1


A = TypeVar("A")


def read_addresses(buf: memoryview, pos: int, count: int, width: int,
                   make: Callable[[bytes], A], what: str) -> tuple[A, ...]:
    """``count`` addresses of ``width`` bytes from ``pos``; Truncated past the end."""
    end = pos + width * count
    if end > len(buf):
        raise Truncated(f"{what}: {count} sources need {end - pos} bytes")
    return tuple(make(bytes(buf[i:i + width])) for i in range(pos, end, width))


class GroupRecord(Protocol):
    """An IGMPv3 Group Record / MLDv2 Multicast Address Record."""

    @property
    def record_type(self) -> int: ...
    @property
    def group(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address: ...
    @property
    def sources(self) -> Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address]: ...
    @property
    def aux_data(self) -> bytes: ...


def emit_group_records(buf: WritableBuffer, pos: int, records: Iterable[GroupRecord],
                       width: int, what: str) -> int:
    """Write the records of a v3/v2 report from ``pos``; return the end offset
    (type, aux words, source count, group, sources, aux data: RFC 3376 4.2.4,
    RFC 3810 5.2.4)."""
    fmt = f"!BBH{width}s"
    for r in records:
        if len(r.aux_data) % 4:
            raise ValueError(f"{what}: aux data must be a multiple of 4 bytes")
        struct.pack_into(fmt, buf, pos, r.record_type, len(r.aux_data) // 4,
                         len(r.sources), r.group.packed)
        pos += 4 + width
        for s in r.sources:
            buf[pos:pos + width] = s.packed
            pos += width
        buf[pos:pos + len(r.aux_data)] = r.aux_data
        pos += len(r.aux_data)
    return pos


R = TypeVar("R")


def parse_group_records(b: memoryview, count: int, width: int, make_addr: Callable[[bytes], A],
                        make_record: Callable[[int, A, tuple[A, ...], bytes], R],
                        proto: str, version: int) -> list[R]:
    """The ``count`` records of a report (``proto`` "igmp" v3 / "mld" v2) starting
    at byte 8; Truncated when a record, its sources or its aux data run past the end."""
    what = f"{proto} v{version} report"
    n = len(b)
    records: list[R] = []
    pos = 8
    for _ in range(count):
        if pos + 4 + width > n:
            raise Truncated(f"{what}: record past the end")
        rtype, aux_words, nsrc = struct.unpack_from("!BBH", b, pos)
        group = make_addr(bytes(b[pos + 4:pos + 4 + width]))
        sources = read_addresses(b, pos + 4 + width, nsrc, width, make_addr, proto)
        aux_start = pos + 4 + width + width * nsrc
        aux_end = aux_start + 4 * aux_words
        if aux_end > n:
            raise Truncated(f"{what}: aux data past the end")
        records.append(make_record(rtype, group, sources, bytes(b[aux_start:aux_end])))
        pos = aux_end
    return records


def emit_query_tail(buf: WritableBuffer, pos: int, suppress: bool, qrv: int, qqic: int,
                    sources: Sequence[ipaddress.IPv4Address | ipaddress.IPv6Address],
                    width: int, what: str) -> None:
    """S flag, QRV, QQIC, source count and sources of an IGMPv3/MLDv2 query."""
    if not 0 <= qrv <= 7:
        raise ValueError(f"{what}: QRV {qrv}")
    struct.pack_into("!BBH", buf, pos, (8 if suppress else 0) | qrv, qqic, len(sources))
    pos += 4
    for i, s in enumerate(sources):
        buf[pos + width * i:pos + width * (i + 1)] = s.packed


# -- to_bytes for message reprs -----------------------------------------------

class _Emits(Protocol):
    @property
    def buffer_len(self) -> int: ...
    def emit(self, buf: WritableBuffer, offset: int = 0) -> int: ...


class _EmitsV6(Protocol):
    @property
    def buffer_len(self) -> int: ...
    def emit(self, buf: WritableBuffer, offset: int = 0, *, src: ipaddress.IPv6Address,
             dst: ipaddress.IPv6Address) -> int: ...


class ToBytes:
    """Mixin for a repr with ``buffer_len`` and ``emit(buf, offset)``: ``to_bytes()``."""

    __slots__ = ()

    def to_bytes(self: _Emits) -> bytes:
        """The message as new bytes."""
        out = bytearray(self.buffer_len)
        self.emit(out)
        return bytes(out)


class ToBytesV6:
    """Mixin for an ICMPv6 message repr (its checksum needs the addresses):
    ``to_bytes(src=, dst=)``."""

    __slots__ = ()

    def to_bytes(self: _EmitsV6, *, src: ipaddress.IPv6Address,
                 dst: ipaddress.IPv6Address) -> bytes:
        """The message as new bytes, checksum filled for ``src`` -> ``dst``."""
        out = bytearray(self.buffer_len)
        self.emit(out, src=src, dst=dst)
        return bytes(out)


class BufferView:
    """Base of the header views that hold only their buffer (``buf``, a flat
    byte memoryview; wrapping never copies or checks: see each ``checked``)."""

    __slots__ = ("buf",)

    def __init__(self, buf: ReadableBuffer) -> None:
        self.buf = as_view(buf)


class IcmpHeaderView(BufferView):
    """The 8-byte header ICMPv6 (RFC 4443 2.1) kept from ICMPv4 (RFC 792):
    type, code, checksum, a 32-bit word whose meaning depends on the type,
    then data. Base of ``Icmpv4View`` and ``Icmpv6View``, which add length
    checks and the checksum rule (ICMPv6 covers a pseudo-header)."""

    __slots__ = ()

    @property
    def type(self) -> int:
        return self.buf[0]

    @property
    def code(self) -> int:
        return self.buf[1]

    @property
    def checksum(self) -> int:
        return int(struct.unpack_from("!H", self.buf, 2)[0])

    @property
    def rest(self) -> int:
        """The 32-bit word after the checksum."""
        return int(struct.unpack_from("!I", self.buf, 4)[0])

    @property
    def data(self) -> memoryview:
        """Bytes after the 8-byte header."""
        return self.buf[8:]
