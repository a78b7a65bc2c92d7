"""The unit that crosses between link endpoints and the stack.

A frame is an Ethernet frame plus the offload metadata that the Linux
``virtio_net_hdr`` carries (TAP with IFF_VNET_HDR, AF_PACKET with
PACKET_VNET_HDR). Keeping the metadata beside the bytes, rather than inside
them, lets endpoints without offloads ignore it and lets the stack hand the
link a 64 KB TCP segment that the kernel cuts (TSO/GSO).

Stdlib only: both ``netvisor.link`` and ``netvisor.tcpip`` import this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# virtio_net_hdr gso_type values (include/uapi/linux/virtio_net.h).
GSO_NONE: Final = 0
GSO_TCPV4: Final = 1
GSO_UDP: Final = 3
GSO_TCPV6: Final = 4
GSO_ECN: Final = 0x80


@dataclass(slots=True)
class Frame:
    """One Ethernet frame and its offload metadata.

    Transmit side (stack -> link): ``csum_start >= 0`` means the L4 checksum
    field at ``csum_start + csum_offset`` holds only the pseudo-header sum and
    the device must complete it (VIRTIO_NET_HDR_F_NEEDS_CSUM). ``gso_type`` /
    ``gso_size`` ask the device to cut the payload after ``hdr_len`` bytes of
    headers into ``gso_size`` pieces.

    Receive side (link -> stack): ``csum_valid`` says the device already
    verified (DATA_VALID) or will never need (NEEDS_CSUM from a local sender)
    the L4 checksum, so the stack must not check it; a GSO frame is a
    coalesced TCP segment larger than the MTU.
    """

    data: bytes | bytearray | memoryview
    csum_start: int = -1
    csum_offset: int = 0
    csum_valid: bool = False
    gso_type: int = GSO_NONE
    gso_size: int = 0
    hdr_len: int = 0

    def __len__(self) -> int:
        return len(self.data)
