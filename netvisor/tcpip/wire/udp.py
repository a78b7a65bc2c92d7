"""UDP (RFC 768; checksum over IPv6 per RFC 8200 8.1).

The view bounds the payload by the UDP length field (>= 8, within the
buffer); bytes past it are ignored, as Linux does (it trims the skb to the
UDP length). Checksum rules: over IPv4 a 0 checksum means "none" and a
computed 0 is sent as 0xFFFF (RFC 768); over IPv6 a 0 checksum is invalid
(RFC 8200 8.1; RFC 6935/6936 zero-checksum tunnels are not supported).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

from netvisor.tcpip.errors import MalformedPacket, Truncated
from netvisor.tcpip.wire import checksum as _csum
from netvisor.tcpip.wire._util import (
    BufferView,
    ReadableBuffer,
    WritableBuffer,
    as_view,
    check_room,
)
from netvisor.tcpip.wire.checksum import ChecksumMode
from netvisor.tcpip.wire.ip import IPPROTO_UDP

__all__ = ["CHECKSUM_OFFSET", "HEADER_LEN", "ChecksumMode", "UdpRepr", "UdpView"]

HEADER_LEN: Final = 8
_FIXED: Final = struct.Struct("!HHHH")
CHECKSUM_OFFSET: Final = 6
"""Offset of the checksum field from the UDP header (virtio csum_offset)."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UdpView(BufferView):
    """A view over a UDP datagram."""

    __slots__ = ()

    @classmethod
    def checked(cls, buf: ReadableBuffer) -> UdpView:
        """Raise ``Truncated`` if shorter than 8 bytes or if the length field lies."""
        mv = as_view(buf)
        n = len(mv)
        if n < HEADER_LEN:
            raise Truncated(f"udp: need {HEADER_LEN} bytes, have {n}")
        length = (mv[4] << 8) | mv[5]
        if length < HEADER_LEN:
            raise Truncated(f"udp: length field {length} < 8")
        if length > n:
            raise Truncated(f"udp: length field {length} > {n} bytes present")
        return cls(mv)

    @property
    def src_port(self) -> int:
        return int(struct.unpack_from("!H", self.buf, 0)[0])

    @property
    def dst_port(self) -> int:
        return int(struct.unpack_from("!H", self.buf, 2)[0])

    @property
    def length(self) -> int:
        return int(struct.unpack_from("!H", self.buf, 4)[0])

    @property
    def checksum(self) -> int:
        return int(struct.unpack_from("!H", self.buf, 6)[0])

    @property
    def datagram(self) -> memoryview:
        """Header + payload, bounded by the length field."""
        return self.buf[:self.length]

    @property
    def payload(self) -> memoryview:
        return self.buf[HEADER_LEN:self.length]

    def checksum_ok(self, src: IPAddress, dst: IPAddress) -> bool:
        """Checksum verifies with the pseudo-header; 0 counts as OK only over IPv4."""
        if self.checksum == 0:
            return src.version == 4
        pseudo = _csum.pseudo_header_sum(src, dst, IPPROTO_UDP, self.length)
        return _csum.verify(self.datagram, pseudo)


@dataclass(frozen=True, slots=True)
class UdpRepr:
    """A UDP header's meaning; ``payload_len`` excludes the 8-byte header."""

    src_port: int
    dst_port: int
    payload_len: int

    @classmethod
    def parse(cls, view: UdpView, *, src: IPAddress | None = None, dst: IPAddress | None = None,
              verify_checksum: bool = True) -> UdpRepr:
        """Raise ``MalformedPacket`` on a bad checksum (when asked; needs src/dst)
        or a zero checksum over IPv6."""
        sport, dport, length, csum = _FIXED.unpack_from(view.buf, 0)
        if verify_checksum:
            if src is None or dst is None:
                raise TypeError("udp: verifying the checksum needs src and dst")
            if csum == 0:
                if src.version != 4:
                    raise MalformedPacket("udp: zero checksum over IPv6")
            elif not _csum.verify(view.buf[:length],
                                  _csum.pseudo_header_sum(src, dst, IPPROTO_UDP, length)):
                raise MalformedPacket("udp: bad checksum")
        return cls(sport, dport, length - HEADER_LEN)

    @property
    def header_len(self) -> int:
        return HEADER_LEN

    @property
    def buffer_len(self) -> int:
        return HEADER_LEN + self.payload_len

    def emit(self, buf: WritableBuffer, offset: int = 0, *, src: IPAddress, dst: IPAddress,
             payload: ReadableBuffer | None = None,
             checksum: ChecksumMode | str = ChecksumMode.FULL) -> int:
        """Write the header at ``buf[offset:]`` and fill the checksum; returns 8.

        ``payload`` is copied after the header when given; otherwise the caller
        already put ``payload_len`` bytes there (zero-copy). ``checksum``:
        FULL computes it (0 sent as 0xFFFF), PARTIAL writes the pseudo-header
        sum for the NIC (field at ``offset + CHECKSUM_OFFSET``), NONE writes 0
        (IPv4 only).
        """
        total = HEADER_LEN + self.payload_len
        check_room(buf, offset, total, "udp")
        if total > 0xFFFF:
            raise ValueError(f"udp: datagram of {total} bytes")
        if checksum == ChecksumMode.NONE and src.version == 6:
            raise ValueError("udp: a zero checksum is invalid over IPv6 (RFC 8200 8.1)")
        struct.pack_into("!HHHH", buf, offset, self.src_port, self.dst_port, total, 0)
        if payload is not None:
            if len(payload) != self.payload_len:
                raise ValueError(f"payload is {len(payload)} bytes, repr says {self.payload_len}")
            buf[offset + HEADER_LEN:offset + total] = payload
        pseudo = _csum.pseudo_header_sum(src, dst, IPPROTO_UDP, total)
        _csum.fill_checksum(buf, offset, total, offset + CHECKSUM_OFFSET, pseudo, checksum,
                            zero_is_ffff=True)
        return HEADER_LEN

    def to_bytes(self, payload: ReadableBuffer, *, src: IPAddress, dst: IPAddress,
                 checksum: ChecksumMode | str = ChecksumMode.FULL) -> bytes:
        """Header + payload as new bytes."""
        out = bytearray(self.buffer_len)
        self.emit(out, src=src, dst=dst, payload=payload, checksum=checksum)
        return bytes(out)
