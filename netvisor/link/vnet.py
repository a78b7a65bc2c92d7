"""``struct virtio_net_hdr`` <-> :class:`~netvisor.frame.Frame` metadata.

The header TAP (IFF_VNET_HDR) and AF_PACKET (PACKET_VNET_HDR) put in front of
every frame (include/uapi/linux/virtio_net.h)::

    u8 flags; u8 gso_type; u16 hdr_len; u16 gso_size; u16 csum_start; u16 csum_offset;

10 bytes, in the host's byte order for these legacy interfaces (little
endian on x86_64; TUNSETVNETLE/BE only matter for cross-endian guests).
"""

from __future__ import annotations

import struct
from typing import Final

from netvisor.frame import GSO_NONE, Frame

VNET_HDR_LEN: Final = 10
F_NEEDS_CSUM: Final = 1
"""VIRTIO_NET_HDR_F_NEEDS_CSUM: the checksum at csum_start+csum_offset is partial."""
F_DATA_VALID: Final = 2
"""VIRTIO_NET_HDR_F_DATA_VALID: the device verified the checksum."""

_HDR: Final = struct.Struct("<BBHHHH")
PLAIN_HDR: Final = bytes(VNET_HDR_LEN)
"""Header for a frame with nothing to offload (flags 0, GSO_NONE)."""


def parse_into_frame(buf: bytes | bytearray | memoryview, data: bytes | memoryview) -> Frame:
    """A received frame: ``buf`` starts with the header, ``data`` is the frame."""
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = _HDR.unpack_from(buf, 0)
    if flags & F_NEEDS_CSUM:
        # Sent by a local socket with CHECKSUM_PARTIAL: the checksum was never
        # computed and never needs to be (it did not cross a wire).
        return Frame(data, csum_start, csum_offset, True, gso_type, gso_size, hdr_len)
    return Frame(data, -1, 0, bool(flags & F_DATA_VALID), gso_type, gso_size, hdr_len)


def emit(frame: Frame) -> bytes:
    """The header to send in front of ``frame``."""
    if frame.csum_start < 0 and frame.gso_type == GSO_NONE:
        return PLAIN_HDR
    flags = F_NEEDS_CSUM if frame.csum_start >= 0 else 0
    return _HDR.pack(flags, frame.gso_type, frame.hdr_len, frame.gso_size,
                     max(frame.csum_start, 0), frame.csum_offset)
