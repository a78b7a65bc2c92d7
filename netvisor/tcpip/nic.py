"""A network interface of the stack: addresses, MTU, offloads, transmit queue.

IPv6 addresses carry RFC 4862 state (TENTATIVE during Duplicate Address
Detection, PREFERRED, DEPRECATED once the preferred lifetime passed) and
lifetimes for SLAAC addresses.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from netvisor.frame import Frame

if TYPE_CHECKING:
    from netvisor.tcpip.neighbor import NeighborCache

IPv4Interface = ipaddress.IPv4Interface
IPv6Interface = ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

LOOPBACK_MTU: Final = 65536   # Linux lo
ETH_HLEN: Final = 14


class AddrState(enum.Enum):
    TENTATIVE = "tentative"
    PREFERRED = "preferred"
    DEPRECATED = "deprecated"


@dataclass(slots=True)
class Ipv6Addr:
    """One IPv6 address of a NIC and its RFC 4862 state."""

    iface: IPv6Interface
    state: AddrState = AddrState.PREFERRED
    dad_at: float | None = None       # next DAD step (send NS, or finish)
    dad_sent: int = 0
    valid_until: float | None = None
    preferred_until: float | None = None
    origin: str = "static"            # 'static', 'link-local', 'slaac'

    @property
    def ip(self) -> ipaddress.IPv6Address:
        return self.iface.ip


def eui64_interface_id(mac: bytes) -> bytes:
    """Modified EUI-64 interface identifier (RFC 4291 appendix A)."""
    return bytes([mac[0] ^ 0x02]) + mac[1:3] + b"\xff\xfe" + mac[3:6]


def solicited_node(addr: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    """ff02::1:ffXX:XXXX for ``addr`` (RFC 4291 2.7.1)."""
    return ipaddress.IPv6Address(b"\xff\x02" + b"\x00" * 9 + b"\x01\xff" + addr.packed[13:])


def multicast_mac(group: IPAddress) -> bytes:
    """RFC 1112 6.4 (01:00:5e + 23 bits) and RFC 2464 7 (33:33 + 32 bits)."""
    if group.version == 4:
        p = group.packed
        return bytes((0x01, 0x00, 0x5E, p[1] & 0x7F, p[2], p[3]))
    return b"\x33\x33" + group.packed[12:]


@dataclass
class Nic:
    """Per-interface state held by the Stack."""

    id: int
    name: str
    mac: bytes
    mtu: int
    loopback: bool = False
    checksum_offload: bool = False      # TX: the device completes partial checksums
    rx_checksum_offload: bool = False   # RX: csum_valid on frames may be trusted
    gso_max_size: int = 0
    v4: list[IPv4Interface] = field(default_factory=list)
    v6: list[Ipv6Addr] = field(default_factory=list)
    mtu6: int | None = None             # from an RA MTU option (RFC 4861 6.3.4)
    hop_limit: int | None = None        # from an RA Cur Hop Limit
    groups: Counter[IPAddress] = field(default_factory=Counter)  # joined multicast groups
    txq: deque[Frame] = field(default_factory=deque)
    egress_room: Callable[[], bool] | None = None
    """Set by the driver: False while the link below refuses frames (an egress
    shaper's full queue), so TCP stops pulling from send buffers (backpressure)."""
    arp: NeighborCache | None = None
    ndp: NeighborCache | None = None
    rs_sent: int = 0
    rs_at: float | None = None
    igmp_v2_until: float = 0.0          # IGMPv2 querier seen (RFC 3376 7.2.1)
    report_at: float | None = None      # pending multicast (re)transmissions / query answers
    report_queue: list[tuple[IPAddress, int, int]] = field(default_factory=list)
    """(group, record type, retransmissions left) still to report."""

    def v6_addr(self, ip: ipaddress.IPv6Address) -> Ipv6Addr | None:
        for a in self.v6:
            if a.ip == ip:
                return a
        return None

    def link_local(self) -> ipaddress.IPv6Address | None:
        for a in self.v6:
            if a.ip.is_link_local and a.state is not AddrState.TENTATIVE:
                return a.ip
        return None

    @property
    def ip6_mtu(self) -> int:
        return min(self.mtu, self.mtu6) if self.mtu6 else self.mtu
