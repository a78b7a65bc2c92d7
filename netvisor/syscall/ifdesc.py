"""What a sandboxed program sees of the network: interfaces, addresses, routes, neighbours.

These frozen dataclasses are the one vocabulary between the stack (the syscall
plane builds them from the stack's NICs, addresses, routes and neighbour
caches) and the pure codecs that answer the program's questions in Linux's
byte formats: ``netlink`` (NETLINK_ROUTE dumps), ``ifreq`` (SIOCGIF* ioctls).

Numbers are Linux's (``include/uapi/linux/if.h``, ``if_addr.h``,
``rtnetlink.h``, ``neighbour.h``); the values a description carries are the
ones the kernel would report for the same configuration, so that the codecs
can stay plain translators. :func:`connected_routes` derives the routes the
kernel adds by itself for the addresses (prefix routes, the ``local`` table),
so that callers only add what an administrator would add (a default route).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import InitVar, dataclass, replace
from typing import Final, Literal

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

AF_INET: Final = 2
AF_INET6: Final = 10

# Interface flags (include/uapi/linux/if.h, enum net_device_flags).
IFF_UP: Final = 0x1
IFF_BROADCAST: Final = 0x2
IFF_DEBUG: Final = 0x4
IFF_LOOPBACK: Final = 0x8
IFF_POINTOPOINT: Final = 0x10
IFF_NOTRAILERS: Final = 0x20
IFF_RUNNING: Final = 0x40
IFF_NOARP: Final = 0x80
IFF_PROMISC: Final = 0x100
IFF_ALLMULTI: Final = 0x200
IFF_MULTICAST: Final = 0x1000
IFF_LOWER_UP: Final = 0x10000
IFF_DORMANT: Final = 0x20000

# Hardware types (include/uapi/linux/if_arp.h).
ARPHRD_ETHER: Final = 1
ARPHRD_LOOPBACK: Final = 772

# Operational states (RFC 2863 ifOperStatus, include/uapi/linux/if.h IF_OPER_*).
IF_OPER_UNKNOWN: Final = 0
IF_OPER_DOWN: Final = 2
IF_OPER_UP: Final = 6

# Address flags (include/uapi/linux/if_addr.h).
IFA_F_SECONDARY: Final = 0x01
IFA_F_NODAD: Final = 0x02
IFA_F_OPTIMISTIC: Final = 0x04
IFA_F_DADFAILED: Final = 0x08
IFA_F_HOMEADDRESS: Final = 0x10
IFA_F_DEPRECATED: Final = 0x20
IFA_F_TENTATIVE: Final = 0x40
IFA_F_PERMANENT: Final = 0x80
IFA_F_MANAGETEMPADDR: Final = 0x100
IFA_F_NOPREFIXROUTE: Final = 0x200
IFA_F_MCAUTOJOIN: Final = 0x400
IFA_F_STABLE_PRIVACY: Final = 0x800

INFINITY_LIFE_TIME: Final = 0xFFFFFFFF

# Scopes (include/uapi/linux/rtnetlink.h, enum rt_scope_t).
RT_SCOPE_UNIVERSE: Final = 0
RT_SCOPE_SITE: Final = 200
RT_SCOPE_LINK: Final = 253
RT_SCOPE_HOST: Final = 254
RT_SCOPE_NOWHERE: Final = 255

# Routing tables.
RT_TABLE_UNSPEC: Final = 0
RT_TABLE_COMPAT: Final = 252
RT_TABLE_DEFAULT: Final = 253
RT_TABLE_MAIN: Final = 254
RT_TABLE_LOCAL: Final = 255

# Route origins (rtm_protocol).
RTPROT_UNSPEC: Final = 0
RTPROT_REDIRECT: Final = 1
RTPROT_KERNEL: Final = 2
RTPROT_BOOT: Final = 3
RTPROT_STATIC: Final = 4
RTPROT_RA: Final = 9
RTPROT_DHCP: Final = 16

# Route types (rtm_type).
RTN_UNSPEC: Final = 0
RTN_UNICAST: Final = 1
RTN_LOCAL: Final = 2
RTN_BROADCAST: Final = 3
RTN_ANYCAST: Final = 4
RTN_MULTICAST: Final = 5
RTN_BLACKHOLE: Final = 6
RTN_UNREACHABLE: Final = 7
RTN_PROHIBIT: Final = 8

# Neighbour states and flags (include/uapi/linux/neighbour.h).
NUD_INCOMPLETE: Final = 0x01
NUD_REACHABLE: Final = 0x02
NUD_STALE: Final = 0x04
NUD_DELAY: Final = 0x08
NUD_PROBE: Final = 0x10
NUD_FAILED: Final = 0x20
NUD_NOARP: Final = 0x40
NUD_PERMANENT: Final = 0x80
NUD_VALID: Final = (NUD_PERMANENT | NUD_NOARP | NUD_REACHABLE | NUD_PROBE
                    | NUD_STALE | NUD_DELAY)
NTF_ROUTER: Final = 0x80

IFNAMSIZ: Final = 16

# IPv6 metric the kernel gives prefix routes and routes added without one
# (IP6_RT_PRIO_ADDRCONF / IP6_RT_PRIO_USER in include/net/ip6_route.h).
IP6_RT_PRIO_USER: Final = 1024
IP6_RT_PRIO_ADDRCONF: Final = 256

Kind = Literal["loopback", "ether"]


@dataclass(frozen=True, slots=True)
class AddressInfo:
    """One address of an interface, as ``ip addr`` / RTM_NEWADDR report it.

    ``scope`` is an ``RT_SCOPE_*`` value (Linux: host for 127/8 and ::1, link
    for fe80::/10, universe otherwise; see :func:`default_scope`). ``flags``
    are ``IFA_F_*`` (Linux marks administratively added addresses
    ``IFA_F_PERMANENT``). ``broadcast`` is IPv4 only (``None``: no
    IFA_BROADCAST attribute, as for ``ip addr add`` without ``brd``).
    Lifetimes are seconds (``INFINITY_LIFE_TIME`` = forever); ``cstamp`` and
    ``tstamp`` are hundredths of seconds since boot (IFA_CACHEINFO).
    """

    address: IPInterface
    scope: int = RT_SCOPE_UNIVERSE
    flags: int = IFA_F_PERMANENT
    broadcast: ipaddress.IPv4Address | None = None
    label: str | None = None
    """IPv4 label (``eth0:1`` aliases); None means the interface's name."""
    proto: int = 0
    """IFA_PROTO (who added it): 0 = not reported; Linux marks ::1 on lo with
    IFAPROT_KERNEL_LO (1)."""
    preferred_lft: int = INFINITY_LIFE_TIME
    valid_lft: int = INFINITY_LIFE_TIME
    cstamp: int = 0
    tstamp: int = 0

    @property
    def family(self) -> int:
        return AF_INET if self.address.version == 4 else AF_INET6


