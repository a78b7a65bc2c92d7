"""Multicast Listener Discovery: MLDv2 (RFC 3810) and MLDv1 (RFC 2710).

Messages are ICMPv6 types 130 (query, both versions), 131/132 (MLDv1 report
and done) and 143 (MLDv2 report), parsed from an :class:`Icmpv6View`. A
query of 24 bytes is MLDv1, of 28 or more MLDv2; anything between is
refused (RFC 3810 8.1). The IPv6-level checks (link-local source, hop limit
1, Router Alert) are the caller's.

Codes: the Maximum Response Code and QQIC use the floating-point encodings
of RFC 3810 5.1.3 / 5.1.9; :func:`decode_mrc` / :func:`encode_mrc` and
:func:`decode_qqic` / :func:`encode_qqic` convert.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

from netvisor.tcpip.errors import MalformedPacket
from netvisor.tcpip.wire._util import (
    ToBytesV6,
    WritableBuffer,
    check_room,
    decode_float_code,
    emit_group_records,
    emit_query_tail,
    encode_float_code,
    parse_group_records,
    read_addresses,
)
from netvisor.tcpip.wire.checksum import ChecksumMode
from netvisor.tcpip.wire.icmpv6 import (
    MLD_DONE,
    MLD_QUERY,
    MLD_REPORT_V1,
    MLD_REPORT_V2,
    Icmpv6View,
    checksum_ok,
    fill_checksum,
)

IPv6Address = ipaddress.IPv6Address

MLDV1_LEN: Final = 24
MLDV2_QUERY_MIN_LEN: Final = 28
MLDV2_REPORT_MIN_LEN: Final = 8
ALL_MLDV2_ROUTERS: Final = IPv6Address("ff02::16")

# Multicast address record types (RFC 3810 5.2.12).
MODE_IS_INCLUDE: Final = 1
MODE_IS_EXCLUDE: Final = 2
CHANGE_TO_INCLUDE: Final = 3
CHANGE_TO_EXCLUDE: Final = 4
ALLOW_NEW_SOURCES: Final = 5
BLOCK_OLD_SOURCES: Final = 6


def decode_mrc(code: int) -> int:
    """Maximum Response Code -> Maximum Response Delay in ms (RFC 3810 5.1.3)."""
    return decode_float_code(code, 12)


def encode_mrc(delay_ms: int) -> int:
    """The code whose decoded delay is the largest <= ``delay_ms``."""
    return encode_float_code(delay_ms, 12)


def decode_qqic(code: int) -> int:
    """Querier's Query Interval Code -> seconds (RFC 3810 5.1.9)."""
    return decode_float_code(code, 4)


def encode_qqic(seconds: int) -> int:
    """The code whose decoded interval is the largest <= ``seconds``."""
    return encode_float_code(seconds, 4)


def _check(view: Icmpv6View, src: IPv6Address | None, dst: IPv6Address | None,
           verify_checksum: bool) -> None:
    if verify_checksum:
        if src is None or dst is None:
            raise TypeError("mld: verifying the checksum needs src and dst")
        if not checksum_ok(view.buf, src, dst):
            raise MalformedPacket("mld: bad checksum")


def _sources(buf: memoryview, pos: int, count: int) -> tuple[IPv6Address, ...]:
    return read_addresses(buf, pos, count, 16, IPv6Address, "mld")


@dataclass(frozen=True, slots=True)
class MldQuery(ToBytesV6):
    """Multicast Listener Query; ``group`` :: = general query.

    MLDv1 queries (``v2=False``) have no S/QRV/QQIC/sources; for them
    ``max_resp_code`` is the plain delay in ms (RFC 2710 3.4).
    """

    max_resp_code: int
    group: IPv6Address
    v2: bool = True
    suppress: bool = False
    qrv: int = 0
    qqic: int = 0
    sources: tuple[IPv6Address, ...] = ()

    type = MLD_QUERY

    @property
    def max_resp_delay_ms(self) -> int:
        return decode_mrc(self.max_resp_code) if self.v2 else self.max_resp_code

    @property
    def query_interval(self) -> int:
        """Seconds (QQIC decoded; 0 = use the default)."""
        return decode_qqic(self.qqic)

    @property
    def buffer_len(self) -> int:
        return MLDV2_QUERY_MIN_LEN + 16 * len(self.sources) if self.v2 else MLDV1_LEN

    def emit(self, buf: WritableBuffer, offset: int = 0, *, src: IPv6Address, dst: IPv6Address,
             checksum: ChecksumMode | str = ChecksumMode.FULL) -> int:
        total = self.buffer_len
        check_room(buf, offset, total, "mld query")
        struct.pack_into("!BBHHH16s", buf, offset, MLD_QUERY, 0, 0, self.max_resp_code, 0,
                         self.group.packed)
        if self.v2:
            emit_query_tail(buf, offset + 24, self.suppress, self.qrv, self.qqic, self.sources,
                            16, "mld")
        fill_checksum(buf, offset, total, src, dst, checksum)
        return total


