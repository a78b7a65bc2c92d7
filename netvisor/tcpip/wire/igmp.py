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

from netvisor.tcpip.errors import MalformedPacket
from netvisor.tcpip.wire import checksum as _csum
from netvisor.tcpip.wire._util import (
    BufferView,
    ReadableBuffer,
    ToBytes,
    WritableBuffer,
    check_room,
    decode_float_code,
    emit_group_records,
    emit_query_tail,
    encode_float_code,
    need,
    parse_group_records,
    read_addresses,
)

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
    return decode_float_code(code, 4)


def encode_code(value: int) -> int:
    """The code whose value is the largest <= ``value``."""
    return encode_float_code(value, 4)


class IgmpView(BufferView):
    """A view over an IGMP message (the whole IPv4 payload)."""

    __slots__ = ()

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
class IgmpQuery(ToBytes):
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
            emit_query_tail(buf, offset + 8, self.suppress, self.qrv, self.qqic, self.sources,
                            4, "igmp")
        _fill(buf, offset, total, checksum)
        return total


@dataclass(frozen=True, slots=True)
class IgmpV2Message(ToBytes):
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
class IgmpV3Report(ToBytes):
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
        emit_group_records(buf, offset + 8, self.records, 4, "igmp")
        _fill(buf, offset, total, checksum)
        return total


IgmpRepr = IgmpQuery | IgmpV2Message | IgmpV3Report


def _sources(buf: memoryview, pos: int, count: int) -> tuple[IPv4Address, ...]:
    return read_addresses(buf, pos, count, 4, IPv4Address, "igmp")


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
        records = parse_group_records(b, count, 4, IPv4Address, IgmpRecord, "igmp", 3)
        return IgmpV3Report(tuple(records))
    raise MalformedPacket(f"igmp: type {t:#x}")