@dataclass(frozen=True, slots=True)
class InterfaceInfo:
    """One network interface as the program must see it.

    ``flags`` is what Linux's ``dev_get_flags()`` returns (the netlink
    ``ifi_flags``; SIOCGIFFLAGS gives its low 16 bits): see
    :func:`linux_flags`. ``mac`` is 6 bytes (all zero for loopback, as Linux).
    ``addresses`` are in the kernel's list order (the first IPv4 address is
    the primary one that SIOCGIFADDR answers).
    """

    index: int
    name: str
    mac: bytes
    mtu: int
    flags: int
    kind: Kind
    addresses: tuple[AddressInfo, ...] = ()
    txqlen: int = 1000
    qdisc: str = "noqueue"
    min_mtu: int = 68
    max_mtu: int = 65535
    rx_packets: int = 0
    tx_packets: int = 0
    rx_bytes: int = 0
    tx_bytes: int = 0

    def __post_init__(self) -> None:
        if len(self.mac) != 6:
            raise ValueError(f"mac must be 6 bytes, got {len(self.mac)}")
        if not 0 < len(self.name.encode()) < IFNAMSIZ:
            raise ValueError(f"interface name {self.name!r} must be 1..15 bytes")
        if self.index <= 0:
            raise ValueError("interface index must be positive")

    @property
    def arphrd(self) -> int:
        """``ifi_type`` / SIOCGIFHWADDR's ``sa_family``."""
        return ARPHRD_LOOPBACK if self.kind == "loopback" else ARPHRD_ETHER

    @property
    def broadcast_mac(self) -> bytes:
        """IFLA_BROADCAST: ff:ff:ff:ff:ff:ff for Ethernet, zeros for loopback."""
        return b"\x00" * 6 if self.kind == "loopback" else b"\xff" * 6

    @property
    def is_up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def operstate(self) -> int:
        """IFLA_OPERSTATE: loopback reports UNKNOWN when up (it has no carrier
        notion), an Ethernet device UP or DOWN."""
        if not self.flags & IFF_UP:
            return IF_OPER_DOWN
        if self.kind == "loopback":
            return IF_OPER_UNKNOWN
        return IF_OPER_UP if self.flags & IFF_RUNNING else IF_OPER_DOWN

    def ipv4(self) -> tuple[AddressInfo, ...]:
        return tuple(a for a in self.addresses if a.address.version == 4)

    def ipv6(self) -> tuple[AddressInfo, ...]:
        return tuple(a for a in self.addresses if a.address.version == 6)


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """One route as RTM_NEWROUTE describes it (``ip route show table all``).

    ``metric`` 0 means "no RTA_PRIORITY" for IPv4 (Linux omits it); IPv6
    routes always carry one (Linux's default 1024, prefix routes 256).
    """

    dst: IPNetwork
    oif: int
    gateway: IPAddress | None = None
    metric: int = 0
    table: int = RT_TABLE_MAIN
    protocol: int = RTPROT_BOOT
    scope: int = RT_SCOPE_UNIVERSE
    type: int = RTN_UNICAST
    prefsrc: IPAddress | None = None
    priority: InitVar[int | None] = None
    """Alias of ``metric`` under its netlink name (RTA_PRIORITY)."""

    def __post_init__(self, priority: int | None) -> None:
        if priority is not None:
            object.__setattr__(self, "metric", priority)

    @property
    def family(self) -> int:
        return AF_INET if self.dst.version == 4 else AF_INET6


