"""Ethernet II frames (IEEE 802.3 with EtherType), 802.1Q / 802.1ad tags tolerated.

A received frame may carry VLAN tags (TPID 0x8100 or 0x88A8) between the
source address and the EtherType; the view skips them, reports the inner
EtherType and keeps the tags' TCIs (``vlan_tags``) so a repr round-trips.
The FCS is never present (Linux strips it before a TAP/AF_PACKET reader).
Frames with an 802.3 length field (EtherType < 0x0600) are reported as is;
the network layer drops them as an unknown EtherType.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

from netvisor.tcpip.errors import MalformedPacket
from netvisor.tcpip.wire._util import ReadableBuffer, WritableBuffer, as_view, check_room, need

ETHERTYPE_IPV4: Final = 0x0800
ETHERTYPE_ARP: Final = 0x0806
ETHERTYPE_VLAN: Final = 0x8100   # IEEE 802.1Q C-tag
ETHERTYPE_IPV6: Final = 0x86DD
ETHERTYPE_QINQ: Final = 0x88A8   # IEEE 802.1ad S-tag
ETHERTYPE_LLDP: Final = 0x88CC

_TAG_TPIDS: Final = frozenset((ETHERTYPE_VLAN, ETHERTYPE_QINQ))

HEADER_LEN: Final = 14
VLAN_TAG_LEN: Final = 4
MAX_VLAN_TAGS: Final = 2  # QinQ; more is nonsense on a host link and is refused
MIN_FRAME_LEN: Final = 60  # without FCS; shorter frames are padded on the wire

BROADCAST: Final = b"\xff" * 6
ZERO_MAC: Final = b"\x00" * 6


def mac_to_str(mac: bytes) -> str:
    """``aa:bb:cc:dd:ee:ff``."""
    return ":".join(f"{b:02x}" for b in mac)


def mac_from_str(text: str) -> bytes:
    """Parse ``aa:bb:cc:dd:ee:ff`` (or with ``-``); raises ValueError."""
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6:
        raise ValueError(f"not a MAC address: {text!r}")
    return bytes(int(p, 16) for p in parts)


def is_multicast_mac(mac: bytes) -> bool:
    """Group bit set (broadcast included)."""
    return bool(mac[0] & 1)


def ipv4_multicast_mac(group: ipaddress.IPv4Address) -> bytes:
    """01:00:5e + low 23 bits of the group (RFC 1112 6.4)."""
    low = int(group) & 0x7FFFFF
    return b"\x01\x00\x5e" + low.to_bytes(3, "big")


def ipv6_multicast_mac(group: ipaddress.IPv6Address) -> bytes:
    """33:33 + low 32 bits of the group (RFC 2464 7)."""
    return b"\x33\x33" + group.packed[12:]


class EthernetView:
    """A view over an Ethernet frame; accessors read the buffer, nothing is copied."""

    __slots__ = ("_hlen", "buf")

    def __init__(self, buf: ReadableBuffer) -> None:
        """Wrap ``buf`` without checks; prefer :meth:`checked`."""
        self.buf = as_view(buf)
        self._hlen = self._scan_header_len()

    def _scan_header_len(self) -> int:
        hlen = HEADER_LEN
        tags = 0
        b = self.buf
        while len(b) >= hlen and ((b[hlen - 2] << 8) | b[hlen - 1]) in _TAG_TPIDS:
            tags += 1
            if tags > MAX_VLAN_TAGS:
                break
            hlen += VLAN_TAG_LEN
        return hlen

    @classmethod
    def checked(cls, buf: ReadableBuffer) -> EthernetView:
        """Wrap ``buf``; raise ``Truncated`` if the header (with tags) is not all there."""
        need(buf, HEADER_LEN, "ethernet")
        view = cls(buf)
        need(view.buf, view._hlen, "ethernet vlan tag")
        if view.ethertype in _TAG_TPIDS:
            raise MalformedPacket("ethernet: more than two VLAN tags")
        return view

    @property
    def dst(self) -> bytes:
        return bytes(self.buf[0:6])

    @property
    def src(self) -> bytes:
        return bytes(self.buf[6:12])

    @property
    def header_len(self) -> int:
        """14, plus 4 per VLAN tag."""
        return self._hlen

    @property
    def ethertype(self) -> int:
        """The EtherType after any VLAN tags."""
        h = self._hlen
        return int((self.buf[h - 2] << 8) | self.buf[h - 1])

    @property
    def vlan_tags(self) -> tuple[tuple[int, int], ...]:
        """(TPID, TCI) of each tag, outermost first."""
        out = []
        for pos in range(12, self._hlen - 2, VLAN_TAG_LEN):
            tpid, tci = struct.unpack_from("!HH", self.buf, pos)
            out.append((tpid, tci))
        return tuple(out)

    @property
    def payload(self) -> memoryview:
        """Everything after the header (may include Ethernet padding)."""
        return self.buf[self._hlen:]


@dataclass(frozen=True, slots=True)
class EthernetRepr:
    """An Ethernet II header.

    ``vlan_tags`` holds (TPID, TCI) pairs, outermost first; the stack itself
    sends untagged frames, tags are kept only so received frames round-trip.
    """

    dst: bytes
    src: bytes
    ethertype: int
    vlan_tags: tuple[tuple[int, int], ...] = ()

    @classmethod
    def parse(cls, view: EthernetView) -> EthernetRepr:
        """Fields of a checked view (Ethernet has nothing semantic to refuse)."""
        return cls(dst=view.dst, src=view.src, ethertype=view.ethertype,
                   vlan_tags=view.vlan_tags)

    @property
    def header_len(self) -> int:
        return HEADER_LEN + VLAN_TAG_LEN * len(self.vlan_tags)

    def buffer_len(self, payload_len: int = 0) -> int:
        """Bytes needed for this header plus ``payload_len`` bytes of payload."""
        return self.header_len + payload_len

    def emit(self, buf: WritableBuffer, offset: int = 0) -> int:
        """Write the header at ``buf[offset:]``; returns the header length."""
        hlen = self.header_len
        check_room(buf, offset, hlen, "ethernet")
        if len(self.dst) != 6 or len(self.src) != 6:
            raise ValueError("MAC addresses are 6 bytes")
        buf[offset:offset + 6] = self.dst
        buf[offset + 6:offset + 12] = self.src
        pos = offset + 12
        for tpid, tci in self.vlan_tags:
            struct.pack_into("!HH", buf, pos, tpid, tci)
            pos += VLAN_TAG_LEN
        struct.pack_into("!H", buf, pos, self.ethertype)
        return hlen

    def to_bytes(self, payload: ReadableBuffer = b"") -> bytes:
        """Header + payload as new bytes (no padding to 60 bytes)."""
        out = bytearray(self.header_len + len(payload))
        hlen = self.emit(out)
        out[hlen:] = payload
        return bytes(out)
