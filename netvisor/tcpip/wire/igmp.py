"""IGMP: IGMPv3 (RFC 3376), IGMPv2 (RFC 2236), IGMPv1 reports (RFC 1112).

The IGMP message is the IPv4 payload (protocol 2); its checksum covers the
message only (no pseudo-header). Query version by length and code (RFC 3376
7.1): 8 bytes with Max Resp Code 0 is IGMPv1, 8 bytes otherwise IGMPv2, 12
bytes or more IGMPv3; 9..11 bytes are refused. The IPv4-level checks (TTL 1,
Router Alert) are the caller's.

Max Resp Code and QQIC use the RFC 3376 4.1.1 / 4.1.7 encodings
(:func:`decode_code` / :func:`encode_code`); the Max Resp Time unit is 1/10 s.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

from netvisor.tcpip.errors import MalformedPacket, Truncated
from netvisor.tcpip.wire import checksum as _csum
from netvisor.tcpip.wire._util import ReadableBuffer, WritableBuffer, as_view, check_room, need

IPv4Address = ipaddress.IPv4Address

MEMBERSHIP_QUERY: Final = 0x11
V1_MEMBERSHIP_REPORT: Final = 0x12
V2_MEMBERSHIP_REPORT: Final = 0x16
V2_LEAVE_GROUP: Final = 0x17
V3_MEMBERSHIP_REPORT: Final = 0x22

ALL_SYSTEMS: Final = IPv4Address("224.0.0.1")
ALL_ROUTERS: Final = IPv4Address("224.0.0.2")
ALL_IGMPV3_ROUTERS: Final = IPv4Address("224.0.0.22")

# Group record types (RFC 3376 4.2.12).
MODE_IS_INCLUDE: Final = 1
MODE_IS_EXCLUDE: Final = 2
CHANGE_TO_INCLUDE: Final = 3
CHANGE_TO_EXCLUDE: Final = 4
ALLOW_NEW_SOURCES: Final = 5
BLOCK_OLD_SOURCES: Final = 6

V2_LEN: Final = 8
V3_QUERY_MIN_LEN: Final = 12


def decode_code(code: int) -> int:
    """8-bit Max Resp Code / QQIC -> value (RFC 3376 4.1.1, 4.1.7)."""
    if code < 0x80:
        return code
    return ((code & 0x0F) | 0x10) << (((code >> 4) & 7) + 3)


def encode_code(value: int) -> int:
    """The code whose value is the largest <= ``value``."""
    if value < 0x80:
        return value
    for exp in range(7, -1, -1):
        mant = (value >> (exp + 3)) - 0x10
        if 0 <= mant <= 0x0F:
            return 0x80 | (exp << 4) | mant
    return 0xFF


class IgmpView:
    """A view over an IGMP message (the whole IPv4 payload)."""

    __slots__ = ("buf",)

    def __init__(self, buf: ReadableBuffer) -> None:
        self.buf = as_view(buf)

    @classmethod
    def checked(cls, buf: ReadableBuffer) -> IgmpView:
        need(buf, V2_LEN, "igmp")
        return cls(buf)

    @property
    def type(self) -> int:
        return self.buf[0]

    @property
    def max_resp_code(self) -> int:
        return self.buf[1]

    @property
    def checksum(self) -> int:
        return int(struct.unpack_from("!H", self.buf, 2)[0])

    @property
    def group(self) -> IPv4Address:
        return IPv4Address(bytes(self.buf[4:8]))

    def checksum_ok(self) -> bool:
        return _csum.verify(self.buf)


def _fill(buf: WritableBuffer, offset: int, total: int, checksum: bool) -> None:
    if checksum:
        _csum.fill_checksum(buf, offset, total, offset + 2, 0, _csum.ChecksumMode.FULL)


@dataclass(frozen=True, slots=True)
class IgmpQuery:
    """Membership Query; ``group`` 0.0.0.0 = general query. ``version`` is 1, 2
    or 3 (by length and code, see the module docstring): a version 2 query
    needs ``max_resp_code`` > 0, since 0 on 8 bytes means IGMPv1."""

    max_resp_code: int
    group: IPv4Address
    version: int = 3
    suppress: bool = False
    qrv: int = 0
    qqic: int = 0
    sources: tuple[IPv4Address, ...] = ()

    type = MEMBERSHIP_QUERY

    @property
    def max_resp_time(self) -> float:
        """Seconds (IGMPv1: 10 s, RFC 2236 4)."""
        if self.version == 1:
            return 10.0
        return (decode_code(self.max_resp_code) if self.version == 3 else self.max_resp_code) / 10

    @property
    def buffer_len(self) -> int:
        return V3_QUERY_MIN_LEN + 4 * len(self.sources) if self.version == 3 else V2_LEN

    def emit(self, buf: WritableBuffer, offset: int = 0, *, checksum: bool = True) -> int:
        total = self.buffer_len
        check_room(buf, offset, total, "igmp query")
        code = 0 if self.version == 1 else self.max_resp_code
        struct.pack_into("!BBH4s", buf, offset, MEMBERSHIP_QUERY, code, 0, self.group.packed)
        if self.version == 3:
            if not 0 <= self.qrv <= 7:
                raise ValueError(f"igmp: QRV {self.qrv}")
            struct.pack_into("!BBH", buf, offset + 8, (8 if self.suppress else 0) | self.qrv,
                             self.qqic, len(self.sources))
            for i, s in enumerate(self.sources):
                buf[offset + 12 + 4 * i:offset + 16 + 4 * i] = s.packed
        _fill(buf, offset, total, checksum)
        return total

    def to_bytes(self) -> bytes:
        out = bytearray(self.buffer_len)
        self.emit(out)
        return bytes(out)


@dataclass(frozen=True, slots=True)
class IgmpV2Message:
    """IGMPv1/v2 Membership Report (0x12 / 0x16) or v2 Leave Group (0x17)."""

    type: int
    group: IPv4Address
    max_resp_code: int = 0

    @property
    def buffer_len(self) -> int:
        return V2_LEN

    def emit(self, buf: WritableBuffer, offset: int = 0, *, checksum: bool = True) -> int:
        if self.type not in (V1_MEMBERSHIP_REPORT, V2_MEMBERSHIP_REPORT, V2_LEAVE_GROUP):
            raise ValueError(f"igmp v2: type {self.type:#x}")
        check_room(buf, offset, V2_LEN, "igmp")
        struct.pack_into("!BBH4s", buf, offset, self.type, self.max_resp_code, 0,
                         self.group.packed)
        _fill(buf, offset, V2_LEN, checksum)
        return V2_LEN

    def to_bytes(self) -> bytes:
        out = bytearray(V2_LEN)
        self.emit(out)
        return bytes(out)


@dataclass(frozen=True, slots=True)
class IgmpRecord:
    """Group Record of an IGMPv3 report (RFC 3376 4.2.4); ``aux_data`` a
    multiple of 4 bytes."""

    record_type: int
    group: IPv4Address
    sources: tuple[IPv4Address, ...] = ()
    aux_data: bytes = b""

    @property
    def buffer_len(self) -> int:
        return 8 + 4 * len(self.sources) + len(self.aux_data)


@dataclass(frozen=True, slots=True)
class IgmpV3Report:
    """IGMPv3 Membership Report (RFC 3376 4.2), sent to 224.0.0.22."""

    records: tuple[IgmpRecord, ...] = ()

    type = V3_MEMBERSHIP_REPORT

    @property
    def buffer_len(self) -> int:
        return 8 + sum(r.buffer_len for r in self.records)

    def emit(self, buf: WritableBuffer, offset: int = 0, *, checksum: bool = True) -> int:
        total = self.buffer_len
        check_room(buf, offset, total, "igmp v3 report")
        struct.pack_into("!BBHHH", buf, offset, V3_MEMBERSHIP_REPORT, 0, 0, 0, len(self.records))
        pos = offset + 8
        for r in self.records:
            if len(r.aux_data) % 4:
                raise ValueError("igmp: aux data must be a multiple of 4 bytes")
            struct.pack_into("!BBH4s", buf, pos, r.record_type, len(r.aux_data) // 4,
                             len(r.sources), r.group.packed)
            pos += 8
            for s in r.sources:
                buf[pos:pos + 4] = s.packed
                pos += 4
            buf[pos:pos + len(r.aux_data)] = r.aux_data
            pos += len(r.aux_data)
        _fill(buf, offset, total, checksum)
        return total

    def to_bytes(self) -> bytes:
        out = bytearray(self.buffer_len)
        self.emit(out)
        return bytes(out)


IgmpRepr = IgmpQuery | IgmpV2Message | IgmpV3Report


def _sources(buf: memoryview, pos: int, count: int) -> tuple[IPv4Address, ...]:
    end = pos + 4 * count
    if end > len(buf):
        raise Truncated(f"igmp: {count} sources need {end - pos} bytes")
    return tuple(IPv4Address(bytes(buf[i:i + 4])) for i in range(pos, end, 4))


def parse_igmp(view: IgmpView, *, verify_checksum: bool = True) -> IgmpRepr:
    """Parse an IGMP message; ``MalformedPacket`` on a bad checksum (when
    asked), an unknown type, a 9..11-byte query, or sources/records past the end."""
    if verify_checksum and not view.checksum_ok():
        raise MalformedPacket("igmp: bad checksum")
    b = view.buf
    n = len(b)
    t = view.type
    if t == MEMBERSHIP_QUERY:
        code = view.max_resp_code
        if n == V2_LEN:
            return IgmpQuery(code if code else 0, view.group, version=2 if code else 1)
        if n < V3_QUERY_MIN_LEN:
            raise MalformedPacket(f"igmp query of {n} bytes (RFC 3376 7.1)")
        flags, qqic, nsrc = struct.unpack_from("!BBH", b, 8)
        return IgmpQuery(code, view.group, version=3, suppress=bool(flags & 8), qrv=flags & 7,
                         qqic=qqic, sources=_sources(b, 12, nsrc))
    if t in (V1_MEMBERSHIP_REPORT, V2_MEMBERSHIP_REPORT, V2_LEAVE_GROUP):
        return IgmpV2Message(t, view.group, view.max_resp_code)
    if t == V3_MEMBERSHIP_REPORT:
        count = int(struct.unpack_from("!H", b, 6)[0])
        records: list[IgmpRecord] = []
        pos = 8
        for _ in range(count):
            if pos + 8 > n:
                raise Truncated("igmp v3 report: record past the end")
            rtype, aux_words, nsrc = struct.unpack_from("!BBH", b, pos)
            group = IPv4Address(bytes(b[pos + 4:pos + 8]))
            sources = _sources(b, pos + 8, nsrc)
            aux_start = pos + 8 + 4 * nsrc
            aux_end = aux_start + 4 * aux_words
            if aux_end > n:
                raise Truncated("igmp v3 report: aux data past the end")
            records.append(IgmpRecord(rtype, group, sources, bytes(b[aux_start:aux_end])))
            pos = aux_end
        return IgmpV3Report(tuple(records))
    raise MalformedPacket(f"igmp: type {t:#x}")