@dataclass(frozen=True, slots=True)
class NeighborInfo:
    """One neighbour cache entry (``ip neigh``): ``state`` is ``NUD_*``."""

    ifindex: int
    address: IPAddress
    lladdr: bytes | None
    state: int = NUD_PERMANENT
    flags: int = 0
    probes: int = 0
    confirmed: int = 0
    used: int = 0
    updated: int = 0
    refcnt: int = 0
    """``nda_cacheinfo`` fields: ages in clock ticks (USER_HZ) and references."""

    @property
    def family(self) -> int:
        return AF_INET if self.address.version == 4 else AF_INET6


def linux_flags(kind: Kind, *, up: bool = True, carrier: bool = True) -> int:
    """The ``dev_get_flags()`` value Linux reports for a loopback or Ethernet device.

    Ethernet devices are IFF_BROADCAST|IFF_MULTICAST (ether_setup); loopback is
    IFF_LOOPBACK (loopback_setup, no multicast flag). When up with carrier,
    the kernel adds IFF_RUNNING and IFF_LOWER_UP.
    """
    flags = IFF_LOOPBACK if kind == "loopback" else IFF_BROADCAST | IFF_MULTICAST
    if up:
        flags |= IFF_UP
        if carrier:
            flags |= IFF_RUNNING | IFF_LOWER_UP
    return flags


def default_scope(address: IPInterface) -> int:
    """The scope Linux gives an address added without ``scope`` (IPv6:
    ipv6_addr_scope; IPv4: `ip` asks for host scope on 127/8)."""
    ip = address.ip
    if ip.is_loopback:
        return RT_SCOPE_HOST
    if ip.version == 6 and ip.is_link_local:
        return RT_SCOPE_LINK
    return RT_SCOPE_UNIVERSE


def ipv4_broadcast(address: ipaddress.IPv4Interface) -> ipaddress.IPv4Address | None:
    """The broadcast ``ip addr add A/N brd +`` computes (None for /31 and /32)."""
    if address.network.prefixlen >= 31:
        return None
    return address.network.broadcast_address


def mark_secondaries(addresses: Iterable[AddressInfo]) -> tuple[AddressInfo, ...]:
    """Set IFA_F_SECONDARY the way Linux does when the addresses are added in order.

    inet_insert_ifa: an IPv4 address is secondary when an earlier primary of
    the same interface has the same prefix length and covers it. Callers that
    describe the stack's addresses without this flag pass them through here.
    """
    out: list[AddressInfo] = []
    primaries: list[ipaddress.IPv4Interface] = []
    for a in addresses:
        v4 = a.address
        if isinstance(v4, ipaddress.IPv4Interface):
            if any(p.network == v4.network for p in primaries):
                a = replace(a, flags=a.flags | IFA_F_SECONDARY)
            elif not a.flags & IFA_F_SECONDARY:
                primaries.append(v4)
        out.append(a)
    return tuple(out)