@dataclass(frozen=True, slots=True)
class MldV1Message(ToBytesV6):
    """MLDv1 Report (131) or Done (132) (RFC 2710 3)."""

    type: int
    group: IPv6Address
    max_delay: int = 0

    @property
    def buffer_len(self) -> int:
        return MLDV1_LEN

    def emit(self, buf: WritableBuffer, offset: int = 0, *, src: IPv6Address, dst: IPv6Address,
             checksum: ChecksumMode | str = ChecksumMode.FULL) -> int:
        if self.type not in (MLD_REPORT_V1, MLD_DONE):
            raise ValueError(f"mld v1: type {self.type}")
        check_room(buf, offset, MLDV1_LEN, "mld v1")
        struct.pack_into("!BBHHH16s", buf, offset, self.type, 0, 0, self.max_delay, 0,
                         self.group.packed)
        fill_checksum(buf, offset, MLDV1_LEN, src, dst, checksum)
        return MLDV1_LEN


@dataclass(frozen=True, slots=True)
class MldRecord:
    """Multicast Address Record of an MLDv2 report (RFC 3810 5.2.4);
    ``aux_data`` is a multiple of 4 bytes."""

    record_type: int
    group: IPv6Address
    sources: tuple[IPv6Address, ...] = ()
    aux_data: bytes = b""

    @property
    def buffer_len(self) -> int:
        return 20 + 16 * len(self.sources) + len(self.aux_data)


@dataclass(frozen=True, slots=True)
class MldV2Report(ToBytesV6):
    """MLDv2 Listener Report (RFC 3810 5.2), sent to ff02::16."""

    records: tuple[MldRecord, ...] = ()

    type = MLD_REPORT_V2

    @property
    def buffer_len(self) -> int:
        return 8 + sum(r.buffer_len for r in self.records)

    def emit(self, buf: WritableBuffer, offset: int = 0, *, src: IPv6Address, dst: IPv6Address,
             checksum: ChecksumMode | str = ChecksumMode.FULL) -> int:
        total = self.buffer_len
        check_room(buf, offset, total, "mld v2 report")
        struct.pack_into("!BBHHH", buf, offset, MLD_REPORT_V2, 0, 0, 0, len(self.records))
        emit_group_records(buf, offset + 8, self.records, 16, "mld")
        fill_checksum(buf, offset, total, src, dst, checksum)
        return total


MldRepr = MldQuery | MldV1Message | MldV2Report
MLD_TYPES: Final = frozenset((MLD_QUERY, MLD_REPORT_V1, MLD_DONE, MLD_REPORT_V2))


def parse_mld(view: Icmpv6View, *, src: IPv6Address | None = None,
              dst: IPv6Address | None = None, verify_checksum: bool = True) -> MldRepr:
    """Parse an MLD message; ``MalformedPacket`` for another ICMPv6 type, a bad
    checksum (when asked), a bad length, or sources/records past the end."""
    _check(view, src, dst, verify_checksum)
    b = view.buf
    t = view.type
    if t not in MLD_TYPES:
        raise MalformedPacket(f"mld: ICMPv6 type {t} is not MLD")
    n = len(b)
    if t == MLD_REPORT_V2:
        if n < MLDV2_REPORT_MIN_LEN:
            raise MalformedPacket(f"mld v2 report of {n} bytes")
        count = int(struct.unpack_from("!H", b, 6)[0])
        records = parse_group_records(b, count, 16, IPv6Address, MldRecord, "mld", 2)
        return MldV2Report(tuple(records))
    if n < MLDV1_LEN:
        raise MalformedPacket(f"mld type {t}: {n} bytes < 24")
    code = int(struct.unpack_from("!H", b, 4)[0])
    group = IPv6Address(bytes(b[8:24]))
    if t != MLD_QUERY:
        return MldV1Message(t, group, code)
    if n == MLDV1_LEN:
        return MldQuery(code, group, v2=False)
    if n < MLDV2_QUERY_MIN_LEN:
        raise MalformedPacket(f"mld query of {n} bytes (RFC 3810 8.1)")
    flags, qqic, nsrc = struct.unpack_from("!BBH", b, 24)
    return MldQuery(code, group, v2=True, suppress=bool(flags & 8), qrv=flags & 7, qqic=qqic,
                    sources=_sources(b, 28, nsrc))
