"""ARP for IPv4 over Ethernet (RFC 826).

Only hardware type 1 (Ethernet, 6-byte addresses) and protocol type 0x0800
(IPv4, 4-byte addresses) have meaning for the stack; the view reads any
hardware/protocol lengths, the repr refuses other combinations.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

from netvisor.tcpip.errors import MalformedPacket, Truncated
from netvisor.tcpip.wire._util import (
    BufferView,
    ReadableBuffer,
    WritableBuffer,
    check_room,
    need,
)

HTYPE_ETHERNET: Final = 1
PTYPE_IPV4: Final = 0x0800
OP_REQUEST: Final = 1
OP_REPLY: Final = 2
HEADER_LEN: Final = 28  # Ethernet/IPv4 ARP packet


class ArpView(BufferView):
    """A view over an ARP packet."""

    __slots__ = ()

    @classmethod
    def checked(cls, buf: ReadableBuffer) -> ArpView:
        """Raise ``Truncated`` unless the fixed part and all four addresses are present."""
        need(buf, 8, "arp")
        view = cls(buf)
        if len(view.buf) < view.packet_len:
            raise Truncated(f"arp: addresses need {view.packet_len} bytes, have {len(view.buf)}")
        return view

    @property
    def htype(self) -> int:
        return int(struct.unpack_from("!H", self.buf, 0)[0])

    @property
    def ptype(self) -> int:
        return int(struct.unpack_from("!H", self.buf, 2)[0])

    @property
    def hlen(self) -> int:
        return self.buf[4]

    @property
    def plen(self) -> int:
        return self.buf[5]

    @property
    def operation(self) -> int:
        return int(struct.unpack_from("!H", self.buf, 6)[0])

    @property
    def packet_len(self) -> int:
        """8 + 2 * (hlen + plen)."""
        return 8 + 2 * (self.hlen + self.plen)

    def _field(self, index: int) -> memoryview:
        h, p = self.hlen, self.plen
        starts = (8, 8 + h, 8 + h + p, 8 + 2 * h + p)
        lens = (h, p, h, p)
        return self.buf[starts[index]:starts[index] + lens[index]]

    @property
    def sender_hw(self) -> bytes:
        return bytes(self._field(0))

    @property
    def sender_proto(self) -> bytes:
        return bytes(self._field(1))

    @property
    def target_hw(self) -> bytes:
        return bytes(self._field(2))

    @property
    def target_proto(self) -> bytes:
        return bytes(self._field(3))


@dataclass(frozen=True, slots=True)
class ArpRepr:
    """An Ethernet/IPv4 ARP packet."""

    operation: int
    sender_mac: bytes
    sender_ip: ipaddress.IPv4Address
    target_mac: bytes
    target_ip: ipaddress.IPv4Address

    @classmethod
    def parse(cls, view: ArpView) -> ArpRepr:
        """Raise ``MalformedPacket`` unless Ethernet/IPv4 with 6/4-byte addresses."""
        if (view.htype, view.ptype, view.hlen, view.plen) != (HTYPE_ETHERNET, PTYPE_IPV4, 6, 4):
            raise MalformedPacket(
                f"arp: unsupported htype={view.htype} ptype={view.ptype:#x} "
                f"hlen={view.hlen} plen={view.plen}")
        return cls(operation=view.operation,
                   sender_mac=view.sender_hw,
                   sender_ip=ipaddress.IPv4Address(view.sender_proto),
                   target_mac=view.target_hw,
                   target_ip=ipaddress.IPv4Address(view.target_proto))

    @property
    def header_len(self) -> int:
        return HEADER_LEN

    buffer_len = header_len

    def emit(self, buf: WritableBuffer, offset: int = 0) -> int:
        """Write the 28-byte packet at ``buf[offset:]``; returns 28."""
        check_room(buf, offset, HEADER_LEN, "arp")
        if len(self.sender_mac) != 6 or len(self.target_mac) != 6:
            raise ValueError("arp: MAC addresses are 6 bytes")
        struct.pack_into("!HHBBH6s4s6s4s", buf, offset, HTYPE_ETHERNET, PTYPE_IPV4, 6, 4,
                         self.operation, self.sender_mac, self.sender_ip.packed,
                         self.target_mac, self.target_ip.packed)
        return HEADER_LEN

    def to_bytes(self) -> bytes:
        out = bytearray(HEADER_LEN)
        self.emit(out)
        return bytes(out)