def connected_routes(interfaces: Iterable[InterfaceInfo]) -> list[RouteInfo]:
    """The routes Linux adds by itself for the interfaces' addresses.

    IPv4 (fib_add_ifaddr): a ``local`` route for each address and a
    ``broadcast`` route for its broadcast address in the local table, and a
    prefix route ``proto kernel scope link src ADDR`` in main (none for /32
    and for loopback's host-scoped 127/8, whose ``local 127.0.0.0/8`` route
    covers it). IPv6 (addrconf): a prefix route ``proto kernel metric 256`` in
    main (none for /128, ::1 included, as Linux 6.x), a ``local`` route in the
    local table, and ``multicast ff00::/8`` for each up non-loopback device.
    Only up interfaces get routes, as Linux.
    """
    routes: list[RouteInfo] = []
    for itf in interfaces:
        if not itf.is_up:
            continue
        for a in itf.addresses:
            if a.flags & IFA_F_TENTATIVE:
                continue
            if a.address.version == 4:
                routes.extend(_ipv4_connected(itf, a))
            else:
                routes.extend(_ipv6_connected(itf, a))
        if itf.kind != "loopback":
            # addrconf_add_mroute: every up IPv6-enabled non-loopback device.
            routes.append(RouteInfo(
                dst=ipaddress.IPv6Network("ff00::/8"), oif=itf.index, metric=IP6_RT_PRIO_ADDRCONF,
                table=RT_TABLE_LOCAL, protocol=RTPROT_KERNEL, type=RTN_MULTICAST))
    return dedupe_routes(routes)


def _ipv4_connected(itf: InterfaceInfo, a: AddressInfo) -> list[RouteInfo]:
    """fib_add_ifaddr (net/ipv4/fib_frontend.c), route for route."""
    assert isinstance(a.address, ipaddress.IPv4Interface)
    net = a.address.network
    addr = a.address.ip
    secondary = bool(a.flags & IFA_F_SECONDARY)
    # A secondary's routes name its primary as source.
    prim = next((p.address.ip for p in itf.ipv4() if p.address.network == net
                 and not p.flags & IFA_F_SECONDARY), addr)

    def local(dst: ipaddress.IPv4Network, rtype: int) -> RouteInfo:
        # fib_magic: non-unicast types go to the local table; scope host for
        # RTN_LOCAL, link otherwise.
        return RouteInfo(dst=dst, oif=itf.index, table=RT_TABLE_LOCAL, protocol=RTPROT_KERNEL,
                         scope=RT_SCOPE_HOST if rtype == RTN_LOCAL else RT_SCOPE_LINK,
                         type=rtype, prefsrc=prim)

    out = [local(ipaddress.IPv4Network(addr), RTN_LOCAL)]
    if a.broadcast is not None and int(a.broadcast) != 0xFFFFFFFF:
        out.append(local(ipaddress.IPv4Network(a.broadcast), RTN_BROADCAST))
    if not secondary and (net.network_address != addr or net.prefixlen < 32):
        if not a.flags & IFA_F_NOPREFIXROUTE:
            if itf.kind == "loopback":
                out.append(local(net, RTN_LOCAL))
            else:
                out.append(RouteInfo(dst=net, oif=itf.index, table=RT_TABLE_MAIN,
                                     protocol=RTPROT_KERNEL, scope=RT_SCOPE_LINK,
                                     type=RTN_UNICAST, prefsrc=prim))
        if net.prefixlen < 31:
            out.append(local(ipaddress.IPv4Network(net.broadcast_address), RTN_BROADCAST))
    return out


def _ipv6_connected(itf: InterfaceInfo, a: AddressInfo) -> list[RouteInfo]:
    assert isinstance(a.address, ipaddress.IPv6Interface)
    ip = a.address.ip
    net = a.address.network
    out = [RouteInfo(dst=ipaddress.IPv6Network(ip), oif=itf.index, table=RT_TABLE_LOCAL,
                     protocol=RTPROT_KERNEL, type=RTN_LOCAL, metric=0)]
    if net.prefixlen < 128 and not a.flags & IFA_F_NOPREFIXROUTE:
        out.append(RouteInfo(dst=net, oif=itf.index, table=RT_TABLE_MAIN,
                             protocol=RTPROT_KERNEL, type=RTN_UNICAST,
                             metric=IP6_RT_PRIO_ADDRCONF))
    return out


def dedupe_routes(routes: Iterable[RouteInfo]) -> list[RouteInfo]:
    """Drop exact duplicates (two addresses in one prefix give one route)."""
    seen: set[tuple[object, ...]] = set()
    out: list[RouteInfo] = []
    for r in routes:
        key = (r.dst, r.oif, r.table, r.type, r.gateway, r.metric)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


__all__ = [
    "AddressInfo",
    "InterfaceInfo",
    "NeighborInfo",
    "RouteInfo",
    "connected_routes",
    "dedupe_routes",
    "default_scope",
    "ipv4_broadcast",
    "linux_flags",
    "mark_secondaries",
]
