"""The sans-IO network layer: NICs, IPv4/IPv6, ARP/NDP, ICMP, fragments, UDP.

RFCs implemented (see each method for the section it follows):
RFC 791/1122 (IPv4 host), RFC 826 (ARP), RFC 792 (ICMP), RFC 8200 (IPv6),
RFC 4443 (ICMPv6), RFC 4861 (NDP), RFC 4862 (SLAAC, DAD), RFC 6724
(source selection, essentials: rules 1, 2, 3, 5, 8), RFC 5722 (overlapping
fragments), RFC 3376 / RFC 3810 (IGMPv3 / MLDv2 host side, reports only).

Module rules (h11 style): everything that decides what happens to an IP
packet lives here; protocol state machines with their own state live in
their own modules (neighbour cache, reassembly, routes, UDP, TCP). The Stack
never blocks and never reads a clock: the driver sets ``now`` (or installs
``clock``) and calls

- ``handle_frame(nic_id, frame, now)`` for every received frame,
- ``handle_timer(now)`` every turn (also delivers locally looped packets),
- ``frames_to_send(nic_id)`` to take the frames to transmit,
- ``next_deadline()`` to know when to call ``handle_timer`` next.

Departures, on purpose:

- Headers are parsed inline with ``struct`` rather than through
  ``wire/`` views: this is the per-packet hot path, and constructing view +
  repr objects per header costs several microseconds in Python. ``wire/`` is
  the reference the tests check against.
- Weak host model as Linux: a packet to any local address is accepted on
  any NIC, and packets between local addresses never touch a wire (Linux
  routes them through ``lo``): they go through a local queue processed at
  the next ``handle_timer``.
- Loopback NIC 1 (``lo``, 127.0.0.1/8 and ::1) always exists, as on Linux.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import logging
import struct
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final, overload

from netvisor.frame import GSO_NONE, GSO_TCPV4, GSO_TCPV6, Frame
from netvisor.tcpip import consts as C
from netvisor.tcpip import icmp as I
from netvisor.tcpip.api import IcmpError, Route, Socket
from netvisor.tcpip.config import StackConfig
from netvisor.tcpip.counters import Counters, DropReason
from netvisor.tcpip.errors import MalformedPacket, NetError, Truncated
from netvisor.tcpip.fragment import Reassembler, fragment_offsets
from netvisor.tcpip.neighbor import NeighborCache, NeighborEntry
from netvisor.tcpip.nic import (
    ETH_HLEN,
    LOOPBACK_MTU,
    AddrState,
    Ipv6Addr,
    Nic,
    eui64_interface_id,
    multicast_mac,
    solicited_node,
)
from netvisor.tcpip.ping import PingTransport
from netvisor.tcpip.route import RouteEntry, RoutingTable
from netvisor.tcpip.udp import UdpTransport
from netvisor.tcpip.wire.checksum import checksum, fold, partial_sum, pseudo_header_sum

log = logging.getLogger(__name__)

IPv4Address = ipaddress.IPv4Address
IPv6Address = ipaddress.IPv6Address
IPv4Interface = ipaddress.IPv4Interface
IPv6Interface = ipaddress.IPv6Interface
IPv4Network = ipaddress.IPv4Network
IPv6Network = ipaddress.IPv6Network
IPAddress = IPv4Address | IPv6Address

ETH_P_IP: Final = 0x0800
ETH_P_ARP: Final = 0x0806
ETH_P_IPV6: Final = 0x86DD
ETH_P_8021Q: Final = 0x8100
ETH_P_8021AD: Final = 0x88A8
BROADCAST_MAC: Final = b"\xff" * 6
ZERO_MAC: Final = b"\x00" * 6

LOOPBACK_NIC: Final = 1
"""Interface index of ``lo``, as on Linux."""

V4_ANY: Final = IPv4Address(0)
V4_BCAST: Final = IPv4Address("255.255.255.255")
V4_ALL_HOSTS: Final = IPv4Address("224.0.0.1")
V4_IGMPV3_ROUTERS: Final = IPv4Address("224.0.0.22")
V6_ANY: Final = IPv6Address(0)
V6_LOOPBACK: Final = IPv6Address(1)
V6_ALL_NODES: Final = IPv6Address("ff02::1")
V6_ALL_ROUTERS: Final = IPv6Address("ff02::2")
V6_MLDV2_ROUTERS: Final = IPv6Address("ff02::16")
LINK_LOCAL_NET: Final = IPv6Network("fe80::/64")

ICMP_QUOTE_V4: Final = 576 - 20 - 8
"""RFC 1812 4.3.2.3 / Linux icmp_send: quote as much as fits in 576 bytes."""
ICMP_QUOTE_V6: Final = 1280 - 40 - 8
"""RFC 4443 2.4(c): as much as fits in the minimum MTU."""
V6_ROUTE_METRIC: Final = 256       # Linux IP6_RT_PRIO_USER / prefix routes
V6_RA_ROUTE_METRIC: Final = 1024   # Linux IP6_RT_PRIO_ADDRCONF (RA default router)
INFINITE: Final = 0xFFFFFFFF
PMTU_EXPIRES: Final = 600.0        # Linux net.ipv4.route.mtu_expires
MAX_PMTU_ENTRIES: Final = 4096    # bound on learnt path MTUs (Linux keeps them in bounded dst caches)
MAX_RA_ROUTES: Final = 64          # bound on routes learnt from Router Advertisements
MAX_SLAAC_ADDRESSES: Final = 16    # Linux net.ipv6.conf.*.max_addresses
IGMPV2_COMPAT_TIMEOUT: Final = 400.0  # RFC 3376 8.12 Older Version Querier Present Timeout
IPV4_MAX_MTU: Final = 65535       # Linux IP_MAX_MTU: the IPv4 total length field
IPV6_MAX_MTU: Final = 65535 + 40  # Linux IP6_MAX_MTU: payload length field + header
LOCAL_BACKLOG: Final = 10000
"""Packets waiting for local delivery; more are dropped (Linux netdev_max_backlog is
1000 per CPU; larger here because one turn delivers them all)."""
LOCAL_BATCH: Final = 10000
"""Locally looped packets processed per handle_timer call (bounds a turn)."""

_NO_ICMP_ERROR_V4: Final = frozenset((I.ICMP_DEST_UNREACH, I.ICMP_SOURCE_QUENCH, I.ICMP_REDIRECT,
                                      I.ICMP_TIME_EXCEEDED, I.ICMP_PARAMETERPROB))


_ADDR_CACHE: dict[bytes, Any] = {}
_ADDR_CACHE_MAX: Final = 4096


def _addr(raw: bytes) -> Any:
    """IPv4Address/IPv6Address for 4/16 packed bytes, memoised (building one costs
    ~1 us and every packet needs two; the few peers of a host repeat)."""
    a = _ADDR_CACHE.get(raw)
    if a is None:
        a = IPv4Address(raw) if len(raw) == 4 else IPv6Address(raw)
        if len(_ADDR_CACHE) >= _ADDR_CACHE_MAX:
            _ADDR_CACHE.clear()  # random (forged) sources only churn the cache
        _ADDR_CACHE[raw] = a
    return a


_ADDR4_CACHE: dict[int, IPv4Address] = {}


def _addr4(ip: int) -> IPv4Address:
    """``_addr`` for an IPv4 address integer (the received header's, unpacked)."""
    a = _ADDR4_CACHE.get(ip)
    if a is None:
        a = IPv4Address(ip)
        if len(_ADDR4_CACHE) >= _ADDR_CACHE_MAX:
            _ADDR4_CACHE.clear()
        _ADDR4_CACHE[ip] = a
    return a


_IP4_HDR: Final = struct.Struct("!BBHHHBBHII")
_U10H: Final = struct.Struct("!10H")
_ETH_IP4: Final = b"\x08\x00"
_ETH_IP6: Final = b"\x86\xdd"


# Hot-path address tests read ``_ip`` (the integer every ipaddress address
# keeps in its __slots__) and test the type: ``int(a)`` and ``a.version`` are
# Python-level calls, ~4x slower, and these run several times per packet.

def _is_mcast(addr: IPAddress) -> bool:
    """``addr.is_multicast`` without building an IPv4Network per call (hot path)."""
    if type(addr) is IPv4Address or addr.version == 4:
        return addr._ip >> 28 == 14  # type: ignore[attr-defined, no-any-return]  # 224.0.0.0/4
    return addr._ip >> 120 == 0xFF  # type: ignore[attr-defined, no-any-return]  # ff00::/8


def _scope6(addr: IPv6Address) -> int:
    """RFC 6724 3.1 scope: 1 interface, 2 link, 5 site, 14 global."""
    if _is_mcast(addr):
        return addr.packed[1] & 0x0F
    if addr.is_link_local or addr == V6_LOOPBACK:
        return 2
    return 14


def _common_prefix(a: bytes, b: bytes) -> int:
    x = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    return len(a) * 8 - x.bit_length()


def _csum_ok(data: bytes | memoryview, initial: int = 0) -> bool:
    return fold(partial_sum(data, initial)) == 0xFFFF


class Stack:
    """The network layer and the TransportContext for TCP/UDP.

    Public API (stable; the driver and the syscall plane use it):
    ``add_nic``, ``add_address``, ``remove_address``, ``add_route``,
    ``remove_route``, ``add_neighbor``, ``handle_frame``, ``handle_timer``,
    ``frames_to_send``, ``next_deadline``, ``socket``, ``register_transport``,
    ``counters``, ``nics``, ``routes``, ``now`` / ``clock``, ``on_readiness``.
    """

    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config if config is not None else StackConfig()
        if self.config.rng is None:
            raise ValueError("StackConfig.rng is required: pass random.Random(seed)")
        self.rng = self.config.rng
        self._now = 0.0
        self.clock: Callable[[], float] | None = None
        """When set (by the driver), ``now`` reads it; tests set ``now`` instead."""
        self.counters = Counters()
        self.nics: dict[int, Nic] = {}
        self.routes = RoutingTable()
        self.transports: dict[int, Any] = {}
        self.on_readiness: Callable[[Socket], None] | None = None
        self._local: deque[tuple[int, bytes]] = deque()   # (version, IP packet) looped back
        self._reasm4 = Reassembler(self.config.ipv4_frag_timeout, self.config.frag_high_thresh,
                                   self.counters)
        self._reasm6 = Reassembler(self.config.ipv6_frag_timeout, self.config.frag_high_thresh,
                                   self.counters)
        self._icmp_limiter = I.IcmpRateLimiter(self.config)
        self._pmtu: dict[IPAddress, tuple[int, float]] = {}
        self._ip_id = self.rng.randrange(65536)
        self._next_nic = LOOPBACK_NIC
        self._local_addrs: set[IPAddress] = set()
        # The same as integers per family: hashing an int is ~10x cheaper than
        # hashing an ipaddress object (hash(hex(int))), and this is per packet.
        self._local4: set[int] = set()
        self._local6: set[int] = set()
        self._bcast4: set[int] = {0xFFFFFFFF}
        self.rx_ttl_tos: tuple[int, int] = (0, 0)
        """TTL/hop limit and TOS/traffic class of the packet being delivered
        (transports read it for IP_RECVTTL/IP_PKTINFO-style metadata)."""
        self._echo_handlers: list[Callable[[IPAddress, IPAddress, bytes], None]] = []
        self._net_dirty = True
        """The network layer's own timers (reassembly, expiring routes, DAD, RS,
        address lifetimes, multicast reports) may have changed since
        ``_net_deadline`` was computed. Set wherever one is armed; transports and
        neighbour caches keep their own (cheap) next deadlines."""
        self._net_deadline: float | None = None
        self._egress_hooks: list[Callable[[int, float], None]] = []
        self._timed: list[Any] = []
        self.udp = UdpTransport(self)
        self.register_transport(self.udp)
        # Ping sockets take ICMP errors that quote echo requests (protocol 1/58);
        # ICMP input itself is parsed here, and echo replies go to handle_reply.
        self.ping4 = PingTransport(self, C.IPPROTO_ICMP)
        self.ping6 = PingTransport(self, C.IPPROTO_ICMPV6)
        self.register_transport(self.ping4)
        self.register_transport(self.ping6)
        tcp_class: Any = None
        try:
            from netvisor.tcpip.tcp import TcpTransport
            tcp_class = TcpTransport
        except ImportError:
            log.info("netvisor.tcpip.tcp not importable: no TCP")
        if tcp_class is not None:
            try:
                self.register_transport(tcp_class(self))
            except Exception:  # a broken TCP must not take UDP/ICMP down
                log.exception("TcpTransport failed to start; TCP disabled")
        self._add_loopback()

    # ------------------------------------------------------------------ time

    @property
    def now(self) -> float:
        return self.clock() if self.clock is not None else self._now

    @now.setter
    def now(self, value: float) -> None:
        self._now = value

    # ------------------------------------------------------- configuration

    def register_transport(self, transport: Any) -> None:
        """Add a transport (api.Transport; UDP's ``handle_packet`` may also return
        False for "no socket", which makes the stack send port unreachable)."""
        self.transports[transport.protocol] = transport
        # Transports that declare ``has_timers = False`` (UDP, ping) are left out
        # of the per-turn timer pass and deadline (optional attribute, default True).
        self._timed = [t for t in self.transports.values() if getattr(t, "has_timers", True)]
        self._egress_hooks = [h for t in self.transports.values()
                              if (h := getattr(t, "handle_egress_room", None)) is not None]

    def _add_loopback(self) -> None:
        nic = Nic(self._next_nic, "lo", ZERO_MAC, LOOPBACK_MTU, loopback=True,
                  checksum_offload=True, rx_checksum_offload=True)
        self._next_nic += 1
        self.nics[nic.id] = nic
        self.add_address(nic.id, IPv4Interface("127.0.0.1/8"))
        self.add_address(nic.id, IPv6Interface("::1/128"))

    def add_nic(self, name: str, mac: bytes, mtu: int, *, checksum_offload: bool = False,
                rx_checksum_offload: bool = False, gso_max_size: int = 0,
                link_local: bool = True) -> int:
        """Add an Ethernet NIC; returns its id (the ifindex scope ids use).

        A link-local address (EUI-64 from ``mac``) is added and Duplicate
        Address Detection starts, then Router Solicitation (RFC 4861 6.3.7),
        as Linux does when a link comes up.
        """
        if len(mac) != 6:
            raise ValueError("mac must be 6 bytes")
        if mtu < 68:
            raise ValueError("mtu below the IPv4 minimum (68)")
        nic = Nic(self._next_nic, name, bytes(mac), mtu, checksum_offload=checksum_offload,
                  rx_checksum_offload=rx_checksum_offload, gso_max_size=gso_max_size)
        self._next_nic += 1
        nic.arp = NeighborCache(self.config, self.rng,
                                solicit=functools.partial(self._arp_solicit, nic),
                                on_resolved=functools.partial(self._neigh_resolved, nic),
                                on_failed=functools.partial(self._neigh_failed, nic),
                                on_drop=self._neigh_queue_drop)
        nic.ndp = NeighborCache(self.config, self.rng,
                                solicit=functools.partial(self._ndp_solicit, nic),
                                on_resolved=functools.partial(self._neigh_resolved, nic),
                                on_failed=functools.partial(self._neigh_failed, nic),
                                on_drop=self._neigh_queue_drop)
        self.nics[nic.id] = nic
        # Every IPv6 node listens to all-nodes (RFC 4291 2.8); not reported via MLD.
        nic.groups[V6_ALL_NODES] += 1
        nic.groups[V4_ALL_HOSTS] += 1
        self.routes.add(RouteEntry(LINK_LOCAL_NET, nic.id, metric=V6_ROUTE_METRIC, origin="kernel"))
        if link_local:
            iid = eui64_interface_id(nic.mac)
            ll = IPv6Address(b"\xfe\x80" + b"\x00" * 6 + iid)
            self.add_address(nic.id, IPv6Interface(f"{ll}/64"), _origin="link-local", _route=False)
        return nic.id

    def _neigh_queue_drop(self, n: int) -> None:
        self.counters.drop(DropReason.NEIGHBOR_QUEUE_FULL, n)

    def remove_nic(self, nic_id: int) -> None:
        """Remove a NIC with its addresses and routes (not lo)."""
        self._net_dirty = True
        nic = self._nic(nic_id)
        if nic.loopback:
            raise ValueError("cannot remove lo")
        for a in list(nic.v4):
            self.remove_address(nic_id, a)
        for a6 in list(nic.v6):
            self.remove_address(nic_id, a6.iface)
        self.routes.remove_nic(nic_id)
        del self.nics[nic_id]

    def _nic(self, nic_id: int) -> Nic:
        try:
            return self.nics[nic_id]
        except KeyError:
            raise NetError(errno.ENODEV, f"no NIC {nic_id}") from None

    def has_nic(self, nic_id: int) -> bool:
        """True when ``nic_id`` exists (scope ids, SO_BINDTOIFINDEX)."""
        return nic_id in self.nics

    def nic_by_name(self, name: str) -> int | None:
        """The id of the NIC called ``name`` (SO_BINDTODEVICE), or None."""
        for nic in self.nics.values():
            if nic.name == name:
                return nic.id
        return None

    def nic_of_address(self, addr: IPAddress) -> int | None:
        """The NIC that carries ``addr``, or None."""
        for nic in self.nics.values():
            if addr.version == 4:
                if any(a.ip == addr for a in nic.v4):
                    return nic.id
            elif nic.v6_addr(addr) is not None:
                return nic.id
        return None

    def add_address(self, nic_id: int, iface: IPv4Interface | IPv6Interface, *,
                    dad: bool | None = None, valid_lifetime: float | None = None,
                    preferred_lifetime: float | None = None,
                    _origin: str = "static", _route: bool = True) -> None:
        """Add an address; its prefix route is added (Linux kernel/prefix route).

        IPv6 addresses on Ethernet NICs start TENTATIVE and run DAD (RFC 4862
        5.4) unless ``dad=False`` or ``config.dad_transmits == 0``.
        """
        self._net_dirty = True
        nic = self._nic(nic_id)
        now = self.now
        if isinstance(iface, IPv4Interface):
            if iface in nic.v4:
                raise NetError(errno.EEXIST, f"{iface} exists")
            nic.v4.append(iface)
            self._local_addrs.add(iface.ip)
            self._sync_local()
            self._refresh_broadcasts()
            if _route and not nic.loopback and iface.network.prefixlen < 32:
                self.routes.add(RouteEntry(iface.network, nic_id, metric=0, src=iface.ip,
                                           origin="kernel"))
            return
        if nic.v6_addr(iface.ip) is not None:
            raise NetError(errno.EEXIST, f"{iface} exists")
        a = Ipv6Addr(iface, origin=_origin)
        if valid_lifetime is not None:
            a.valid_until = now + valid_lifetime
        if preferred_lifetime is not None:
            a.preferred_until = now + preferred_lifetime
        run_dad = (dad if dad is not None else True) and not nic.loopback \
            and self.config.dad_transmits > 0
        if run_dad:
            a.state = AddrState.TENTATIVE
            a.dad_at = now + self.rng.uniform(0, self.config.dad_max_delay)
        nic.v6.append(a)
        self._local_addrs.add(iface.ip)
        self._sync_local()
        if not nic.loopback:
            self._join(nic, solicited_node(iface.ip))
            if _route and iface.network.prefixlen < 128 and not iface.ip.is_link_local:
                self.routes.add(RouteEntry(iface.network, nic_id, metric=V6_ROUTE_METRIC,
                                           origin="kernel"))
        if not run_dad:
            self._address_ready(nic, a, now)

    def remove_address(self, nic_id: int, iface: IPv4Interface | IPv6Interface) -> None:
        """Remove an address (and its prefix route when no other address needs it)."""
        self._net_dirty = True
        nic = self._nic(nic_id)
        if isinstance(iface, IPv4Interface):
            if iface not in nic.v4:
                raise NetError(errno.EADDRNOTAVAIL)
            nic.v4.remove(iface)
            self._refresh_broadcasts()
            if not any(a.ip == iface.ip for n in self.nics.values() for a in n.v4):
                self._local_addrs.discard(iface.ip)
                self._sync_local()
            if not any(a.network == iface.network for a in nic.v4):
                self.routes.remove(iface.network, nic_id=nic_id, gateway=None)
            return
        a = nic.v6_addr(iface.ip)
        if a is None:
            raise NetError(errno.EADDRNOTAVAIL)
        self._drop_v6(nic, a)

    def _drop_v6(self, nic: Nic, a: Ipv6Addr) -> None:
        self._net_dirty = True
        nic.v6.remove(a)
        if not any(n.v6_addr(a.ip) for n in self.nics.values()):
            self._local_addrs.discard(a.ip)
            self._sync_local()
        if not nic.loopback:
            self._leave(nic, solicited_node(a.ip))
            if not a.ip.is_link_local and not any(b.iface.network == a.iface.network for b in nic.v6):
                self.routes.remove(a.iface.network, nic_id=nic.id, gateway=None)

    def add_route(self, dst: IPv4Network | IPv6Network | str, *, gateway: IPAddress | str | None = None,
                  nic_id: int | None = None, metric: int | None = None,
                  src: IPAddress | None = None) -> RouteEntry:
        """Add a route. Without ``nic_id`` the gateway's on-link route picks the NIC."""
        self._net_dirty = True
        net = ipaddress.ip_network(dst) if isinstance(dst, str) else dst
        gw = ipaddress.ip_address(gateway) if isinstance(gateway, str) else gateway
        if gw is not None and gw.version != net.version:
            raise NetError(errno.EINVAL, "gateway family differs from destination")
        if nic_id is None:
            if gw is None:
                raise NetError(errno.EINVAL, "route needs a gateway or a NIC")
            via = self.routes.lookup(gw)
            if via is None or via.gateway is not None:
                raise NetError(errno.ENETUNREACH, f"gateway {gw} is not on-link")
            nic_id = via.nic_id
        self._nic(nic_id)
        if metric is None:
            metric = 0 if net.version == 4 else V6_ROUTE_METRIC if gw is None else 1024
        return self.routes.add(RouteEntry(net, nic_id, gateway=gw, metric=metric, src=src))

    def remove_route(self, dst: IPv4Network | IPv6Network | str, **kw: Any) -> int:
        """Remove routes to ``dst`` (keyword filters as RoutingTable.remove); returns how many."""
        net = ipaddress.ip_network(dst) if isinstance(dst, str) else dst
        return self.routes.remove(net, **kw)

    def add_neighbor(self, nic_id: int, ip: IPAddress, mac: bytes) -> None:
        """A permanent neighbour entry (``ip neigh add ... nud permanent``)."""
        nic = self._nic(nic_id)
        cache = nic.arp if ip.version == 4 else nic.ndp
        if cache is None:
            raise NetError(errno.EINVAL, "loopback has no neighbours")
        cache.add_static(ip, bytes(mac))

    def addresses(self, nic_id: int) -> list[IPv4Interface | IPv6Interface]:
        """Every address of the NIC (IPv6 ones in any DAD state)."""
        nic = self._nic(nic_id)
        return [*nic.v4, *(a.iface for a in nic.v6)]

    def tentative_addresses(self) -> list[IPv6Address]:
        """IPv6 addresses still in Duplicate Address Detection."""
        return [a.ip for n in self.nics.values() for a in n.v6 if a.state is AddrState.TENTATIVE]

    # ------------------------------------------------------- address queries

    def is_local_address(self, addr: IPAddress) -> bool:
        """True for an address of any NIC, all of 127/8 included (TransportContext)."""
        if type(addr) is IPv4Address or addr.version == 4:
            ip = addr._ip  # type: ignore[attr-defined]
            # Linux: all of 127.0.0.0/8 is local while lo carries 127.0.0.1/8.
            return ip in self._local4 or ip >> 24 == 127
        return addr._ip in self._local6  # type: ignore[attr-defined]

    def _is_configured(self, addr: IPAddress) -> bool:
        """One of the addresses configured on a NIC (not the rest of 127/8)."""
        if type(addr) is IPv4Address or addr.version == 4:
            return addr._ip in self._local4  # type: ignore[attr-defined]
        return addr._ip in self._local6  # type: ignore[attr-defined]

    def _sync_local(self) -> None:
        self._local4 = {int(a) for a in self._local_addrs if a.version == 4}
        self._local6 = {int(a) for a in self._local_addrs if a.version == 6}

    def is_tentative(self, addr: IPAddress) -> bool:
        """True while ``addr`` is one of our IPv6 addresses still in DAD."""
        if addr.version != 6:
            return False
        for nic in self.nics.values():
            a = nic.v6_addr(addr)
            if a is not None:
                return a.state is AddrState.TENTATIVE
        return False

    def _is_usable_local(self, addr: IPAddress) -> bool:
        return self.is_local_address(addr) and not self.is_tentative(addr)

    def is_broadcast(self, addr: IPAddress) -> bool:
        """255.255.255.255 or the directed broadcast of a local IPv4 subnet."""
        return addr.version == 4 and int(addr) in self._bcast4

    def _refresh_broadcasts(self) -> None:
        """Directed broadcast addresses of every local IPv4 subnet (/31 and /32 have none)."""
        self._bcast4 = {int(a.network.broadcast_address) for n in self.nics.values()
                        for a in n.v4 if a.network.prefixlen < 31} | {0xFFFFFFFF}

    def default_multicast_nic(self, group: IPAddress) -> int | None:
        """The NIC a membership without an interface uses (Linux: route to the group)."""
        r = self.routes.lookup(group, now=self.now)
        if r is not None:
            return r.nic_id
        for nic in self.nics.values():
            if not nic.loopback:
                return nic.id
        return LOOPBACK_NIC

    # ---------------------------------------------------------------- routing

    def route(self, dst: IPAddress, *, src: IPAddress | None = None,
              bound_nic: int | None = None) -> Route:
        """Route and source for ``dst`` (TransportContext.route)."""
        now = self.now
        if self.is_local_address(dst):
            lo = self.nics[LOOPBACK_NIC]
            if src is None:
                src = dst if self._is_usable_local(dst) else self._select_source(lo, dst, None)
            # Linux ipv4_mtu/ip6_mtu cap lo's 65536 at the largest IP packet.
            mtu = min(LOOPBACK_MTU, IPV4_MAX_MTU if dst.version == 4 else IPV6_MAX_MTU)
            return Route(src, None, LOOPBACK_NIC, mtu, 0, True)
        entry: RouteEntry | None
        if _is_mcast(dst) or dst == V4_BCAST:
            nic_id = bound_nic
            if nic_id is None:
                entry = self.routes.lookup(dst, now=now)
                nic_id = entry.nic_id if entry is not None else self.default_multicast_nic(dst)
            if nic_id is None:
                raise NetError(errno.ENETUNREACH)
            nic = self._nic(nic_id)
            if src is None:
                src = self._select_source(nic, dst, None)
            return self._make_route(nic, src, None, dst)
        entry = self.routes.lookup(dst, nic_id=bound_nic, now=now)
        if entry is None:
            if bound_nic is not None and dst.version == 6 and dst.is_link_local:
                nic = self._nic(bound_nic)
                return self._make_route(nic, src or self._select_source(nic, dst, None), None, dst)
            raise NetError(errno.ENETUNREACH, f"no route to {dst}")
        nic = self.nics[entry.nic_id]
        if src is None:
            src = entry.src if entry.src is not None and self._is_usable_local(entry.src) \
                else self._select_source(nic, dst, entry.gateway)
        return self._make_route(nic, src, entry.gateway, dst)

    def _make_route(self, nic: Nic, src: IPAddress, gateway: IPAddress | None,
                    dst: IPAddress) -> Route:
        mtu = min(nic.mtu, IPV4_MAX_MTU) if dst.version == 4 else min(nic.ip6_mtu, IPV6_MAX_MTU)
        p = self._pmtu.get(dst)
        if p is not None:
            if p[1] > self.now:
                mtu = min(mtu, p[0])
            else:
                del self._pmtu[dst]
        return Route(src, gateway, nic.id, mtu, nic.gso_max_size, nic.checksum_offload)

    def _select_source(self, nic: Nic, dst: IPAddress, gateway: IPAddress | None) -> IPAddress:
        if dst.version == 4:
            target = gateway or dst
            for a in nic.v4:
                if target in a.network:
                    return a.ip
            if nic.v4:
                return nic.v4[0].ip
            # Linux inet_select_addr: any address of another device.
            for other in self.nics.values():
                if other.v4 and not other.loopback:
                    return other.v4[0].ip
            if nic.loopback or not any(n.v4 for n in self.nics.values() if not n.loopback):
                return V4_ANY if not nic.loopback else IPv4Address("127.0.0.1")
            raise NetError(errno.EADDRNOTAVAIL)
        assert isinstance(dst, IPv6Address)
        # RFC 6724 5: candidates are the non-tentative addresses; rule 5
        # (outgoing interface) first, then scope (rule 2), deprecated (rule 3),
        # longest matching prefix (rule 8).
        dscope = _scope6(dst)
        best: tuple[Any, ...] | None = None
        best_ip: IPv6Address | None = None
        for n in self.nics.values():
            for cand in n.v6:
                if cand.state is AddrState.TENTATIVE:
                    continue
                if n.loopback and dst != V6_LOOPBACK:
                    continue
                if cand.ip.is_link_local and n is not nic:
                    continue
                sscope = _scope6(cand.ip)
                scope_key = (0, sscope) if sscope >= dscope else (1, -sscope)
                key = (cand.ip != dst, n is not nic, scope_key,
                       cand.state is AddrState.DEPRECATED,
                       -_common_prefix(cand.ip.packed, dst.packed))
                if best is None or key < best:
                    best, best_ip = key, cand.ip
        if best_ip is None:
            return V6_ANY
        return best_ip

    # ------------------------------------------------------------- multicast

    def join_group(self, nic_id: int, group: IPAddress) -> None:
        """A socket joined ``group`` on ``nic_id`` (reference counted)."""
        self._join(self._nic(nic_id), group)

    def leave_group(self, nic_id: int, group: IPAddress) -> None:
        """A socket left ``group`` on ``nic_id`` (the last one sends a leave report)."""
        if nic_id in self.nics:
            self._leave(self.nics[nic_id], group)

    def _reportable(self, group: IPAddress) -> bool:
        if group.version == 4:
            return group != V4_ALL_HOSTS
        # RFC 3810 6: never for ff02::1, nor for scopes 0 and 1.
        return group != V6_ALL_NODES and _scope6(group) > 1

    def _join(self, nic: Nic, group: IPAddress) -> None:
        nic.groups[group] += 1
        if nic.groups[group] == 1 and not nic.loopback and self._reportable(group):
            # RFC 3376 5.1 / RFC 3810 6.1: state-change report now, repeated
            # [Robustness Variable] times at random intervals.
            self._schedule_report(nic, group, 4, self.config.robustness)

    def _leave(self, nic: Nic, group: IPAddress) -> None:
        if nic.groups.get(group, 0) <= 0:
            return
        nic.groups[group] -= 1
        if nic.groups[group] == 0:
            del nic.groups[group]
            if not nic.loopback and self._reportable(group):
                self._schedule_report(nic, group, 3, self.config.robustness)

    def _schedule_report(self, nic: Nic, group: IPAddress, rtype: int, count: int,
                         delay: float = 0.0) -> None:
        self._net_dirty = True
        nic.report_queue = [q for q in nic.report_queue if q[0] != group]
        nic.report_queue.append((group, rtype, count))
        at = self.now + delay
        if nic.report_at is None or at < nic.report_at:
            nic.report_at = at

    def _send_reports(self, nic: Nic, now: float) -> None:
        self._net_dirty = True
        due = nic.report_queue
        nic.report_queue = []
        nic.report_at = None
        v4 = [(g, t) for g, t, _ in due if g.version == 4]
        v6 = [(g, t) for g, t, _ in due if g.version == 6]
        if v4:
            self._send_igmp(nic, v4)
        if v6:
            self._send_mld(nic, v6)
        again = [(g, t, n - 1) for g, t, n in due if n > 1]
        if again:
            nic.report_queue = again
            nic.report_at = now + self.rng.uniform(0, self.config.unsolicited_report_interval)

    def _send_igmp(self, nic: Nic, records: Sequence[tuple[IPAddress, int]]) -> None:
        if not nic.v4:
            return
        ra = b"\x94\x04\x00\x00"  # Router Alert option (RFC 2113), required by RFC 3376 4
        if nic.igmp_v2_until > self.now:
            for g, t in records:
                # IGMPv2: membership report (0x16) to the group, leave (0x17) to 224.0.0.2.
                typ, dst = (0x16, IPv4Address(g.packed)) if t != 3 else \
                    (0x17, IPv4Address("224.0.0.2"))
                msg = bytearray(struct.pack("!BBH4s", typ, 0, 0, g.packed))
                struct.pack_into("!H", msg, 2, checksum(msg))
                self._output_v4_raw(nic, nic.v4[0].ip, dst, C.IPPROTO_IGMP, msg, ttl=1,
                                    options=ra, tos=0xC0)
            return
        body = bytearray(struct.pack("!BBHHH", 0x22, 0, 0, 0, len(records)))
        for g, t in records:
            body += struct.pack("!BBH4s", t, 0, 0, g.packed)
        struct.pack_into("!H", body, 2, checksum(body))
        self._output_v4_raw(nic, nic.v4[0].ip, V4_IGMPV3_ROUTERS, C.IPPROTO_IGMP, body, ttl=1,
                            options=ra, tos=0xC0)
        self.counters.inc("igmp_reports_tx")

    def _send_mld(self, nic: Nic, records: Sequence[tuple[IPAddress, int]]) -> None:
        src = nic.link_local() or V6_ANY  # RFC 3810 5.2.13: :: before a link-local exists
        body = bytearray(struct.pack("!BBHHH", I.ICMPV6_MLD2_REPORT, 0, 0, 0, len(records)))
        for g, t in records:
            body += struct.pack("!BBH16s", t, 0, 0, g.packed)
        struct.pack_into("!H", body, 2, checksum(body, pseudo_header_sum(
            src, V6_MLDV2_ROUTERS, C.IPPROTO_ICMPV6, len(body))))
        # Hop-by-Hop header with Router Alert (RFC 2711, value 0 = MLD) + PadN.
        hbh = bytes((C.IPPROTO_ICMPV6, 0, 5, 2, 0, 0, 1, 0))
        self._output_v6_raw(nic, src, V6_MLDV2_ROUTERS, C.IPPROTO_ICMPV6, body, hop_limit=1,
                            hbh=hbh)
        self.counters.inc("mld_reports_tx")

    # ------------------------------------------------------------------ output

    def egress_has_room(self, nic_id: int) -> bool:
        """False while the NIC's transmit queue is full (TransportContext)."""
        nic = self.nics.get(nic_id)
        if nic is None or len(nic.txq) >= self.config.tx_queue_len:
            return False
        return nic.egress_room is None or nic.egress_room()

    def readiness_changed(self, sock: Socket) -> None:
        """Tell the driver that ``sock.poll()`` may answer differently (TransportContext)."""
        if self.on_readiness is not None:
            self.on_readiness(sock)

    def confirm_neighbor(self, route: Route, dst: IPAddress) -> None:
        """Upper-layer reachability hint (TransportContext; RFC 4861 7.3.1)."""
        nic = self.nics.get(route.nic_id)
        if nic is None:
            return
        cache = nic.arp if dst.version == 4 else nic.ndp
        if cache is not None:
            cache.confirm(route.next_hop or dst, self.now)

    def output(self, route: Route, dst: IPAddress, protocol: int,
               transport: bytes | bytearray | memoryview, *, ttl: int | None = None,
               tos: int = 0, dont_fragment: bool | None = None, checksum_offset: int = -1,
               gso_size: int = 0, multicast_loop: bool = False) -> None:
        """Send one transport packet (TransportContext.output).

        ``dont_fragment=None``: DF on unfragmented TCP/UDP packets and
        fragmentation when needed (Linux IP_PMTUDISC_WANT); True: EMSGSIZE
        when the packet does not fit; False: never DF.
        """
        nic = self._nic(route.nic_id)
        src = route.src
        if self.is_local_address(dst) or nic.loopback:
            pkt = self._build_ip(src, dst, protocol, transport, ttl or 64, tos,
                                 df=False, checksum_offset=checksum_offset, complete=False)
            self._loop_back(dst.version, pkt)
            return
        if multicast_loop and _is_mcast(dst) and nic.groups.get(dst, 0) > 0:
            copy = self._build_ip(src, dst, protocol, transport, 1, tos, df=False,
                                  checksum_offset=checksum_offset, complete=False)
            self._loop_back(dst.version, copy)
        if ttl is None:
            if dst.version == 4:
                ttl = 1 if _is_mcast(dst) else self.config.default_ttl
            else:
                ttl = 1 if _is_mcast(dst) else (nic.hop_limit or self.config.default_hop_limit)
        if dst.version == 4:
            self._output_v4(nic, route, src, dst, protocol, transport, ttl, tos, dont_fragment,
                            checksum_offset, gso_size)
        else:
            self._output_v6(nic, route, src, dst, protocol, transport, ttl, tos, dont_fragment,
                            checksum_offset, gso_size)

    def _loop_back(self, version: int, packet: bytes) -> None:
        """Queue a packet for local delivery (Linux lo -> netif_rx backlog)."""
        if len(self._local) >= LOCAL_BACKLOG:
            self.counters.drop(DropReason.TX_QUEUE_FULL)  # netdev_max_backlog overflow
            return
        self._local.append((version, packet))

    def _complete_csum(self, data: bytearray, offset: int) -> None:
        """Finish a partial checksum (the field holds the pseudo-header sum)."""
        c = ~fold(partial_sum(data)) & 0xFFFF
        struct.pack_into("!H", data, offset, c or 0xFFFF)

    def _build_ip(self, src: IPAddress, dst: IPAddress, protocol: int,
                  transport: bytes | bytearray | memoryview, ttl: int, tos: int, *,
                  df: bool, checksum_offset: int, complete: bool) -> bytes:
        """One unfragmented IP packet (used for the local path)."""
        tp = bytearray(transport)
        if checksum_offset >= 0 and complete:
            self._complete_csum(tp, checksum_offset)
        if src.version == 4:
            hdr = self._ipv4_header(src, dst, protocol, len(tp), ttl, tos, df, 0, False)  # type: ignore[arg-type]
        else:
            hdr = struct.pack("!IHBB16s16s", (6 << 28) | (tos << 20), len(tp), protocol, ttl,
                              src.packed, dst.packed)
        return hdr + tp

    def _next_ip_id(self) -> int:
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        return self._ip_id

    def _ipv4_header(self, src: IPv4Address, dst: IPv4Address, protocol: int, payload_len: int,
                     ttl: int, tos: int, df: bool, frag_off: int, more: bool,
                     ident: int | None = None, options: bytes = b"") -> bytes:
        if not options and not frag_off and not more and ident is None:
            # The per-segment case: one pack, the header checksum summed from
            # the fields (RFC 1071) instead of over a built buffer.
            ident = self._ip_id = (self._ip_id + 1) & 0xFFFF
            s, d = src._ip, dst._ip  # type: ignore[attr-defined]
            total = 20 + payload_len
            flags = 0x4000 if df else 0
            c = ((0x4500 | tos) + total + ident + flags + ((ttl << 8) | protocol)
                 + (s >> 16) + (s & 0xFFFF) + (d >> 16) + (d & 0xFFFF))
            c = (c & 0xFFFF) + (c >> 16)
            c = (c & 0xFFFF) + (c >> 16)
            return _IP4_HDR.pack(0x45, tos, total, ident, flags, ttl, protocol, ~c & 0xFFFF,
                                 s, d)
        ihl = 5 + len(options) // 4
        flags = (0x4000 if df else 0) | (0x2000 if more else 0) | (frag_off >> 3)
        hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, tos, ihl * 4 + payload_len,
                                    self._next_ip_id() if ident is None else ident, flags,
                                    ttl, protocol, 0, src.packed, dst.packed))
        hdr += options
        struct.pack_into("!H", hdr, 10, checksum(hdr))
        return bytes(hdr)

    def _output_v4(self, nic: Nic, route: Route, src: IPAddress, dst: IPAddress, protocol: int,
                   transport: bytes | bytearray | memoryview, ttl: int, tos: int,
                   dont_fragment: bool | None, checksum_offset: int, gso_size: int) -> None:
        assert isinstance(src, IPv4Address) and isinstance(dst, IPv4Address)
        n = len(transport)
        mtu = route.mtu
        if gso_size and 20 + n > mtu:
            if not nic.gso_max_size or protocol != C.IPPROTO_TCP:
                raise NetError(errno.EMSGSIZE, "GSO asked of a NIC without it")
            hdr = self._ipv4_header(src, dst, protocol, n, ttl, tos, dont_fragment is not False,
                                    0, False)   # (IP_PMTUDISC_DONT: segments without DF too)
            self._tx(nic, route.next_hop or dst, dst, ETH_P_IP, hdr, transport, checksum_offset,
                     GSO_TCPV4, gso_size)
            return
        if 20 + n <= mtu:
            df = dont_fragment if dont_fragment is not None else protocol in (C.IPPROTO_TCP,
                                                                                C.IPPROTO_UDP)
            hdr = self._ipv4_header(src, dst, protocol, n, ttl, tos, df, 0, False)
            self._tx(nic, route.next_hop or dst, dst, ETH_P_IP, hdr, transport, checksum_offset)
            return
        if dont_fragment:
            self._note_pmtu(dst, mtu)
            raise NetError(errno.EMSGSIZE, f"{20 + n} > path MTU {mtu}")
        tp = bytearray(transport)
        if checksum_offset >= 0:
            self._complete_csum(tp, checksum_offset)
        ident = self._next_ip_id()
        self.counters.inc("ipv4_fragmented")
        for off, ln in fragment_offsets(n, mtu - 20):
            more = off + ln < n
            hdr = self._ipv4_header(src, dst, protocol, ln, ttl, tos, False, off, more, ident)
            self._link_output(nic, route.next_hop or dst, dst, ETH_P_IP,
                              hdr + bytes(tp[off:off + ln]), None)

    def _tx(self, nic: Nic, next_hop: IPAddress, dst: IPAddress, ethertype: int, hdr: bytes,
            transport: bytes | bytearray | memoryview, checksum_offset: int,
            gso_type: int = GSO_NONE, gso_size: int = 0) -> None:
        """Send one unfragmented IP packet (``hdr`` + ``transport``) on ``nic``.

        The per-segment path: when the next hop's MAC is usable as it is (the
        common case), the frame is built with one join (Ethernet header, IP
        header, transport: one copy) and its offload metadata set directly.
        Anything else (loopback NIC, multicast/broadcast, neighbour to
        resolve or a STALE one) goes through ``_with_offload`` + ``_link_output``.
        """
        if (gso_size or checksum_offset < 0 or nic.checksum_offload) and not nic.loopback:
            cache = nic.arp if ethertype == ETH_P_IP else nic.ndp
            mac = cache.usable_mac(next_hop, self.now) if cache is not None else None
            if mac is not None and not _is_mcast(dst) and not (
                    ethertype == ETH_P_IP and dst._ip in self._bcast4):  # type: ignore[union-attr]
                txq = nic.txq
                if len(txq) >= self.config.tx_queue_len:
                    self.counters.drop(DropReason.TX_QUEUE_FULL)
                    return
                data = b"".join((mac, nic.mac, _ETH_IP4 if ethertype == ETH_P_IP else _ETH_IP6,
                                 hdr, transport))
                if checksum_offset < 0:
                    frame = Frame(data)
                else:
                    l3_end = ETH_HLEN + len(hdr)
                    if gso_size:
                        frame = Frame(data, l3_end, checksum_offset, False, gso_type, gso_size,
                                      l3_end + (transport[12] >> 4) * 4)
                    else:
                        frame = Frame(data, l3_end, checksum_offset)
                txq.append(frame)
                self.counters.inc("tx_frames")
                return
        pkt, meta = self._with_offload(nic, hdr, transport, checksum_offset, gso_type, gso_size)
        self._link_output(nic, next_hop, dst, ethertype, pkt, meta)

    def _with_offload(self, nic: Nic, hdr: bytes, transport: bytes | bytearray | memoryview,
                      checksum_offset: int, gso_type: int = GSO_NONE, gso_size: int = 0,
                      ) -> tuple[bytes, dict[str, int] | None]:
        """One IP packet (``hdr`` + ``transport``) and its Frame offload metadata.

        ``checksum_offset`` >= 0: the transport checksum holds only the
        pseudo-header sum; the NIC completes it (virtio NEEDS_CSUM) when it
        can, else it is completed here. A GSO super-segment always leaves its
        checksum to the NIC (only offloading NICs are given one).
        """
        l3_end = ETH_HLEN + len(hdr)
        if gso_size:
            thl = (transport[12] >> 4) * 4
            return hdr + transport, {"csum_start": l3_end, "csum_offset": checksum_offset,
                                     "gso_type": gso_type, "gso_size": gso_size,
                                     "hdr_len": l3_end + thl}
        if checksum_offset < 0:
            return hdr + transport, None
        if nic.checksum_offload:
            return hdr + transport, {"csum_start": l3_end, "csum_offset": checksum_offset}
        tp = bytearray(transport)
        self._complete_csum(tp, checksum_offset)
        return hdr + tp, None

    def _output_v4_raw(self, nic: Nic, src: IPv4Address, dst: IPv4Address, protocol: int,
                       payload: bytes | bytearray, *, ttl: int, options: bytes = b"",
                       tos: int = 0) -> None:
        hdr = self._ipv4_header(src, dst, protocol, len(payload), ttl, tos, False, 0, False,
                                options=options)
        self._link_output(nic, dst, dst, ETH_P_IP, hdr + bytes(payload), None)

    def _output_v6(self, nic: Nic, route: Route, src: IPAddress, dst: IPAddress, protocol: int,
                   transport: bytes | bytearray | memoryview, hop: int, tclass: int,
                   dont_fragment: bool | None, checksum_offset: int, gso_size: int) -> None:
        n = len(transport)
        mtu = max(route.mtu, 1280)
        first = (6 << 28) | (tclass << 20)
        if gso_size and 40 + n > mtu:
            if not nic.gso_max_size or protocol != C.IPPROTO_TCP:
                raise NetError(errno.EMSGSIZE, "GSO asked of a NIC without it")
            hdr = struct.pack("!IHBB16s16s", first, n, protocol, hop, src.packed, dst.packed)
            self._tx(nic, route.next_hop or dst, dst, ETH_P_IPV6, hdr, transport,
                     checksum_offset, GSO_TCPV6, gso_size)
            return
        if 40 + n <= mtu:
            hdr = struct.pack("!IHBB16s16s", first, n, protocol, hop, src.packed, dst.packed)
            self._tx(nic, route.next_hop or dst, dst, ETH_P_IPV6, hdr, transport, checksum_offset)
            return
        if dont_fragment:
            raise NetError(errno.EMSGSIZE, f"{40 + n} > path MTU {mtu}")
        # RFC 8200 4.5: only the source fragments; Fragment header after the
        # base header; identification random (RFC 7739).
        tp = bytearray(transport)
        if checksum_offset >= 0:
            self._complete_csum(tp, checksum_offset)
        ident = self.rng.getrandbits(32)
        self.counters.inc("ipv6_fragmented")
        for off, ln in fragment_offsets(n, mtu - 40 - 8):
            more = off + ln < n
            fh = struct.pack("!BBHI", protocol, 0, off | (1 if more else 0), ident)
            hdr = struct.pack("!IHBB16s16s", first, 8 + ln, C.IPPROTO_FRAGMENT, hop,
                              src.packed, dst.packed)
            self._link_output(nic, route.next_hop or dst, dst, ETH_P_IPV6,
                              hdr + fh + bytes(tp[off:off + ln]), None)

    def _output_v6_raw(self, nic: Nic, src: IPAddress, dst: IPAddress, protocol: int,
                       payload: bytes | bytearray, *, hop_limit: int, hbh: bytes = b"",
                       link_dst: bytes | None = None) -> None:
        nh = C.IPPROTO_HOPOPTS if hbh else protocol
        hdr = struct.pack("!IHBB16s16s", 6 << 28, len(hbh) + len(payload), nh, hop_limit,
                          src.packed, dst.packed)
        self._link_output(nic, dst, dst, ETH_P_IPV6, hdr + hbh + bytes(payload), None,
                          link_dst=link_dst)

    def _link_output(self, nic: Nic, next_hop: IPAddress, dst: IPAddress, ethertype: int,
                     packet: bytes, meta: dict[str, int] | None, *,
                     link_dst: bytes | None = None) -> None:
        """Resolve the link-layer destination and queue the frame."""
        if nic.loopback:
            self._loop_back(4 if ethertype == ETH_P_IP else 6, packet)
            return
        if link_dst is not None:
            mac: bytes | None = link_dst
        elif _is_mcast(dst):
            mac = multicast_mac(dst)
        elif ethertype == ETH_P_IP and (dst == V4_BCAST or self.is_broadcast(dst)):
            mac = BROADCAST_MAC
        else:
            cache = nic.arp if ethertype == ETH_P_IP else nic.ndp
            assert cache is not None
            mac = cache.resolve(next_hop, (ethertype, packet, meta), len(packet), self.now)
        if mac is None:
            return  # queued until the neighbour answers
        self._enqueue_frame(nic, mac, ethertype, packet, meta)

    def _enqueue_frame(self, nic: Nic, mac: bytes, ethertype: int, packet: bytes,
                       meta: dict[str, int] | None) -> None:
        if len(nic.txq) >= self.config.tx_queue_len:
            self.counters.drop(DropReason.TX_QUEUE_FULL)
            return
        data = mac + nic.mac + struct.pack("!H", ethertype) + packet
        if meta:
            frame = Frame(data, csum_start=meta.get("csum_start", -1),
                          csum_offset=meta.get("csum_offset", 0),
                          gso_type=meta.get("gso_type", GSO_NONE),
                          gso_size=meta.get("gso_size", 0), hdr_len=meta.get("hdr_len", 0))
        else:
            frame = Frame(data)
        nic.txq.append(frame)
        self.counters.inc("tx_frames")

    def _neigh_resolved(self, nic: Nic, entry: NeighborEntry, items: list[Any]) -> None:
        mac = entry.mac
        assert mac is not None
        for ethertype, packet, meta in items:
            self._enqueue_frame(nic, mac, ethertype, packet, meta)

    def _neigh_failed(self, nic: Nic, entry: NeighborEntry, items: list[Any]) -> None:
        """Resolution gave up: Linux ``ipv4_link_failure`` / ``ip6_link_failure``
        send a host-unreachable ICMP to ourselves, which reaches the socket."""
        self.counters.drop(DropReason.NEIGHBOR_FAILED, len(items))
        seen: set[int] = set()
        for ethertype, packet, _meta in items:
            pkt = memoryview(packet)
            try:
                if ethertype == ETH_P_IP:
                    if len(pkt) < 20 or (struct.unpack_from("!H", pkt, 6)[0] & 0x1FFF):
                        continue
                    key = struct.unpack_from("!H", pkt, 4)[0]
                    if key in seen:
                        continue
                    seen.add(key)
                    self._report_local_error(4, pkt, I.ICMP_DEST_UNREACH, I.ICMP_HOST_UNREACH)
                else:
                    self._report_local_error(6, pkt, I.ICMPV6_DEST_UNREACH, I.ICMPV6_ADDR_UNREACH)
                    break
            except Exception:  # pragma: no cover - defensive
                log.debug("link-failure report failed", exc_info=True)

    def _report_local_error(self, version: int, quoted: memoryview, type_: int, code: int) -> None:
        info = self._parse_quoted(version, quoted)
        if info is None:
            return
        proto, qsrc, qdst, qtrans = info
        if version == 4:
            err_no, _ = I.icmpv4_errno(type_, code)
            fam = C.AF_INET
        else:
            err_no, _ = I.icmpv6_errno(type_, code)
            fam = C.AF_INET6
        err = IcmpError(fam, type_, code, err_no, qsrc, qsrc, qdst, proto, bytes(qtrans))
        t = self.transports.get(proto)
        if t is not None:
            t.handle_icmp_error(err, self.now)

    @overload
    def frames_to_send(self, nic_id: int) -> list[Frame]: ...
    @overload
    def frames_to_send(self, nic_id: None = None) -> list[tuple[int, Frame]]: ...

    def frames_to_send(self, nic_id: int | None = None) -> list[Frame] | list[tuple[int, Frame]]:
        """Take queued frames: of one NIC as ``[Frame]``, or of all as ``[(nic_id, Frame)]``."""
        if nic_id is not None:
            nic = self.nics.get(nic_id)
            if nic is None:
                return []
            self._egress_drained(nic_id)
            if not nic.txq:
                return []
            out = list(nic.txq)
            nic.txq.clear()
            return out
        pairs: list[tuple[int, Frame]] = []
        for nic in self.nics.values():
            self._egress_drained(nic.id)
            if nic.txq:
                pairs.extend((nic.id, f) for f in nic.txq)
                nic.txq.clear()
        return pairs

    def _egress_drained(self, nic_id: int) -> None:
        """The driver takes the NIC's queue: tell transports that keep a per-NIC
        budget of queued bytes (TCP small queues, ``Transport.handle_egress_room``).
        They only take note here; they send from the next ``handle_timer``."""
        if self._egress_hooks:
            now = self.now
            for hook in self._egress_hooks:
                hook(nic_id, now)

    def has_frames(self, nic_id: int) -> bool:
        """True when frames wait to be sent on ``nic_id``.

        False also counts as a drain (the same notice ``frames_to_send`` gives):
        a driver may skip ``frames_to_send`` on an empty queue, and bytes TCP
        counted as queued may never reach it (dropped on a full queue, or held
        by a neighbour that never answers), so TCP small queues must still hear
        that nothing of theirs waits.
        """
        nic = self.nics.get(nic_id)
        if nic is None:
            return False
        if nic.txq:
            return True
        if self._egress_hooks:
            self._egress_drained(nic_id)
        return False

    def _note_pmtu(self, dst: IPAddress, mtu: int) -> None:
        if dst not in self._pmtu and len(self._pmtu) >= MAX_PMTU_ENTRIES:
            # Forged "fragmentation needed" for many destinations must not grow
            # memory: forget the oldest entry (dicts keep insertion order).
            self._pmtu.pop(next(iter(self._pmtu)))
        old = self._pmtu.get(dst)
        if old is None or mtu < old[0] or old[1] <= self.now:
            self._pmtu[dst] = (mtu, self.now + PMTU_EXPIRES)

    # ------------------------------------------------------------------ input

    def handle_frame(self, nic_id: int, frame: Frame, now: float) -> None:
        """Process one received Ethernet frame. Never raises: every failure is a counted drop."""
        if self.clock is None:
            self._now = now
        try:
            nic = self.nics[nic_id]
            self.counters.inc("rx_frames")
            self._ethernet_input(nic, frame, now)
        except Truncated:
            self.counters.drop(DropReason.TRUNCATED)
        except MalformedPacket:
            self.counters.drop(DropReason.MALFORMED)
        except Exception:
            self.counters.drop(DropReason.INTERNAL_ERROR)
            log.debug("frame processing failed (counted as a drop)", exc_info=True)

    def _ethernet_input(self, nic: Nic, frame: Frame, now: float) -> None:
        data = frame.data
        if len(data) < ETH_HLEN:
            raise Truncated("ethernet")
        buf = memoryview(data)
        dmac = bytes(buf[0:6])
        if dmac != nic.mac and not (dmac[0] & 1):
            self.counters.drop(DropReason.NOT_FOR_US)
            return
        off = 12
        ethertype = (buf[12] << 8) | buf[13]
        tags = 0
        while ethertype in (ETH_P_8021Q, ETH_P_8021AD):
            tags += 1
            off += 4
            if tags > 2 or len(buf) < off + 2:
                raise Truncated("vlan")
            ethertype = (buf[off] << 8) | buf[off + 1]
        payload = buf[off + 2:]
        if ethertype == ETH_P_IP:
            self._ipv4_input(nic, payload, frame.csum_valid, now, link_bcast=bool(dmac[0] & 1))
        elif ethertype == ETH_P_IPV6:
            self._ipv6_input(nic, payload, frame.csum_valid, now, link_mcast=bool(dmac[0] & 1))
        elif ethertype == ETH_P_ARP:
            self._net_dirty = True
            self._arp_input(nic, payload, now)
        else:
            self.counters.drop(DropReason.BAD_ETHERTYPE)

    # ------------------------------------------------------------------- ARP

    def _arp_input(self, nic: Nic, buf: memoryview, now: float) -> None:
        if len(buf) < 28:
            raise Truncated("arp")
        htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", buf)
        if htype != 1 or ptype != ETH_P_IP or hlen != 6 or plen != 4 or op not in (1, 2):
            self.counters.drop(DropReason.ARP_INVALID)
            return
        sha = bytes(buf[8:14])
        spa = IPv4Address(bytes(buf[14:18]))
        tpa = IPv4Address(bytes(buf[24:28]))
        assert nic.arp is not None
        if sha[0] & 1 or _is_mcast(spa) or spa == V4_BCAST:
            self.counters.drop(DropReason.ARP_INVALID)
            return
        self.counters.inc("arp_rx")
        target_local = self._is_configured(tpa) and tpa.packed[0] != 127
        if spa == V4_ANY:
            # RFC 5227 ARP probe: answer if it asks for one of our addresses.
            if op == 1 and target_local:
                self._arp_send(nic, 2, sha, tpa, sha, spa)
            return
        if self.is_local_address(spa):
            # Someone else claims one of our addresses (RFC 5227 2.4): log only.
            log.debug("ARP from %s claims our address %s", sha.hex(":"), spa)
            return
        if op == 1 and target_local:
            nic.arp.handle_unsolicited(spa, sha, now, create=True)
            self._arp_send(nic, 2, sha, tpa, sha, spa)
            return
        if op == 2:
            nic.arp.handle_advertisement(spa, sha, now, solicited=True, override=True)
        else:
            # Gratuitous ARP or a request for someone else: update existing only
            # (Linux arp_accept=0).
            nic.arp.handle_unsolicited(spa, sha, now, create=False)

    def _arp_send(self, nic: Nic, op: int, dst_mac: bytes, spa: IPv4Address,
                  tha: bytes, tpa: IPv4Address) -> None:
        body = struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, op, nic.mac, spa.packed,
                           tha, tpa.packed)
        self._enqueue_frame(nic, dst_mac, ETH_P_ARP, body, None)
        self.counters.inc("arp_tx")

    def _arp_solicit(self, nic: Nic, ip: IPAddress, unicast: bytes | None) -> None:
        assert isinstance(ip, IPv4Address)
        src = None
        for a in nic.v4:
            if ip in a.network:
                src = a.ip
                break
        if src is None:
            src = nic.v4[0].ip if nic.v4 else V4_ANY
        self._arp_send(nic, 1, unicast or BROADCAST_MAC, src, unicast or ZERO_MAC, ip)

    # ------------------------------------------------------------------- IPv4

    def _accepts_v4(self, nic: Nic, dst: IPv4Address) -> bool:
        if self._is_configured(dst):
            return True
        if _is_mcast(dst):
            return self._joined(nic, dst)
        if dst == V4_BCAST:
            return True
        if nic.loopback:
            return dst.packed[0] == 127
        return any(a.network.prefixlen < 31 and dst == a.network.broadcast_address
                   for a in nic.v4)

    def _ipv4_input(self, nic: Nic, buf: memoryview, csum_valid: bool, now: float, *,
                    link_bcast: bool = False) -> None:
        if len(buf) < 20:
            raise Truncated("ipv4 header")
        # The fixed header in one unpack: no byte indexing, no address bytes.
        vihl, tos, total, ident, flags_off, ttl, proto, _c, s, d = _IP4_HDR.unpack_from(buf)
        if vihl >> 4 != 4:
            self.counters.drop(DropReason.BAD_IP_VERSION)
            return
        ihl = (vihl & 0x0F) * 4
        if ihl < 20 or total < ihl:
            raise MalformedPacket("ipv4 lengths")
        if total > len(buf):
            raise Truncated("ipv4 total length")
        pkt = buf[:total]  # strip Ethernet padding
        if not nic.loopback:
            if ihl == 20:
                # RFC 1071 over the ten header words: one unpack, no buffer copy.
                c = sum(_U10H.unpack_from(pkt))
                c = (c & 0xFFFF) + (c >> 16)
                ok = (c & 0xFFFF) + (c >> 16) == 0xFFFF
            else:
                ok = _csum_ok(pkt[:ihl])
            if not ok:
                self.counters.drop(DropReason.BAD_IP_CHECKSUM)
                return
        src = _addr4(s)
        dst = _addr4(d)
        if s >> 28 == 14 or s == 0xFFFFFFFF or (not nic.loopback and (
                s >> 24 == 127 or s in self._local4)):
            # Linux fib_validate_source: a martian (loopback, multicast, or one
            # of our own addresses arriving from a wire) is dropped.
            self.counters.drop(DropReason.BAD_SOURCE)
            return
        if ihl > 20:
            bad = self._ipv4_options_error(pkt, ihl)
            if bad is not None:
                # Linux ip_options_compile failure: parameter problem pointing
                # at the offending octet (RFC 1122 3.2.1.8, 3.2.2.5).
                self.counters.drop(DropReason.MALFORMED)
                if self._accepts_v4(nic, dst):
                    self._icmp4_error(nic, pkt[:ihl], pkt[ihl:], src, dst, I.ICMP_PARAMETERPROB,
                                      0, now, info=bad << 24)
                return
        if d not in self._local4 and not self._accepts_v4(nic, dst):  # (its first test, inline)
            self.counters.drop(DropReason.NOT_FOR_US)
            return
        self.counters.inc("ipv4_rx")
        self.rx_ttl_tos = (ttl, tos)
        payload = pkt[ihl:]
        if proto == C.IPPROTO_TCP and not flags_off & 0x3FFF:
            # The per-segment case, as _deliver_v4 does it for TCP (which never
            # asks for a port unreachable: it answers with its own RST).
            tcp = self.transports.get(proto)
            if tcp is not None:
                try:
                    tcp.handle_packet(src, dst, payload, now,
                                      checksum_valid=csum_valid or nic.loopback, nic_id=nic.id)
                except MalformedPacket:
                    self.counters.drop(DropReason.TRANSPORT_MALFORMED)
                return
        header = pkt[:ihl]
        if flags_off & 0x3FFF:
            more = bool(flags_off & 0x2000)
            off = (flags_off & 0x1FFF) * 8
            if more and len(payload) % 8:
                # Linux ip_frag_queue: a non-last fragment is cut to a multiple of 8.
                payload = payload[:len(payload) & ~7]
            key = (4, src, dst, proto, ident)
            first = (bytes(header), bytes(payload[:8]), nic.id) if off == 0 else None
            self._net_dirty = True
            done = self._reasm4.add(key, off, payload, more, now, first)
            if done is None:
                return
            data, first_info = done
            hdr = bytearray(first_info[0])
            struct.pack_into("!HH", hdr, 2, len(hdr) + len(data), 0)
            header = memoryview(bytes(hdr))
            payload = memoryview(data)
            csum_valid = False if not nic.loopback else csum_valid
        self._deliver_v4(nic, header, payload, src, dst, proto, csum_valid, now)

    @staticmethod
    def _ipv4_options_error(pkt: memoryview, ihl: int) -> int | None:
        """Offset of the first malformed IPv4 option, or None (RFC 791 3.1 layout)."""
        i = 20
        while i < ihl:
            otype = pkt[i]
            if otype == 0:  # End of Option List
                return None
            if otype == 1:  # No Operation
                i += 1
                continue
            if i + 1 >= ihl:
                return i
            olen = pkt[i + 1]
            if olen < 2 or i + olen > ihl:
                return i + 1
            i += olen
        return None

    def _deliver_v4(self, nic: Nic, header: memoryview, payload: memoryview, src: IPv4Address,
                    dst: IPv4Address, proto: int, csum_valid: bool, now: float) -> None:
        if proto == C.IPPROTO_ICMP:
            self._icmpv4_input(nic, header, payload, src, dst, csum_valid or nic.loopback, now)
            return
        if proto == C.IPPROTO_IGMP:
            self._igmp_input(nic, payload, dst, now)
            return
        t = self.transports.get(proto)
        if t is None:
            self.counters.drop(DropReason.UNKNOWN_PROTOCOL)
            self._icmp4_error(nic, header, payload, src, dst, I.ICMP_DEST_UNREACH,
                              I.ICMP_PROT_UNREACH, now)
            return
        try:
            res = t.handle_packet(src, dst, payload, now, checksum_valid=csum_valid or nic.loopback,
                                  nic_id=nic.id)
        except MalformedPacket:
            self.counters.drop(DropReason.TRANSPORT_MALFORMED)
            return
        if res is False:
            self.counters.drop(DropReason.NO_SOCKET)
            self._icmp4_error(nic, header, payload, src, dst, I.ICMP_DEST_UNREACH,
                              I.ICMP_PORT_UNREACH, now)

    def _icmp4_error(self, nic: Nic, header: memoryview | bytes, payload: memoryview | bytes,
                     src: IPv4Address, dst: IPv4Address, type_: int, code: int, now: float,
                     info: int = 0) -> None:
        """Send an ICMP error about a received packet (RFC 1122 3.2.2 rules)."""
        if _is_mcast(dst) or self.is_broadcast(dst) or src == V4_ANY or _is_mcast(src) \
                or self.is_broadcast(src):
            return
        if (header[6] << 8 | header[7]) & 0x1FFF:
            return  # not about non-first fragments
        proto = header[9]
        if proto == C.IPPROTO_ICMP and len(payload) >= 1 and payload[0] in _NO_ICMP_ERROR_V4:
            return  # never an error about an error
        if not self.is_local_address(src) and not self._icmp_limiter.allow(src, now):
            self.counters.drop(DropReason.ICMP_RATE_LIMITED)
            return
        quote = (bytes(header) + bytes(payload))[:ICMP_QUOTE_V4]
        msg = bytearray(struct.pack("!BBHI", type_, code, 0, info)) + quote
        struct.pack_into("!H", msg, 2, checksum(msg))
        try:
            route = self.route(src, src=dst if self._is_usable_local(dst) else None)
        except NetError:
            return
        # Linux icmp_send: TOS = original TOS | IPTOS_PREC_INTERNETCONTROL.
        self.output(route, src, C.IPPROTO_ICMP, msg, tos=(header[1] & 0x1E) | 0xC0,
                    dont_fragment=False)
        self.counters.inc("icmp_errors_tx")

    def _icmpv4_input(self, nic: Nic, header: memoryview, msg: memoryview, src: IPv4Address,
                      dst: IPv4Address, csum_valid: bool, now: float) -> None:
        self._net_dirty = True
        if len(msg) < 8:
            raise Truncated("icmp")
        if not csum_valid and not _csum_ok(msg):
            self.counters.drop(DropReason.BAD_L4_CHECKSUM)
            return
        type_, code = msg[0], msg[1]
        self.counters.inc("icmp_rx")
        if type_ == I.ICMP_ECHO:
            if (_is_mcast(dst) or self.is_broadcast(dst)) and self.config.icmp_echo_ignore_broadcasts:
                self.counters.drop(DropReason.ICMP_IGNORED)
                return
            reply = bytearray(msg)
            reply[0] = I.ICMP_ECHO_REPLY
            reply[2:4] = b"\x00\x00"
            struct.pack_into("!H", reply, 2, checksum(reply))
            try:
                route = self.route(src, src=dst if self._is_configured(dst) else None)
            except NetError:
                self.counters.drop(DropReason.NO_ROUTE)
                return
            # Linux answers with the request's TOS and never sets DF (icmp
            # sockets use IP_PMTUDISC_DONT), so large replies fragment.
            self.output(route, src, C.IPPROTO_ICMP, reply, tos=header[1], dont_fragment=False)
            self.counters.inc("icmp_echo_replies")
            return
        if type_ == I.ICMP_ECHO_REPLY:
            self.ping4.handle_reply(src, dst, bytes(msg), nic.id)
            for h in self._echo_handlers:
                h(src, dst, bytes(msg))
            return
        if type_ == I.ICMP_REDIRECT:
            self._redirect4_input(nic, msg, src, now)
            return
        if type_ in (I.ICMP_DEST_UNREACH, I.ICMP_TIME_EXCEEDED, I.ICMP_PARAMETERPROB):
            info_field = struct.unpack_from("!I", msg, 4)[0]
            quoted = msg[8:]
            parsed = self._parse_quoted(4, quoted)
            if parsed is None:
                self.counters.drop(DropReason.MALFORMED)
                return
            proto, qsrc, qdst, qtrans = parsed
            mtu = 0
            if type_ == I.ICMP_DEST_UNREACH and code == I.ICMP_FRAG_NEEDED:
                mtu = info_field & 0xFFFF
                if mtu >= 68:
                    self._note_pmtu(qdst, mtu)
            err_no, _ = I.icmpv4_errno(type_, code)
            err = IcmpError(C.AF_INET, type_, code, err_no, src, qsrc, qdst, proto, bytes(qtrans),
                            mtu=mtu, info=info_field, local=dst, nic_id=nic.id,
                            ttl=self.rx_ttl_tos[0], tos=self.rx_ttl_tos[1])
            t = self.transports.get(proto)
            if t is not None:
                t.handle_icmp_error(err, now)
            self.counters.inc("icmp_errors_rx")
            return
        self.counters.drop(DropReason.ICMP_IGNORED)

    def _parse_quoted(self, version: int, q: memoryview) -> tuple[int, IPAddress, IPAddress,
                                                                  memoryview] | None:
        """(protocol, src, dst, transport bytes) of a packet quoted in an ICMP error."""
        if version == 4:
            if len(q) < 20 or q[0] >> 4 != 4:
                return None
            ihl = (q[0] & 0x0F) * 4
            if ihl < 20 or len(q) < ihl + 8:
                return None
            return q[9], IPv4Address(bytes(q[12:16])), IPv4Address(bytes(q[16:20])), q[ihl:]
        if len(q) < 40 or q[0] >> 4 != 6:
            return None
        nh = q[6]
        off = 40
        while nh in (C.IPPROTO_HOPOPTS, C.IPPROTO_ROUTING, C.IPPROTO_DSTOPTS, C.IPPROTO_FRAGMENT):
            if len(q) < off + 8:
                return None
            if nh == C.IPPROTO_FRAGMENT:
                if (struct.unpack_from("!H", q, off + 2)[0] & 0xFFF8) != 0:
                    return None
                nh, off = q[off], off + 8
            else:
                nh, off = q[off], off + (q[off + 1] + 1) * 8
        if len(q) < off + 4:
            return None
        return nh, IPv6Address(bytes(q[8:24])), IPv6Address(bytes(q[24:40])), q[off:]

    def _igmp_input(self, nic: Nic, msg: memoryview, dst: IPv4Address, now: float) -> None:
        self._net_dirty = True  # queries schedule reports
        if len(msg) < 8:
            raise Truncated("igmp")
        if not _csum_ok(msg):
            self.counters.drop(DropReason.BAD_L4_CHECKSUM)
            return
        if msg[0] != 0x11:
            return  # reports of other hosts: nothing to do (no suppression in v3)
        group = IPv4Address(bytes(msg[4:8]))
        max_resp = msg[1] / 10.0 or 10.0
        if len(msg) == 8 and msg[1] != 0:
            nic.igmp_v2_until = now + IGMPV2_COMPAT_TIMEOUT
        groups = [g for g in nic.groups if g.version == 4 and self._reportable(g)
                  and (group == V4_ANY or g == group)]
        delay = self.rng.uniform(0, min(max_resp, 10.0))
        for g in groups:
            self._schedule_report(nic, g, 2, 1, delay)

    # ------------------------------------------------------------------- IPv6

    def _accepts_v6(self, nic: Nic, dst: IPv6Address) -> bool:
        if _is_mcast(dst):
            return self._joined(nic, dst)
        return self._is_configured(dst)

    def _joined(self, nic: Nic, group: IPAddress) -> bool:
        """Group joined on ``nic``; looped-back multicast counts joins on any NIC."""
        if nic.loopback:
            return any(n.groups.get(group, 0) > 0 for n in self.nics.values())
        return nic.groups.get(group, 0) > 0

    def _ipv6_input(self, nic: Nic, buf: memoryview, csum_valid: bool, now: float, *,
                    link_mcast: bool = False) -> None:
        if len(buf) < 40:
            raise Truncated("ipv6 header")
        if buf[0] >> 4 != 6:
            self.counters.drop(DropReason.BAD_IP_VERSION)
            return
        plen = (buf[4] << 8) | buf[5]
        if 40 + plen > len(buf):
            raise Truncated("ipv6 payload length")
        if plen == 0 and buf[6] == C.IPPROTO_HOPOPTS:
            self.counters.drop(DropReason.MALFORMED)  # jumbograms are not for Ethernet
            return
        pkt = buf[:40 + plen]
        src = _addr(bytes(pkt[8:24]))
        dst = _addr(bytes(pkt[24:40]))
        if _is_mcast(src) or (not nic.loopback and src == V6_LOOPBACK):
            self.counters.drop(DropReason.BAD_SOURCE)
            return
        if not self._accepts_v6(nic, dst):
            a = nic.v6_addr(dst)
            self.counters.drop(DropReason.TENTATIVE_ADDRESS if a is not None
                               else DropReason.NOT_FOR_US)
            return
        tentative_dst = False
        if not _is_mcast(dst):
            for n in self.nics.values():
                a = n.v6_addr(dst)
                if a is not None:
                    tentative_dst = a.state is AddrState.TENTATIVE
                    break
        self.counters.inc("ipv6_rx")
        self.rx_ttl_tos = (pkt[7], ((pkt[0] & 0x0F) << 4) | (pkt[1] >> 4))
        nh = pkt[6]
        nh_field = 6           # offset of the Next Header field that names ``nh``
        off = 40
        first_hdr = True
        while True:
            if nh == C.IPPROTO_HOPOPTS and not first_hdr:
                # RFC 8200 4.1: Hop-by-Hop only right after the base header.
                self._icmp6_error(nic, pkt, src, dst, I.ICMPV6_PARAMPROB,
                                  I.ICMPV6_UNK_NEXTHDR, nh_field, now)
                self.counters.drop(DropReason.MALFORMED)
                return
            first_hdr = False
            if nh in (C.IPPROTO_HOPOPTS, C.IPPROTO_DSTOPTS):
                if len(pkt) < off + 2:
                    raise Truncated("ipv6 options header")
                hlen = (pkt[off + 1] + 1) * 8
                if len(pkt) < off + hlen:
                    raise Truncated("ipv6 options header")
                if not self._ipv6_options(nic, pkt, off, hlen, src, dst, now):
                    return
                nh_field, nh, off = off, pkt[off], off + hlen
                continue
            if nh == C.IPPROTO_ROUTING:
                if len(pkt) < off + 4:
                    raise Truncated("routing header")
                hlen = (pkt[off + 1] + 1) * 8
                if len(pkt) < off + hlen:
                    raise Truncated("routing header")
                if pkt[off + 3] != 0:
                    # RFC 8200 4.4: segments left > 0 and we are not a router
                    # for any routing type (RH0 is deprecated, RFC 5095):
                    # parameter problem code 0 pointing at the Routing Type.
                    self.counters.drop(DropReason.IPV6_ROUTING)
                    self._icmp6_error(nic, pkt, src, dst, I.ICMPV6_PARAMPROB, I.ICMPV6_HDR_FIELD,
                                      off + 2, now)
                    return
                nh_field, nh, off = off, pkt[off], off + hlen
                continue
            if nh == C.IPPROTO_FRAGMENT:
                if len(pkt) < off + 8:
                    raise Truncated("fragment header")
                fo = struct.unpack_from("!H", pkt, off + 2)[0]
                ident = struct.unpack_from("!I", pkt, off + 4)[0]
                frag_off, more = fo & 0xFFF8, bool(fo & 1)
                inner_nh = pkt[off]
                data = pkt[off + 8:]
                if frag_off == 0 and not more:
                    # RFC 6946: atomic fragment, process as is.
                    nh_field, nh, off = off, inner_nh, off + 8
                    continue
                if more and len(data) % 8:
                    # RFC 8200 4.5: param problem code 0 pointing at Payload Length.
                    self.counters.drop(DropReason.MALFORMED)
                    self._icmp6_error(nic, pkt, src, dst, I.ICMPV6_PARAMPROB,
                                      I.ICMPV6_HDR_FIELD, 4, now)
                    return
                if frag_off + len(data) > 65535:
                    self.counters.drop(DropReason.FRAG_TOO_BIG)
                    self._icmp6_error(nic, pkt, src, dst, I.ICMPV6_PARAMPROB,
                                      I.ICMPV6_HDR_FIELD, off + 2, now)
                    return
                if frag_off == 0 and self._header_chain_truncated(inner_nh, data):
                    # RFC 7112 / Linux ipv6frag_thdr_truncated: the first fragment
                    # must hold the whole header chain: param problem code 3.
                    self.counters.drop(DropReason.MALFORMED)
                    self._icmp6_error(nic, pkt, src, dst, I.ICMPV6_PARAMPROB, 3, 0, now)
                    return
                key = (6, src, dst, ident)
                first = (bytes(pkt[:off]), inner_nh, nh_field, nic.id, bytes(pkt)) \
                    if frag_off == 0 else None
                self._net_dirty = True
                done = self._reasm6.add(key, frag_off, data, more, now, first)
                if done is None:
                    return
                payload, finfo = done
                unfrag = bytearray(finfo[0])
                unfrag[finfo[2]] = finfo[1]  # the Fragment header goes away
                struct.pack_into("!H", unfrag, 4, len(unfrag) - 40 + len(payload))
                pkt = memoryview(bytes(unfrag) + payload)
                nh, nh_field, off = finfo[1], finfo[2], len(unfrag)
                csum_valid = False if not nic.loopback else csum_valid
                continue
            if nh == C.IPPROTO_NONE:
                return
            break
        transport = pkt[off:]
        if nh == C.IPPROTO_ICMPV6:
            self._icmpv6_input(nic, pkt, transport, src, dst, csum_valid or nic.loopback, now,
                               tentative_dst=tentative_dst)
            return
        if tentative_dst:
            # RFC 4862 5.4: a tentative address accepts only NDP for DAD.
            self.counters.drop(DropReason.TENTATIVE_ADDRESS)
            return
        t = self.transports.get(nh)
        if t is None:
            # RFC 8200 4: unknown Next Header -> param problem code 1 at its field.
            self.counters.drop(DropReason.UNKNOWN_PROTOCOL)
            self._icmp6_error(nic, pkt, src, dst, I.ICMPV6_PARAMPROB, I.ICMPV6_UNK_NEXTHDR,
                              nh_field, now)
            return
        try:
            res = t.handle_packet(src, dst, transport, now, checksum_valid=csum_valid or nic.loopback,
                                  nic_id=nic.id)
        except MalformedPacket:
            self.counters.drop(DropReason.TRANSPORT_MALFORMED)
            return
        if res is False:
            self.counters.drop(DropReason.NO_SOCKET)
            self._icmp6_error(nic, pkt, src, dst, I.ICMPV6_DEST_UNREACH, I.ICMPV6_PORT_UNREACH,
                              0, now)

    @staticmethod
    def _header_chain_truncated(nh: int, data: memoryview) -> bool:
        """True when ``data`` (after a Fragment header) ends inside the header chain."""
        off = 0
        while nh in (C.IPPROTO_HOPOPTS, C.IPPROTO_ROUTING, C.IPPROTO_DSTOPTS):
            if off + 2 > len(data):
                return True
            nh, off = data[off], off + (data[off + 1] + 1) * 8
        need = {C.IPPROTO_TCP: 20, C.IPPROTO_UDP: 8, C.IPPROTO_ICMPV6: 8}.get(nh, 0)
        return off + need > len(data)

    def _ipv6_options(self, nic: Nic, pkt: memoryview, off: int, hlen: int, src: IPv6Address,
                      dst: IPv6Address, now: float) -> bool:
        """Walk Hop-by-Hop / Destination options (RFC 8200 4.2); False = packet dropped."""
        i = off + 2
        end = off + hlen
        while i < end:
            otype = pkt[i]
            if otype == 0:  # Pad1
                i += 1
                continue
            if i + 2 > end:
                raise MalformedPacket("option runs past its header")
            olen = pkt[i + 1]
            if i + 2 + olen > end:
                raise MalformedPacket("option runs past its header")
            if otype in (1, 5):  # PadN, Router Alert
                i += 2 + olen
                continue
            action = otype >> 6
            if action == 0:
                i += 2 + olen
                continue
            self.counters.drop(DropReason.IPV6_OPTION)
            if action == 2 or (action == 3 and not _is_mcast(dst)):
                self._icmp6_error(nic, pkt, src, dst, I.ICMPV6_PARAMPROB, I.ICMPV6_UNK_OPTION,
                                  i, now, allow_multicast=True)
            return False
        return True

    def _icmp6_error(self, nic: Nic, pkt: memoryview | bytes, src: IPv6Address, dst: IPv6Address,
                     type_: int, code: int, info: int, now: float, *,
                     allow_multicast: bool = False) -> None:
        """Send an ICMPv6 error about a received packet (RFC 4443 2.4 rules)."""
        if src == V6_ANY or _is_mcast(src):
            return
        if _is_mcast(dst) and not (allow_multicast or type_ == I.ICMPV6_PKT_TOOBIG):
            return
        # (e.1) never about an ICMPv6 error message: find the upper layer.
        parsed = self._parse_quoted(6, memoryview(bytes(pkt[:200])))
        if parsed is not None and parsed[0] == C.IPPROTO_ICMPV6 and len(parsed[3]) >= 1 \
                and parsed[3][0] < 128:
            return
        if not self.is_local_address(src) and not self._icmp_limiter.allow(src, now):
            self.counters.drop(DropReason.ICMP_RATE_LIMITED)
            return
        quote = bytes(pkt[:ICMP_QUOTE_V6])
        try:
            reply_src = dst if (not _is_mcast(dst) and self._is_usable_local(dst)) else None
            route = self.route(src, src=reply_src, bound_nic=nic.id if src.is_link_local else None)
        except NetError:
            return
        msg = bytearray(struct.pack("!BBHI", type_, code, 0, info)) + quote
        struct.pack_into("!H", msg, 2, checksum(msg, pseudo_header_sum(
            route.src, src, C.IPPROTO_ICMPV6, len(msg))))
        self.output(route, src, C.IPPROTO_ICMPV6, msg, dont_fragment=False)
        self.counters.inc("icmp6_errors_tx")

    def _icmpv6_input(self, nic: Nic, pkt: memoryview, msg: memoryview, src: IPv6Address,
                      dst: IPv6Address, csum_valid: bool, now: float, *,
                      tentative_dst: bool) -> None:
        self._net_dirty = True  # NDP (DAD, RA routes and lifetimes), MLD queries
        if len(msg) < 4:
            raise Truncated("icmpv6")
        if not csum_valid and not _csum_ok(msg, pseudo_header_sum(src, dst, C.IPPROTO_ICMPV6,
                                                                     len(msg))):
            self.counters.drop(DropReason.BAD_L4_CHECKSUM)
            return
        type_, code = msg[0], msg[1]
        hop = pkt[7]
        self.counters.inc("icmp6_rx")
        if tentative_dst and type_ not in (I.ICMPV6_NS, I.ICMPV6_NA):
            self.counters.drop(DropReason.TENTATIVE_ADDRESS)
            return
        if type_ == I.ICMPV6_ECHO_REQUEST:
            if len(msg) < 8:
                raise Truncated("echo")
            reply = bytearray(msg)
            reply[0] = I.ICMPV6_ECHO_REPLY
            reply[2:4] = b"\x00\x00"
            try:
                route = self.route(src, src=None if _is_mcast(dst) else dst,
                                   bound_nic=nic.id if src.is_link_local and not nic.loopback
                                   else None)
            except NetError:
                self.counters.drop(DropReason.NO_ROUTE)
                return
            struct.pack_into("!H", reply, 2, checksum(reply, pseudo_header_sum(
                route.src, src, C.IPPROTO_ICMPV6, len(reply))))
            self.output(route, src, C.IPPROTO_ICMPV6, reply, tos=((pkt[0] & 0x0F) << 4) | (pkt[1] >> 4),
                        dont_fragment=False)
            self.counters.inc("icmp6_echo_replies")
            return
        if type_ == I.ICMPV6_ECHO_REPLY:
            if len(msg) >= 8:
                self.ping6.handle_reply(src, dst, bytes(msg), nic.id)
            for h in self._echo_handlers:
                h(src, dst, bytes(msg))
            return
        if type_ in (I.ICMPV6_DEST_UNREACH, I.ICMPV6_PKT_TOOBIG, I.ICMPV6_TIME_EXCEED,
                     I.ICMPV6_PARAMPROB):
            if len(msg) < 8:
                raise Truncated("icmpv6 error")
            info_field = struct.unpack_from("!I", msg, 4)[0]
            parsed = self._parse_quoted(6, msg[8:])
            if parsed is None:
                self.counters.drop(DropReason.MALFORMED)
                return
            proto, qsrc, qdst, qtrans = parsed
            mtu = 0
            if type_ == I.ICMPV6_PKT_TOOBIG:
                mtu = max(info_field, 1280)
                self._note_pmtu(qdst, mtu)
            err_no, _ = I.icmpv6_errno(type_, code)
            err = IcmpError(C.AF_INET6, type_, code, err_no, src, qsrc, qdst, proto,
                            bytes(qtrans), mtu=mtu, info=info_field, local=dst, nic_id=nic.id,
                            ttl=self.rx_ttl_tos[0], tos=self.rx_ttl_tos[1])
            t = self.transports.get(proto)
            if t is not None:
                t.handle_icmp_error(err, now)
            self.counters.inc("icmp6_errors_rx")
            return
        if type_ in (I.ICMPV6_NS, I.ICMPV6_NA, I.ICMPV6_RA, I.ICMPV6_RS, I.ICMPV6_REDIRECT):
            # RFC 4861 6.1, 7.1: hop limit 255 and code 0, or not NDP at all.
            if hop != 255 or code != 0 or nic.loopback:
                self.counters.drop(DropReason.NDP_INVALID)
                return
            if type_ == I.ICMPV6_NS:
                self._ns_input(nic, msg, src, dst, now)
            elif type_ == I.ICMPV6_NA:
                self._na_input(nic, msg, src, dst, now)
            elif type_ == I.ICMPV6_RA:
                self._ra_input(nic, msg, src, now)
            elif type_ == I.ICMPV6_REDIRECT:
                self._redirect6_input(nic, msg, src, now)
            return
        if type_ == I.ICMPV6_MLD_QUERY:
            self._mld_query(nic, msg, now)
            return
        if type_ < 128:
            self.counters.drop(DropReason.ICMP_IGNORED)
        # Unknown informational messages are silently discarded (RFC 4443 2.4(b)).

    # -------------------------------------------------------------------- NDP

    @staticmethod
    def _nd_options(msg: memoryview, start: int) -> dict[int, list[memoryview]] | None:
        """ND options by type; None when an option has length 0 (RFC 4861 4.6)."""
        opts: dict[int, list[memoryview]] = {}
        i = start
        while i + 2 <= len(msg):
            otype, olen = msg[i], msg[i + 1] * 8
            if olen == 0 or i + olen > len(msg):
                return None
            opts.setdefault(otype, []).append(msg[i:i + olen])
            i += olen
        return opts

    def _ns_input(self, nic: Nic, msg: memoryview, src: IPv6Address, dst: IPv6Address,
                  now: float) -> None:
        if len(msg) < 24:
            self.counters.drop(DropReason.NDP_INVALID)
            return
        target = IPv6Address(bytes(msg[8:24]))
        opts = self._nd_options(msg, 24)
        if opts is None or _is_mcast(target):
            self.counters.drop(DropReason.NDP_INVALID)
            return
        slla = bytes(opts[1][0][2:8]) if 1 in opts and len(opts[1][0]) >= 8 else None
        if src == V6_ANY and (slla is not None or dst != solicited_node(target)):
            self.counters.drop(DropReason.NDP_INVALID)
            return
        a = nic.v6_addr(target)
        if a is None:
            self.counters.drop(DropReason.NOT_FOR_US)
            return
        self.counters.inc("ndp_ns_rx")
        if a.state is AddrState.TENTATIVE:
            if src == V6_ANY:
                # RFC 4862 5.4.3: someone else is doing DAD for it: duplicate.
                self._dad_failed(nic, a)
            return
        assert nic.ndp is not None
        if src == V6_ANY:
            # Reply to all-nodes (RFC 4861 7.2.4), not solicited.
            self._send_na(nic, target, V6_ALL_NODES, solicited=False)
            return
        if slla is not None:
            nic.ndp.handle_unsolicited(src, slla, now, create=True)
        self._send_na(nic, target, src, solicited=True, link_dst=slla)

    def _send_na(self, nic: Nic, target: IPv6Address, dst: IPv6Address, *, solicited: bool,
                 link_dst: bytes | None = None) -> None:
        flags = (0x40000000 if solicited else 0) | 0x20000000  # S, O (not a router)
        body = bytearray(struct.pack("!BBHI16s", I.ICMPV6_NA, 0, 0, flags, target.packed))
        body += bytes((2, 1)) + nic.mac  # Target Link-Layer Address option
        src = target
        struct.pack_into("!H", body, 2, checksum(body, pseudo_header_sum(
            src, dst, C.IPPROTO_ICMPV6, len(body))))
        self._output_v6_raw(nic, src, dst, C.IPPROTO_ICMPV6, body, hop_limit=255,
                            link_dst=link_dst)
        self.counters.inc("ndp_na_tx")

    def _na_input(self, nic: Nic, msg: memoryview, src: IPv6Address, dst: IPv6Address,
                  now: float) -> None:
        if len(msg) < 24:
            self.counters.drop(DropReason.NDP_INVALID)
            return
        flags = msg[4]
        router, solicited, override = bool(flags & 0x80), bool(flags & 0x40), bool(flags & 0x20)
        target = IPv6Address(bytes(msg[8:24]))
        opts = self._nd_options(msg, 24)
        if opts is None or _is_mcast(target) or (_is_mcast(dst) and solicited):
            self.counters.drop(DropReason.NDP_INVALID)
            return
        self.counters.inc("ndp_na_rx")
        a = nic.v6_addr(target)
        if a is not None:
            if a.state is AddrState.TENTATIVE:
                self._dad_failed(nic, a)  # RFC 4862 5.4.4
            else:
                log.debug("NA from %s for our address %s", src, target)
            return
        tlla = bytes(opts[2][0][2:8]) if 2 in opts and len(opts[2][0]) >= 8 else None
        assert nic.ndp is not None
        entry = nic.ndp.get(target)
        was_router = entry is not None and entry.is_router
        nic.ndp.handle_advertisement(target, tlla, now, solicited=solicited, override=override,
                                     is_router=router)
        if was_router and not router:
            # RFC 4861 7.2.5: IsRouter went TRUE -> FALSE: no longer a default router.
            self.routes.remove(IPv6Network("::/0"), nic_id=nic.id, gateway=target)

    def _ndp_solicit(self, nic: Nic, ip: IPAddress, unicast: bytes | None) -> None:
        assert isinstance(ip, IPv6Address)
        src = self._select_source(nic, ip, None)
        if src == V6_ANY:
            return
        dst = ip if unicast else solicited_node(ip)
        body = bytearray(struct.pack("!BBHI16s", I.ICMPV6_NS, 0, 0, 0, ip.packed))
        body += bytes((1, 1)) + nic.mac  # Source Link-Layer Address option
        struct.pack_into("!H", body, 2, checksum(body, pseudo_header_sum(
            src, dst, C.IPPROTO_ICMPV6, len(body))))
        self._output_v6_raw(nic, src, dst, C.IPPROTO_ICMPV6, body, hop_limit=255,
                            link_dst=unicast)
        self.counters.inc("ndp_ns_tx")

    def _send_dad_ns(self, nic: Nic, a: Ipv6Addr) -> None:
        dst = solicited_node(a.ip)
        body = bytearray(struct.pack("!BBHI16s", I.ICMPV6_NS, 0, 0, 0, a.ip.packed))
        struct.pack_into("!H", body, 2, checksum(body, pseudo_header_sum(
            V6_ANY, dst, C.IPPROTO_ICMPV6, len(body))))
        self._output_v6_raw(nic, V6_ANY, dst, C.IPPROTO_ICMPV6, body, hop_limit=255)
        self.counters.inc("ndp_dad_tx")

    def _dad_failed(self, nic: Nic, a: Ipv6Addr) -> None:
        self._net_dirty = True
        log.warning("DAD failed: %s is in use on %s", a.ip, nic.name)
        self.counters.inc("dad_failed")
        self._drop_v6(nic, a)

    def _address_ready(self, nic: Nic, a: Ipv6Addr, now: float) -> None:
        self._net_dirty = True
        a.state = AddrState.PREFERRED
        a.dad_at = None
        if a.origin == "link-local" and not nic.loopback and self.config.accept_ra \
                and self.config.router_solicitations > 0:
            # RFC 4861 6.3.7: RS once a link-local address is usable.
            nic.rs_sent = 0
            nic.rs_at = now

    def _send_rs(self, nic: Nic) -> None:
        src = nic.link_local()
        if src is None:
            return
        body = bytearray(struct.pack("!BBHI", I.ICMPV6_RS, 0, 0, 0))
        body += bytes((1, 1)) + nic.mac
        struct.pack_into("!H", body, 2, checksum(body, pseudo_header_sum(
            src, V6_ALL_ROUTERS, C.IPPROTO_ICMPV6, len(body))))
        self._output_v6_raw(nic, src, V6_ALL_ROUTERS, C.IPPROTO_ICMPV6, body, hop_limit=255)
        self.counters.inc("ndp_rs_tx")

    def _ra_input(self, nic: Nic, msg: memoryview, src: IPv6Address, now: float) -> None:
        if not src.is_link_local or len(msg) < 16:
            self.counters.drop(DropReason.NDP_INVALID)
            return
        opts = self._nd_options(msg, 16)
        if opts is None:
            self.counters.drop(DropReason.NDP_INVALID)
            return
        if not self.config.accept_ra:
            return
        self.counters.inc("ndp_ra_rx")
        nic.rs_at = None  # got an answer; stop soliciting
        cur_hop, _flags, lifetime, reachable, retrans = struct.unpack_from("!BBHII", msg, 4)
        assert nic.ndp is not None
        if cur_hop:
            nic.hop_limit = cur_hop
        if reachable:
            nic.ndp.base_reachable_time = reachable / 1000.0
        if retrans:
            nic.ndp.retrans_timer = retrans / 1000.0
        default = IPv6Network("::/0")
        self.routes.remove(default, nic_id=nic.id, gateway=src, metric=V6_RA_ROUTE_METRIC)
        if lifetime:
            self.routes.add(RouteEntry(default, nic.id, gateway=src, metric=V6_RA_ROUTE_METRIC,
                                       expires_at=now + lifetime, origin="ra"))
        for o in opts.get(1, []):
            if len(o) >= 8:
                nic.ndp.handle_unsolicited(src, bytes(o[2:8]), now, create=True, is_router=True)
        for o in opts.get(5, []):
            if len(o) >= 8:
                mtu = struct.unpack_from("!I", o, 4)[0]
                if 1280 <= mtu <= nic.mtu:
                    nic.mtu6 = mtu
        for o in opts.get(3, []):
            if len(o) == 32:
                self._prefix_info(nic, o, now)

    def _prefix_info(self, nic: Nic, o: memoryview, now: float) -> None:
        plen, pflags = o[2], o[3]
        valid, preferred = struct.unpack_from("!II", o, 4)
        try:
            net = IPv6Network((bytes(o[16:32]), plen), strict=False)
        except ValueError:
            return
        if net.is_link_local or net.is_multicast or preferred > valid:
            return
        if pflags & 0x80:  # on-link (RFC 4861 6.3.4)
            existed = self.routes.remove(net, nic_id=nic.id, gateway=None)
            if valid and not existed and sum(1 for r in self.routes if r.origin == "ra") \
                    >= MAX_RA_ROUTES:
                self.counters.drop(DropReason.NDP_INVALID)  # too many RA routes: ignore more
            elif valid:
                self.routes.add(RouteEntry(net, nic.id, metric=V6_ROUTE_METRIC, origin="ra",
                                           expires_at=None if valid == INFINITE else now + valid))
        if pflags & 0x40 and self.config.autoconf and plen == 64:  # SLAAC (RFC 4862 5.5.3)
            ip = IPv6Address(net.network_address.packed[:8] + eui64_interface_id(nic.mac))
            a = nic.v6_addr(ip)
            if a is not None:
                # 5.5.3(e): never shorten the valid lifetime below 2 hours by an RA.
                remaining = (a.valid_until - now) if a.valid_until is not None else None
                if valid == INFINITE:
                    a.valid_until = None
                elif valid > 7200 or remaining is None or valid > remaining:
                    a.valid_until = now + valid
                elif remaining > 7200:
                    a.valid_until = now + 7200
                a.preferred_until = None if preferred == INFINITE else now + preferred
                if a.state is AddrState.DEPRECATED and preferred:
                    a.state = AddrState.PREFERRED
            elif valid and sum(1 for b in nic.v6 if b.origin == "slaac") < MAX_SLAAC_ADDRESSES:
                self.add_address(nic.id, IPv6Interface(f"{ip}/64"), _origin="slaac", _route=False,
                                 valid_lifetime=None if valid == INFINITE else valid,
                                 preferred_lifetime=None if preferred == INFINITE else preferred)
                self.counters.inc("slaac_addresses")

    def _redirect4_input(self, nic: Nic, msg: memoryview, src: IPv4Address, now: float) -> None:
        """ICMP redirect (RFC 1122 3.2.2.2; Linux accept_redirects=1, secure_redirects=1):
        accepted only from the current gateway of the destination, for a new
        gateway on the same link; installs a host route that expires."""
        if len(msg) < 8 + 28 or msg[1] > 3:
            self.counters.drop(DropReason.ICMP_IGNORED)
            return
        new_gw = IPv4Address(bytes(msg[4:8]))
        parsed = self._parse_quoted(4, msg[8:])
        if parsed is None:
            self.counters.drop(DropReason.MALFORMED)
            return
        dst = parsed[2]
        cur = self.routes.lookup(dst, now=now)
        on_link = self.routes.lookup(new_gw, nic_id=nic.id, now=now)
        if cur is None or cur.gateway != src or on_link is None or on_link.gateway is not None \
                or self._is_configured(new_gw) or new_gw == src:
            self.counters.drop(DropReason.ICMP_IGNORED)
            return
        host = IPv4Network(f"{dst}/32")
        self.routes.remove(host, nic_id=nic.id)
        self.routes.add(RouteEntry(host, nic.id, gateway=new_gw, origin="redirect",
                                   expires_at=now + PMTU_EXPIRES))
        self.counters.inc("redirects_accepted")

    def _redirect6_input(self, nic: Nic, msg: memoryview, src: IPv6Address, now: float) -> None:
        """NDP Redirect (RFC 4861 8.1 validity, 8.3 host processing)."""
        if not src.is_link_local or len(msg) < 40:
            self.counters.drop(DropReason.NDP_INVALID)
            return
        target = IPv6Address(bytes(msg[8:24]))
        dst = IPv6Address(bytes(msg[24:40]))
        opts = self._nd_options(msg, 40)
        cur = self.routes.lookup(dst, nic_id=nic.id, now=now)
        if opts is None or _is_mcast(dst) or not (target.is_link_local or target == dst) \
                or cur is None or cur.gateway != src:
            # 8.1: the source must be the current first hop for the destination.
            self.counters.drop(DropReason.NDP_INVALID)
            return
        host = IPv6Network(f"{dst}/128")
        self.routes.remove(host, nic_id=nic.id)
        self.routes.add(RouteEntry(host, nic.id, gateway=None if target == dst else target,
                                   metric=0, origin="redirect", expires_at=now + PMTU_EXPIRES))
        tlla = opts.get(2)
        if tlla and len(tlla[0]) >= 8:
            assert nic.ndp is not None
            nic.ndp.handle_unsolicited(target, bytes(tlla[0][2:8]), now, create=True)
        self.counters.inc("redirects_accepted")

    def _mld_query(self, nic: Nic, msg: memoryview, now: float) -> None:
        if len(msg) < 24:
            self.counters.drop(DropReason.MALFORMED)
            return
        max_resp = struct.unpack_from("!H", msg, 4)[0] / 1000.0
        group = IPv6Address(bytes(msg[8:24]))
        groups = [g for g in nic.groups if g.version == 6 and self._reportable(g)
                  and (group == V6_ANY or g == group)]
        delay = self.rng.uniform(0, min(max_resp or 10.0, 10.0))
        for g in groups:
            self._schedule_report(nic, g, 2, 1, delay)

    # ----------------------------------------------------------------- timers

    def handle_timer(self, now: float) -> None:
        """Run everything due at ``now`` and deliver locally looped packets."""
        if self.clock is None:
            self._now = now
        try:
            self._timers(now)
        except Exception:
            self.counters.drop(DropReason.INTERNAL_ERROR)
            log.debug("timer processing failed", exc_info=True)
        self.process_local(now)

    def _timers(self, now: float) -> None:
        for nic in self.nics.values():
            # Neighbour caches keep their own deadline (cheap to ask).
            if nic.arp is not None:
                nic.arp.handle_timer(now)
            if nic.ndp is not None:
                nic.ndp.handle_timer(now)
        if self._net_dirty or (self._net_deadline is not None and self._net_deadline <= now):
            self._net_timers(now)
            self._net_dirty = True
        for t in self._timed:
            t.handle_timer(now)

    def _net_timers(self, now: float) -> None:
        """The network layer's own timers (everything ``_net_deadline`` covers)."""
        for q in self._reasm4.expire(now):
            if q.first is not None:
                hdr, head, nic_id = q.first
                nic = self.nics.get(nic_id)
                if nic is not None:
                    src, dst = IPv4Address(hdr[12:16]), IPv4Address(hdr[16:20])
                    self._icmp4_error(nic, hdr, head, src, dst, I.ICMP_TIME_EXCEEDED,
                                      I.ICMP_EXC_FRAGTIME, now)
        for q in self._reasm6.expire(now):
            if q.first is not None:
                _unfrag, _nh, _f, nic_id, first_pkt = q.first
                nic = self.nics.get(nic_id)
                if nic is not None:
                    src6, dst6 = IPv6Address(first_pkt[8:24]), IPv6Address(first_pkt[24:40])
                    self._icmp6_error(nic, first_pkt, src6, dst6, I.ICMPV6_TIME_EXCEED,
                                      I.ICMPV6_EXC_FRAGTIME, 0, now)
        for r in self.routes.expire(now):
            log.debug("route expired: %s via %s", r.dst, r.gateway)
        for nic in list(self.nics.values()):
            for a in list(nic.v6):
                if a.dad_at is not None and a.dad_at <= now:
                    if a.dad_sent < self.config.dad_transmits:
                        a.dad_sent += 1
                        a.dad_at = now + (nic.ndp.retrans_timer if nic.ndp else 1.0)
                        self._send_dad_ns(nic, a)
                    else:
                        self._address_ready(nic, a, now)
                if a.valid_until is not None and a.valid_until <= now:
                    self._drop_v6(nic, a)
                elif a.preferred_until is not None and a.preferred_until <= now \
                        and a.state is AddrState.PREFERRED:
                    a.state = AddrState.DEPRECATED
            if nic.rs_at is not None and nic.rs_at <= now:
                if nic.rs_sent < self.config.router_solicitations:
                    nic.rs_sent += 1
                    self._send_rs(nic)
                    nic.rs_at = now + self.config.router_solicitation_interval
                else:
                    nic.rs_at = None
            if nic.report_at is not None and nic.report_at <= now:
                self._send_reports(nic, now)

    def process_local(self, now: float) -> int:
        """Deliver packets looped back to local addresses; returns how many."""
        n = 0
        lo = self.nics[LOOPBACK_NIC]
        while self._local and n < LOCAL_BATCH:
            version, pkt = self._local.popleft()
            n += 1
            try:
                if version == 4:
                    self._ipv4_input(lo, memoryview(pkt), True, now)
                else:
                    self._ipv6_input(lo, memoryview(pkt), True, now)
            except MalformedPacket:
                self.counters.drop(DropReason.MALFORMED)
            except Exception:
                self.counters.drop(DropReason.INTERNAL_ERROR)
                log.debug("local delivery failed", exc_info=True)
        return n

    def next_deadline(self) -> float | None:
        """The earliest time ``handle_timer`` has work; ``-inf`` when it has now.

        Cheap (the driver asks after every turn and socket call): the network
        layer's own timers are recomputed only after something armed one
        (``_net_dirty``); neighbour caches and transports keep their own.
        """
        if self._local:
            return float("-inf")
        if self._net_dirty:
            self._net_deadline = self._compute_net_deadline()
            self._net_dirty = False
        best = self._net_deadline
        for nic in self.nics.values():
            arp, ndp = nic.arp, nic.ndp
            if arp is not None:
                d = arp.next_deadline()
                if d is not None and (best is None or d < best):
                    best = d
            if ndp is not None:
                d = ndp.next_deadline()
                if d is not None and (best is None or d < best):
                    best = d
        for t in self._timed:
            d = t.next_deadline()
            if d is not None and (best is None or d < best):
                best = d
        return best

    def _compute_net_deadline(self) -> float | None:
        times: list[float] = []
        for d in (self._reasm4.next_deadline(), self._reasm6.next_deadline(),
                  self.routes.next_deadline()):
            if d is not None:
                times.append(d)
        for nic in self.nics.values():
            for a in nic.v6:
                for d in (a.dad_at, a.valid_until, a.preferred_until if a.state is
                          AddrState.PREFERRED else None):
                    if d is not None:
                        times.append(d)
            if nic.rs_at is not None:
                times.append(nic.rs_at)
            if nic.report_at is not None:
                times.append(nic.report_at)
        return min(times) if times else None

    # ---------------------------------------------------------------- sockets

    def socket(self, family: int, type: int, proto: int = 0) -> Socket:
        """A new socket (Linux ``socket(2)`` rules for family/type/protocol)."""
        if family not in (C.AF_INET, C.AF_INET6):
            raise NetError(errno.EAFNOSUPPORT)
        base = type & 0xF  # strip SOCK_NONBLOCK / SOCK_CLOEXEC
        if base == C.SOCK_DGRAM:
            if proto in (0, C.IPPROTO_UDP):
                return self.udp.socket(family)
            if proto == C.IPPROTO_ICMP and family == C.AF_INET:
                return self.ping4.socket(family)
            if proto == C.IPPROTO_ICMPV6 and family == C.AF_INET6:
                return self.ping6.socket(family)
            raise NetError(errno.EPROTONOSUPPORT)
        if base == C.SOCK_STREAM:
            if proto not in (0, C.IPPROTO_TCP):
                raise NetError(errno.EPROTONOSUPPORT)
            tcp = self.transports.get(C.IPPROTO_TCP)
            if tcp is None:
                raise NetError(errno.EPROTONOSUPPORT, "TCP is not available")
            return tcp.socket(family)  # type: ignore[no-any-return]
        raise NetError(errno.ESOCKTNOSUPPORT)

    def add_echo_reply_handler(self, fn: Callable[[IPAddress, IPAddress, bytes], None]) -> None:
        """Call ``fn(src, dst, icmp_message)`` for every echo reply received (ping tools)."""
        self._echo_handlers.append(fn)

    def send_echo_request(self, dst: IPAddress, ident: int, seq: int, payload: bytes = b"", *,
                          bound_nic: int | None = None) -> None:
        """Send one ICMP/ICMPv6 echo request (for tests and tools)."""
        route = self.route(dst, bound_nic=bound_nic)
        if dst.version == 4:
            msg = bytearray(struct.pack("!BBHHH", I.ICMP_ECHO, 0, 0, ident, seq)) + payload
            struct.pack_into("!H", msg, 2, checksum(msg))
            self.output(route, dst, C.IPPROTO_ICMP, msg, dont_fragment=False)
        else:
            msg = bytearray(struct.pack("!BBHHH", I.ICMPV6_ECHO_REQUEST, 0, 0, ident, seq)) + payload
            struct.pack_into("!H", msg, 2, checksum(msg, pseudo_header_sum(
                route.src, dst, C.IPPROTO_ICMPV6, len(msg))))
            self.output(route, dst, C.IPPROTO_ICMPV6, msg, dont_fragment=False)
