"""A sans-IO NETLINK_ROUTE server: answers a program's rtnetlink requests from a description.

The sandboxed program's ``socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)`` is
served by the syscall plane; every datagram the program sends goes to
:meth:`NetlinkRouteSocket.handle_request`, and :meth:`~NetlinkRouteSocket.replies`
hands out the datagrams the program will receive, byte for byte what Linux
would send for the same interfaces, addresses, routes and neighbours
(glibc ``getifaddrs``/``if_nametoindex``, ``getaddrinfo(AI_ADDRCONFIG)``,
``ip -json addr``/``ip route`` decode them). No I/O here.

Linux sources mirrored (6.x): ``net/netlink/af_netlink.c`` (netlink_rcv_skb,
netlink_ack, netlink_dump), ``net/core/rtnetlink.c`` (rtnetlink_rcv_msg,
rtnl_fill_ifinfo, rtnl_dump_all), ``net/ipv4/devinet.c`` (inet_fill_ifaddr),
``net/ipv6/addrconf.c`` (inet6_fill_ifaddr), ``net/ipv4/fib_semantics.c``
(fib_dump_info), ``net/ipv4/route.c`` (rt_fill_info), ``net/ipv6/route.c``
(rt6_fill_node), ``net/core/neighbour.c`` (neigh_fill_info). Layouts from
``include/uapi/linux/{netlink,rtnetlink,if_link,if_addr,neighbour}.h``;
every header and attribute is NLMSG_ALIGN/RTA_ALIGN (4) aligned.

Behaviour kept from Linux:
- Several nlmsghdrs in one datagram are handled in order; a header whose
  ``nlmsg_len`` is shorter than 16 or longer than what remains ends the
  datagram's processing silently (netlink_rcv_skb), exactly as Linux.
- Messages without NLM_F_REQUEST and control types (< 0x10) are only
  acknowledged, and only with NLM_F_ACK; a request with an empty payload
  likewise (rtnetlink_rcv_msg returns 0 for them).
- Dumps answer NLM_F_MULTI messages packed into datagrams of at most
  ``max_datagram`` bytes (Linux's first dump skb is NLMSG_GOODSIZE), then
  NLMSG_DONE carrying the int 0. For RTM_GETLINK/GETADDR/GETROUTE the DONE is
  a datagram of its own (RTNL_FLAG_DUMP_SPLIT_NLM_DONE, kept by Linux for
  old userspace); for RTM_GETNEIGH and the AF_INET6 RTM_GETADDR dump it shares
  the last datagram, as observed on Linux 6.18. A successful dump is never followed by an ACK (netlink_dump_start
  returns -EINTR to suppress it).
- Errors are NLMSG_ERROR with a negative errno followed by the request's
  header and payload (only the header with NETLINK_CAP_ACK, flag
  NLM_F_CAPPED); a zero-errno ACK carries only the header.
- The reply's nlmsg_seq is the request's, nlmsg_pid the socket's port id.

Deliberate departures (the sandbox's network is the stack's, not the program's):
- Every request that would change state (kinds NEW/DEL/SET: RTM_NEWADDR,
  RTM_DELROUTE, RTM_NEWLINK, RTM_SETLINK, ...) is answered -EPERM, what Linux
  answers a process without CAP_NET_ADMIN in the namespace. The program is
  root in its own namespace, but its interfaces are netvisor's to configure.
- GET types this module does not model (rules, qdiscs, netconf, stats,
  nexthops, multicast/anycast dumps, ...) answer -EOPNOTSUPP, as Linux does for a
  type without a handler; real Linux would answer some of them.
- No NETLINK_GET_STRICT_CHK filtering and no -EBUSY for a second dump
  requested while one is still being read: our dumps are produced whole.
"""

from __future__ import annotations

import errno as _errno
import ipaddress
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from netvisor.syscall.ifdesc import (
    AF_INET,
    AF_INET6,
    IFA_F_TENTATIVE,
    IFF_RUNNING,
    NUD_VALID,
    RT_SCOPE_LINK,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_COMPAT,
    RT_TABLE_LOCAL,
    RT_TABLE_MAIN,
    RTN_BROADCAST,
    RTN_LOCAL,
    RTN_MULTICAST,
    RTN_UNICAST,
    RTPROT_UNSPEC,
    AddressInfo,
    InterfaceInfo,
    IPAddress,
    NeighborInfo,
    RouteInfo,
)

AF_UNSPEC: Final = 0

# include/uapi/linux/netlink.h
NLMSG_NOOP: Final = 1
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
NLMSG_OVERRUN: Final = 4
NLMSG_MIN_TYPE: Final = 0x10

NLM_F_REQUEST: Final = 0x01
NLM_F_MULTI: Final = 0x02
NLM_F_ACK: Final = 0x04
NLM_F_ECHO: Final = 0x08
NLM_F_ROOT: Final = 0x100
NLM_F_MATCH: Final = 0x200
NLM_F_DUMP: Final = NLM_F_ROOT | NLM_F_MATCH
NLM_F_CAPPED: Final = 0x100
NLM_F_ACK_TLVS: Final = 0x200

NLMSG_HDRLEN: Final = 16
_NLMSGHDR = struct.Struct("=IHHII")

# Linux's first dump skb: SKB_WITH_OVERHEAD(PAGE_SIZE) = 4096 minus the
# 320-byte skb_shared_info on x86_64 (NLMSG_GOODSIZE).
NLMSG_GOODSIZE: Final = 3776

# include/uapi/linux/rtnetlink.h
RTM_BASE: Final = 16
RTM_NEWLINK: Final = 16
RTM_DELLINK: Final = 17
RTM_GETLINK: Final = 18
RTM_SETLINK: Final = 19
RTM_NEWADDR: Final = 20
RTM_DELADDR: Final = 21
RTM_GETADDR: Final = 22
RTM_NEWROUTE: Final = 24
RTM_DELROUTE: Final = 25
RTM_GETROUTE: Final = 26
RTM_NEWNEIGH: Final = 28
RTM_DELNEIGH: Final = 29
RTM_GETNEIGH: Final = 30
# Last message type of Linux 6.18 (RTM_GETTUNNEL = 122, rounded up to a
# group of four minus one); a larger type is -EOPNOTSUPP before anything else.
RTM_MAX: Final = 123

RTM_F_CLONED: Final = 0x200
RTCF_LOCAL: Final = 0x80000000
RTCF_BROADCAST: Final = 0x10000000
RTCF_MULTICAST: Final = 0x20000000

# struct ifinfomsg attributes (include/uapi/linux/if_link.h)
IFLA_ADDRESS: Final = 1
IFLA_BROADCAST: Final = 2
IFLA_IFNAME: Final = 3
IFLA_MTU: Final = 4
IFLA_QDISC: Final = 6
IFLA_STATS: Final = 7
IFLA_TXQLEN: Final = 13
IFLA_OPERSTATE: Final = 16
IFLA_LINKMODE: Final = 17
IFLA_STATS64: Final = 23
IFLA_GROUP: Final = 27
IFLA_EXT_MASK: Final = 29
IFLA_PROMISCUITY: Final = 30
IFLA_NUM_TX_QUEUES: Final = 31
IFLA_NUM_RX_QUEUES: Final = 32
IFLA_CARRIER: Final = 33
IFLA_CARRIER_CHANGES: Final = 35
IFLA_PROTO_DOWN: Final = 39
IFLA_GSO_MAX_SEGS: Final = 40
IFLA_GSO_MAX_SIZE: Final = 41
IFLA_CARRIER_UP_COUNT: Final = 47
IFLA_CARRIER_DOWN_COUNT: Final = 48
IFLA_MIN_MTU: Final = 50
IFLA_MAX_MTU: Final = 51
IFLA_ALT_IFNAME: Final = 53
IFLA_GRO_MAX_SIZE: Final = 58
IFLA_TSO_MAX_SIZE: Final = 59
IFLA_TSO_MAX_SEGS: Final = 60
IFLA_ALLMULTI: Final = 61

# struct ifaddrmsg attributes (include/uapi/linux/if_addr.h)
IFA_ADDRESS: Final = 1
IFA_LOCAL: Final = 2
IFA_LABEL: Final = 3
IFA_BROADCAST: Final = 4
IFA_CACHEINFO: Final = 6
IFA_FLAGS: Final = 8
IFA_PROTO: Final = 11
IFAPROT_KERNEL_LO: Final = 1

# struct rtmsg attributes
RTA_DST: Final = 1
RTA_SRC: Final = 2
RTA_IIF: Final = 3
RTA_OIF: Final = 4
RTA_GATEWAY: Final = 5
RTA_PRIORITY: Final = 6
RTA_PREFSRC: Final = 7
RTA_CACHEINFO: Final = 12
RTA_TABLE: Final = 15
RTA_PREF: Final = 20
RTA_UID: Final = 25

# struct ndmsg attributes (include/uapi/linux/neighbour.h)
NDA_DST: Final = 1
NDA_LLADDR: Final = 2
NDA_CACHEINFO: Final = 3
NDA_PROBES: Final = 4
NTF_PROXY: Final = 0x08

_IFINFOMSG = struct.Struct("=BxHiII")      # family, pad, type, index, flags, change: 16
_IFADDRMSG = struct.Struct("=BBBBI")       # family, prefixlen, flags, scope, index: 8
_RTMSG = struct.Struct("=BBBBBBBBI")       # family, dst_len, src_len, tos, table, proto, scope, type, flags: 12
_NDMSG = struct.Struct("=BxxxiHBB")        # family, pad1, pad2, ifindex, state, flags, type: 12
_IFA_CACHEINFO = struct.Struct("=IIII")    # preferred, valid, cstamp, tstamp
_RTA_CACHEINFO = struct.Struct("=IIiIIIII")  # clntref, lastuse, expires, error, used, id, ts, tsage
_NDA_CACHEINFO = struct.Struct("=IIII")    # confirmed, used, updated, refcnt

# struct rtnl_link_stats64: 25 u64 counters in Linux 6.x (24 historical ones
# plus rx_otherhost_dropped); the legacy IFLA_STATS keeps the first 24 as u32.
_N_LINK_STATS: Final = 25

# Netdevice defaults Linux reports for a veth / loopback and that a
# description does not carry (dev->gso_max_segs etc.).
GSO_MAX_SEGS: Final = 65535
GSO_MAX_SIZE: Final = 65536
TSO_MAX_SIZE: Final = 524280
TSO_MAX_SEGS: Final = 65535


def nlmsg_align(n: int) -> int:
    """NLMSG_ALIGN / RTA_ALIGN / NLA_ALIGN: round up to 4."""
    return (n + 3) & ~3


# --------------------------------------------------------------------------- encoding


def attr(atype: int, payload: bytes) -> bytes:
    """One rtattr (``struct rtattr {u16 len; u16 type}`` + payload), padded to 4."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, atype) + payload + b"\x00" * (nlmsg_align(length) - length)


def attr_u8(atype: int, v: int) -> bytes:
    return attr(atype, struct.pack("=B", v))


def attr_u32(atype: int, v: int) -> bytes:
    return attr(atype, struct.pack("=I", v))


def attr_str(atype: int, s: str) -> bytes:
    """NLA_STRING as the kernel puts it: NUL-terminated (nla_put_string)."""
    return attr(atype, s.encode() + b"\x00")


def nlmsg(mtype: int, flags: int, seq: int, pid: int, payload: bytes) -> bytes:
    """One netlink message: header + payload padded to NLMSG_ALIGN."""
    length = NLMSG_HDRLEN + len(payload)
    return (_NLMSGHDR.pack(length, mtype, flags, seq & 0xFFFFFFFF, pid & 0xFFFFFFFF) + payload
            + b"\x00" * (nlmsg_align(length) - length))


def encode_link(itf: InterfaceInfo, *, seq: int, pid: int, flags: int) -> bytes:
    """RTM_NEWLINK for one interface, attributes in rtnl_fill_ifinfo's order."""
    running = bool(itf.flags & IFF_RUNNING)
    body = _IFINFOMSG.pack(AF_UNSPEC, itf.arphrd, itf.index, itf.flags, 0)
    stats = [0] * _N_LINK_STATS
    stats[0:4] = [itf.rx_packets, itf.tx_packets, itf.rx_bytes, itf.tx_bytes]
    a = [
        attr_str(IFLA_IFNAME, itf.name),
        attr_u32(IFLA_TXQLEN, itf.txqlen),
        attr_u8(IFLA_OPERSTATE, itf.operstate),
        attr_u8(IFLA_LINKMODE, 0),
        attr_u32(IFLA_MTU, itf.mtu),
        attr_u32(IFLA_MIN_MTU, itf.min_mtu),
        attr_u32(IFLA_MAX_MTU, itf.max_mtu),
        attr_u32(IFLA_GROUP, 0),
        attr_u32(IFLA_PROMISCUITY, 0),
        attr_u32(IFLA_ALLMULTI, 0),
        attr_u32(IFLA_NUM_TX_QUEUES, 1),
        attr_u32(IFLA_GSO_MAX_SEGS, GSO_MAX_SEGS),
        attr_u32(IFLA_GSO_MAX_SIZE, GSO_MAX_SIZE),
        attr_u32(IFLA_GRO_MAX_SIZE, GSO_MAX_SIZE),
        attr_u32(IFLA_TSO_MAX_SIZE, TSO_MAX_SIZE),
        attr_u32(IFLA_TSO_MAX_SEGS, TSO_MAX_SEGS),
        attr_u32(IFLA_NUM_RX_QUEUES, 1),
        attr_u8(IFLA_CARRIER, 1 if running or itf.kind == "loopback" else 0),
        attr_u32(IFLA_CARRIER_CHANGES, 0),
        attr_u32(IFLA_CARRIER_UP_COUNT, 0),
        attr_u32(IFLA_CARRIER_DOWN_COUNT, 0),
        attr_u8(IFLA_PROTO_DOWN, 0),
        attr(IFLA_ADDRESS, itf.mac),
        attr(IFLA_BROADCAST, itf.broadcast_mac),
        attr(IFLA_STATS64, struct.pack(f"={_N_LINK_STATS}Q", *stats)),
        attr(IFLA_STATS, struct.pack(f"={_N_LINK_STATS - 1}I",
                                     *(s & 0xFFFFFFFF for s in stats[:_N_LINK_STATS - 1]))),
        attr_str(IFLA_QDISC, itf.qdisc),
    ]
    return nlmsg(RTM_NEWLINK, flags, seq, pid, body + b"".join(a))


IFLA_PROTINFO: Final = 12
IFLA_INET6_FLAGS: Final = 1
IFLA_INET6_CACHEINFO: Final = 5
IFLA_INET6_TOKEN: Final = 7
IFLA_INET6_ADDR_GEN_MODE: Final = 8
IF_READY: Final = 0x80000000
# ND defaults (RFC 4861 section 10: REACHABLE_TIME 30 s, RETRANS_TIMER 1 s).
_REACHABLE_MS: Final = 30000
_RETRANS_MS: Final = 1000


def encode_link_inet6(itf: InterfaceInfo, *, seq: int, pid: int, flags: int) -> bytes:
    """RTM_NEWLINK as the AF_INET6 link dump sends it (inet6_fill_ifinfo).

    ``ip -6 addr`` asks for links with family AF_INET6 and gets this reduced
    message. IFLA_PROTINFO carries the IPv6 flags, ND cache info, token and
    address generation mode; the devconf and statistics arrays Linux also
    puts there are left out (nothing but administration tools reads them).
    """
    body = _IFINFOMSG.pack(AF_INET6, itf.arphrd, itf.index, itf.flags, 0)
    protinfo = b"".join([
        attr_u32(IFLA_INET6_FLAGS, IF_READY),
        attr(IFLA_INET6_CACHEINFO, struct.pack("=IIII", 65535, 0, _REACHABLE_MS, _RETRANS_MS)),
        attr(IFLA_INET6_TOKEN, bytes(16)),
        attr_u8(IFLA_INET6_ADDR_GEN_MODE, 0),
    ])
    a = [attr_str(IFLA_IFNAME, itf.name), attr(IFLA_ADDRESS, itf.mac),
         attr_u32(IFLA_MTU, itf.mtu), attr_u8(IFLA_OPERSTATE, itf.operstate),
         attr(IFLA_PROTINFO, protinfo)]  # nla_nest_start_noflag: no NLA_F_NESTED
    return nlmsg(RTM_NEWLINK, flags, seq, pid, body + b"".join(a))


def encode_addr(itf: InterfaceInfo, a: AddressInfo, *, seq: int, pid: int, flags: int) -> bytes:
    """RTM_NEWADDR for one address (inet_fill_ifaddr / inet6_fill_ifaddr)."""
    ip = a.address
    body = _IFADDRMSG.pack(a.family, ip.network.prefixlen, a.flags & 0xFF, a.scope, itf.index)
    cache = attr(IFA_CACHEINFO, _IFA_CACHEINFO.pack(a.preferred_lft, a.valid_lft,
                                                    a.cstamp, a.tstamp))
    if ip.version == 4:
        attrs = [attr(IFA_ADDRESS, ip.ip.packed), attr(IFA_LOCAL, ip.ip.packed)]
        if a.broadcast is not None:
            attrs.append(attr(IFA_BROADCAST, a.broadcast.packed))
        attrs.append(attr_str(IFA_LABEL, a.label or itf.name))
        if a.proto:
            attrs.append(attr_u8(IFA_PROTO, a.proto))
        attrs += [attr_u32(IFA_FLAGS, a.flags), cache]
    else:
        attrs = [attr(IFA_ADDRESS, ip.ip.packed), cache, attr_u32(IFA_FLAGS, a.flags)]
        if a.proto:
            attrs.append(attr_u8(IFA_PROTO, a.proto))
    return nlmsg(RTM_NEWADDR, flags, seq, pid, body + b"".join(attrs))


def _table_byte(table: int) -> int:
    return table if table < 256 else RT_TABLE_COMPAT


def encode_route(r: RouteInfo, *, seq: int, pid: int, flags: int) -> bytes:
    """RTM_NEWROUTE for one table entry (fib_dump_info / rt6_fill_node)."""
    dst = r.dst
    if r.family == AF_INET:
        # IPv4 reports the route's scope; RTA_PRIORITY only when non-zero.
        body = _RTMSG.pack(AF_INET, dst.prefixlen, 0, 0, _table_byte(r.table), r.protocol,
                           r.scope, r.type, 0)
        attrs = [attr_u32(RTA_TABLE, r.table)]
        if dst.prefixlen:
            attrs.append(attr(RTA_DST, dst.network_address.packed))
        if r.metric:
            attrs.append(attr_u32(RTA_PRIORITY, r.metric))
        if r.prefsrc is not None:
            attrs.append(attr(RTA_PREFSRC, r.prefsrc.packed))
        if r.gateway is not None:
            attrs.append(attr(RTA_GATEWAY, r.gateway.packed))
        attrs.append(attr_u32(RTA_OIF, r.oif))
    else:
        # IPv6 always reports universe scope, a priority, cacheinfo and RTA_PREF.
        body = _RTMSG.pack(AF_INET6, dst.prefixlen, 0, 0, _table_byte(r.table), r.protocol,
                           RT_SCOPE_UNIVERSE, r.type, 0)
        attrs = [attr_u32(RTA_TABLE, r.table)]
        if dst.prefixlen:
            attrs.append(attr(RTA_DST, dst.network_address.packed))
        if r.prefsrc is not None:
            attrs.append(attr(RTA_PREFSRC, r.prefsrc.packed))
        attrs.append(attr_u32(RTA_PRIORITY, r.metric))
        if r.gateway is not None:
            attrs.append(attr(RTA_GATEWAY, r.gateway.packed))
        attrs += [attr_u32(RTA_OIF, r.oif),
                  attr(RTA_CACHEINFO, _RTA_CACHEINFO.pack(0, 0, 0, 0, 0, 0, 0, 0)),
                  attr_u8(RTA_PREF, 0)]
    return nlmsg(RTM_NEWROUTE, flags, seq, pid, body + b"".join(attrs))


def encode_neigh(n: NeighborInfo, *, seq: int, pid: int, flags: int) -> bytes:
    """RTM_NEWNEIGH for one entry (neigh_fill_info)."""
    body = _NDMSG.pack(n.family, n.ifindex, n.state, n.flags,
                       RTN_MULTICAST if n.address.is_multicast else RTN_UNICAST)
    attrs = [attr(NDA_DST, n.address.packed)]
    if n.lladdr is not None and n.state & NUD_VALID:
        attrs.append(attr(NDA_LLADDR, n.lladdr))
    attrs += [attr_u32(NDA_PROBES, n.probes),
              attr(NDA_CACHEINFO, _NDA_CACHEINFO.pack(n.confirmed, n.used, n.updated,
                                                      n.refcnt))]
    return nlmsg(RTM_NEWNEIGH, flags, seq, pid, body + b"".join(attrs))


# --------------------------------------------------------------------------- decoding


def parse_attrs(buf: bytes | memoryview) -> dict[int, bytes]:
    """rtattrs to {type: payload} (last one wins); stops at a malformed one, as
    Linux's nla_parse in non-strict mode ignores trailing garbage."""
    out: dict[int, bytes] = {}
    mv = memoryview(buf)
    off = 0
    while off + 4 <= len(mv):
        length, atype = struct.unpack_from("=HH", mv, off)
        if length < 4 or off + length > len(mv):
            break
        out[atype & 0x3FFF] = bytes(mv[off + 4:off + length])  # drop NLA_F_NESTED/NET_BYTEORDER
        off += nlmsg_align(length)
    return out


@dataclass(frozen=True, slots=True)
class NlMsg:
    """One parsed request header and its payload."""

    type: int
    flags: int
    seq: int
    pid: int
    payload: bytes
    raw: bytes
    """The whole message as sent (header + payload, nlmsg_len bytes)."""


def split_messages(data: bytes) -> list[NlMsg]:
    """The nlmsghdrs of one datagram, cut the way netlink_rcv_skb walks them:
    stop silently at a header that is too short or points past the end."""
    out: list[NlMsg] = []
    off = 0
    while len(data) - off >= NLMSG_HDRLEN:
        length, mtype, flags, seq, pid = _NLMSGHDR.unpack_from(data, off)
        if length < NLMSG_HDRLEN or length > len(data) - off:
            break
        out.append(NlMsg(mtype, flags, seq, pid, data[off + NLMSG_HDRLEN:off + length],
                         data[off:off + length]))
        off += min(nlmsg_align(length), len(data) - off)
    return out


class _RequestError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(_errno.errorcode.get(code, str(code)))
        self.errno = code


# --------------------------------------------------------------------------- the socket


class NetlinkRouteSocket:
    """One emulated NETLINK_ROUTE socket of the sandboxed program.

    ``pid`` is the socket's port id (``nl_pid`` from getsockname; Linux
    assigns the process id to the first netlink socket of a process).
    ``cap_ack`` mirrors the NETLINK_CAP_ACK socket option. The description
    can be refreshed with :meth:`update` between requests.
    """

    def __init__(self, interfaces: Sequence[InterfaceInfo], routes: Sequence[RouteInfo],
                 neighbors: Sequence[NeighborInfo], pid: int, *,
                 max_datagram: int = NLMSG_GOODSIZE) -> None:
        self.pid = pid
        self.cap_ack = False
        self.max_datagram = max_datagram
        self._interfaces: tuple[InterfaceInfo, ...] = ()
        self._routes: tuple[RouteInfo, ...] = ()
        self._neighbors: tuple[NeighborInfo, ...] = ()
        self._out: list[bytes] = []
        self.update(interfaces, routes, neighbors)

    def update(self, interfaces: Sequence[InterfaceInfo] | None = None,
               routes: Sequence[RouteInfo] | None = None,
               neighbors: Sequence[NeighborInfo] | None = None) -> None:
        """Replace (parts of) the description answered from."""
        if interfaces is not None:
            self._interfaces = tuple(sorted(interfaces, key=lambda i: i.index))
        if routes is not None:
            self._routes = tuple(routes)
        if neighbors is not None:
            self._neighbors = tuple(neighbors)

    # ------------------------------------------------------------------ inputs/outputs

    def handle_request(self, data: bytes) -> None:
        """One datagram the program sent (sendto/sendmsg payload)."""
        for msg in split_messages(bytes(data)):
            self._handle_one(msg)

    def replies(self) -> list[bytes]:
        """Datagrams for the program to receive, in order; the queue is emptied."""
        out, self._out = self._out, []
        return out

    def pending(self) -> bool:
        """True while replies are waiting (the socket polls readable)."""
        return bool(self._out)

    # ------------------------------------------------------------------ dispatch

    def _handle_one(self, msg: NlMsg) -> None:
        try:
            self._dispatch(msg)
        except _RequestError as e:
            self._error(msg, -e.errno)

    def _dispatch(self, msg: NlMsg) -> None:
        # netlink_rcv_skb: not a request, or a control message: only an ACK.
        if not msg.flags & NLM_F_REQUEST or msg.type < NLMSG_MIN_TYPE:
            self._ack_if_asked(msg)
            return
        if msg.type > RTM_MAX:
            raise _RequestError(_errno.EOPNOTSUPP)
        if len(msg.payload) < 1:  # "All the messages must have at least 1 byte length"
            self._ack_if_asked(msg)
            return
        kind = (msg.type - RTM_BASE) & 3
        if kind != 2:  # NEW / DEL / SET need CAP_NET_ADMIN over the namespace
            raise _RequestError(_errno.EPERM)
        family = msg.payload[0]
        dump = (msg.flags & NLM_F_DUMP) != 0
        if msg.type == RTM_GETLINK:
            if dump and family == AF_INET6:
                # PF_INET6 registers its own link dump (inet6_dump_ifinfo).
                self._dump(msg, [encode_link_inet6(i, seq=msg.seq, pid=self.pid,
                                                   flags=NLM_F_MULTI)
                                 for i in self._interfaces], split_done=False)
            elif dump:
                self._dump(msg, [encode_link(i, seq=msg.seq, pid=self.pid, flags=NLM_F_MULTI)
                                 for i in self._interfaces], split_done=True)
            else:
                self._reply(msg, encode_link(self._getlink(msg), seq=msg.seq, pid=self.pid,
                                             flags=0))
        elif msg.type == RTM_GETADDR and dump:
            # inet6_dump_ifaddr is the one handler here without
            # RTNL_FLAG_DUMP_SPLIT_NLM_DONE (observed on Linux 6.18).
            self._dump(msg, self._addr_messages(msg.seq, family),
                       split_done=family != AF_INET6)
        elif msg.type == RTM_GETROUTE:
            if dump:
                self._dump(msg, self._route_messages(msg.seq, family), split_done=True)
            else:
                self._reply(msg, self._route_get(msg))
        elif msg.type == RTM_GETNEIGH and dump:
            ndm_flags = msg.payload[10] if len(msg.payload) >= 12 else 0
            items = [] if ndm_flags & NTF_PROXY else self._neigh_messages(msg.seq, family)
            self._dump(msg, items, split_done=False)
        elif msg.type == RTM_GETADDR:
            # Linux 6.x has a doit for RTM_GETADDR only with strict checking of a
            # specific address (inet6_rtm_getaddr); IPv4 has none.
            if family == AF_INET6:
                raise _RequestError(_errno.EINVAL)
            raise _RequestError(_errno.EOPNOTSUPP)
        elif msg.type == RTM_GETNEIGH:
            raise _RequestError(_errno.EINVAL)
        else:
            raise _RequestError(_errno.EOPNOTSUPP)

    # ------------------------------------------------------------------ replies

    def _error(self, msg: NlMsg, err: int) -> None:
        """NLMSG_ERROR (netlink_ack): errno, then the request's header (+payload on error)."""
        if err and not self.cap_ack:
            flags, quoted = 0, msg.raw
        else:
            # Only the header quoted: Linux says so with NLM_F_CAPPED, also on ACKs.
            flags, quoted = NLM_F_CAPPED, msg.raw[:NLMSG_HDRLEN]
        self._out.append(nlmsg(NLMSG_ERROR, flags, msg.seq, self.pid,
                               struct.pack("=i", err) + quoted))

    def _ack_if_asked(self, msg: NlMsg) -> None:
        if msg.flags & NLM_F_ACK:
            self._error(msg, 0)

    def _reply(self, msg: NlMsg, reply: bytes) -> None:
        self._out.append(reply)
        self._ack_if_asked(msg)

    def _dump(self, msg: NlMsg, items: Iterable[bytes], *, split_done: bool) -> None:
        """Pack NLM_F_MULTI messages into datagrams, then NLMSG_DONE (int 0)."""
        done = nlmsg(NLMSG_DONE, NLM_F_MULTI, msg.seq, self.pid, struct.pack("=i", 0))
        gram = b""
        for item in items:
            if gram and len(gram) + len(item) > self.max_datagram:
                self._out.append(gram)
                gram = b""
            gram += item
        if gram and (split_done or len(gram) + len(done) > self.max_datagram):
            self._out.append(gram)
            gram = b""
        self._out.append(gram + done)

    # ------------------------------------------------------------------ RTM_GETLINK

    def _getlink(self, msg: NlMsg) -> InterfaceInfo:
        """rtnl_getlink: by ifi_index, else IFLA_IFNAME / IFLA_ALT_IFNAME."""
        if len(msg.payload) < _IFINFOMSG.size:
            raise _RequestError(_errno.EINVAL)
        index = _IFINFOMSG.unpack_from(msg.payload)[2]
        attrs = parse_attrs(msg.payload[_IFINFOMSG.size:])
        if index > 0:
            found = [i for i in self._interfaces if i.index == index]
        else:
            raw = attrs.get(IFLA_IFNAME, attrs.get(IFLA_ALT_IFNAME))
            if raw is None:
                raise _RequestError(_errno.EINVAL)
            name = raw.split(b"\x00", 1)[0].decode(errors="replace")
            found = [i for i in self._interfaces if i.name == name]
        if not found:
            raise _RequestError(_errno.ENODEV)
        return found[0]

    # ------------------------------------------------------------------ RTM_GETADDR

    def _addr_messages(self, seq: int, family: int) -> list[bytes]:
        """IPv4 then IPv6 (rtnl_dump_all walks families in number order), per
        interface in ifindex order. An unknown family dumps all, as Linux
        falls back to the PF_UNSPEC handler."""
        families = [family] if family in (AF_INET, AF_INET6) else [AF_INET, AF_INET6]
        out: list[bytes] = []
        for fam in families:
            for itf in self._interfaces:
                for a in _kernel_address_order(itf, fam):
                    out.append(encode_addr(itf, a, seq=seq, pid=self.pid, flags=NLM_F_MULTI))
        return out

    # ------------------------------------------------------------------ RTM_GETNEIGH

    def _neigh_messages(self, seq: int, family: int) -> list[bytes]:
        """ARP table then ND table (neigh_tables order), filtered by family."""
        out: list[bytes] = []
        for fam in (AF_INET, AF_INET6):
            if family not in (AF_UNSPEC, fam):
                continue
            out += [encode_neigh(n, seq=seq, pid=self.pid, flags=NLM_F_MULTI)
                    for n in self._neighbors if n.family == fam]
        return out

    # ------------------------------------------------------------------ RTM_GETROUTE

    def _route_messages(self, seq: int, family: int) -> list[bytes]:
        families = [family] if family in (AF_INET, AF_INET6) else [AF_INET, AF_INET6]
        out: list[bytes] = []
        for fam in families:
            routes = [r for r in self._routes if r.family == fam]
            out += [encode_route(r, seq=seq, pid=self.pid, flags=NLM_F_MULTI)
                    for r in sort_routes_like_linux(routes)]
        return out

    def _route_get(self, msg: NlMsg) -> bytes:
        """``ip route get``: inet_rtm_getroute / inet6_rtm_getroute for one destination."""
        if len(msg.payload) < _RTMSG.size:
            raise _RequestError(_errno.EINVAL)
        family = msg.payload[0]
        attrs = parse_attrs(msg.payload[_RTMSG.size:])
        if family == AF_INET:
            size, cls4or6 = 4, ipaddress.IPv4Address
        elif family == AF_INET6:
            size, cls4or6 = 16, ipaddress.IPv6Address  # type: ignore[assignment]
        else:
            raise _RequestError(_errno.EOPNOTSUPP)
        raw_dst = attrs.get(RTA_DST, b"\x00" * size)
        raw_src = attrs.get(RTA_SRC)
        if len(raw_dst) < size or (raw_src is not None and len(raw_src) < size):
            raise _RequestError(_errno.EINVAL)
        dst: IPAddress = cls4or6(raw_dst[:size])
        src: IPAddress | None = cls4or6(raw_src[:size]) if raw_src is not None else None
        raw_oif = attrs.get(RTA_OIF, b"")
        oif = struct.unpack_from("=i", raw_oif)[0] if len(raw_oif) >= 4 else 0
        route = lookup_route(self._routes, dst, oif)
        if route is None:
            raise _RequestError(_errno.ENETUNREACH)
        return self._encode_route_get(msg.seq, family, dst, src, route)

    def _encode_route_get(self, seq: int, family: int, dst: IPAddress, src: IPAddress | None,
                          route: RouteInfo) -> bytes:
        oif = route.oif
        prefsrc = route.prefsrc
        if route.type == RTN_LOCAL:
            lo = [i for i in self._interfaces if i.kind == "loopback"]
            if lo:
                oif = lo[0].index  # local delivery goes through loopback (both families)
            if prefsrc is None:
                prefsrc = dst
        if prefsrc is None:
            prefsrc = select_source(self._interfaces, route, dst)
        if family == AF_INET:
            # rt_fill_info: a cloned (cache) entry in table main, proto unspec.
            rtflags = RTM_F_CLONED
            if route.type == RTN_LOCAL:
                rtflags |= RTCF_LOCAL
            elif route.type == RTN_BROADCAST:
                rtflags |= RTCF_BROADCAST | RTCF_LOCAL
            body = _RTMSG.pack(AF_INET, 32, 32 if src else 0, 0, RT_TABLE_MAIN, RTPROT_UNSPEC,
                               RT_SCOPE_UNIVERSE, route.type, rtflags)
            attrs = [attr_u32(RTA_TABLE, RT_TABLE_MAIN), attr(RTA_DST, dst.packed)]
            if src is not None:
                attrs.append(attr(RTA_SRC, src.packed))
            attrs.append(attr_u32(RTA_OIF, oif))
            if prefsrc is not None and prefsrc != src:
                attrs.append(attr(RTA_PREFSRC, prefsrc.packed))
            if route.gateway is not None:
                attrs.append(attr(RTA_GATEWAY, route.gateway.packed))
            attrs += [attr_u32(RTA_UID, 0),
                      attr(RTA_CACHEINFO, _RTA_CACHEINFO.pack(1, 0, 0, 0, 0, 0, 0, 0))]
        else:
            # rt6_fill_node for a route lookup: the matched entry's table,
            # protocol and metric, dst and src as /128 (src :: when not given).
            body = _RTMSG.pack(AF_INET6, 128, 128, 0, _table_byte(route.table), route.protocol,
                               RT_SCOPE_UNIVERSE, route.type, 0)
            attrs = [attr_u32(RTA_TABLE, route.table), attr(RTA_DST, dst.packed),
                     attr(RTA_SRC, (src or ipaddress.IPv6Address(0)).packed)]
            if prefsrc is not None:
                attrs.append(attr(RTA_PREFSRC, prefsrc.packed))
            attrs.append(attr_u32(RTA_PRIORITY, route.metric))
            if route.gateway is not None:
                attrs.append(attr(RTA_GATEWAY, route.gateway.packed))
            attrs += [attr_u32(RTA_OIF, oif),
                      attr(RTA_CACHEINFO, _RTA_CACHEINFO.pack(1, 0, 0, 0, 0, 0, 0, 0)),
                      attr_u8(RTA_PREF, 0)]
        return nlmsg(RTM_NEWROUTE, 0, seq, self.pid, body + b"".join(attrs))


# --------------------------------------------------------------------------- helpers


def _kernel_address_order(itf: InterfaceInfo, family: int) -> list[AddressInfo]:
    """Addresses in the order Linux lists them, given in the order they were added.

    IPv4 keeps insertion order (inet_insert_ifa appends). IPv6's addr_list is
    sorted by scope, global first, and a new address goes before existing
    ones of the same scope (ipv6_link_dev_addr), so newest first.
    """
    if family == AF_INET:
        return list(itf.ipv4())
    v6 = list(reversed(itf.ipv6()))
    return sorted(v6, key=lambda a: _ipv6_src_scope(a.address.ip), reverse=True)


def _ipv6_src_scope(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    """ipv6_addr_src_scope: loopback and link-local 2, site 5, global 14."""
    if ip.is_loopback or ip.is_link_local:
        return 2
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return 5
    return 14


def sort_routes_like_linux(routes: Sequence[RouteInfo]) -> list[RouteInfo]:
    """Dump order of one family: table main before local (fib table hash
    order), then IPv4 trie order (ascending key, longer prefix first within
    a key) or the IPv6 fib6 tree's post-order walk (more specific prefixes
    before the prefix that contains them, default last); ties keep input order.
    """
    def key(r: RouteInfo) -> tuple[int, str, int]:
        net = r.dst
        if net.version == 4:
            return (r.table, format(int(net.network_address), "032b"), -net.prefixlen)
        bits = format(int(net.network_address), "0128b")[:net.prefixlen]
        return (r.table, bits + "2", r.metric)  # "2" sorts after both bit values

    return sorted(routes, key=key)


def lookup_route(routes: Sequence[RouteInfo], dst: IPAddress, oif: int = 0) -> RouteInfo | None:
    """Longest-prefix match, local table first (rule 0), then main; lowest metric wins.

    With ``oif`` (RTA_OIF, ``ip route get ... dev X``; needed for link-local
    destinations) only unicast routes through that interface count.
    """
    for table in (RT_TABLE_LOCAL, RT_TABLE_MAIN):
        best: RouteInfo | None = None
        for r in routes:
            if r.table != table or r.dst.version != dst.version or dst not in r.dst:
                continue
            if r.type not in (RTN_UNICAST, RTN_LOCAL, RTN_BROADCAST):
                continue
            if oif and r.type == RTN_UNICAST and r.oif != oif:
                continue
            if best is None or (r.dst.prefixlen, -r.metric) > (best.dst.prefixlen, -best.metric):
                best = r
        if best is not None:
            return best
    return None


def select_source(interfaces: Sequence[InterfaceInfo], route: RouteInfo,
                  dst: IPAddress) -> IPAddress | None:
    """Source address for ``dst`` through ``route`` (inet_select_addr / a
    simplified RFC 6724): an address of the outgoing interface on the same
    prefix as the next hop, else its first address of a fitting scope,
    else any interface's."""
    hop = route.gateway or dst
    want_link = dst.version == 6 and dst.is_link_local
    by_oif = [i for i in interfaces if i.index == route.oif]
    rest = [i for i in interfaces if i.index != route.oif]
    candidates = [a for i in by_oif for a in _kernel_address_order(i, _fam(dst))]
    for a in candidates:
        if hop in a.address.network and not a.flags & IFA_F_TENTATIVE:
            return a.address.ip
    wanted = RT_SCOPE_LINK if want_link else RT_SCOPE_UNIVERSE
    for a in candidates:
        if a.scope == wanted:
            return a.address.ip
    for i in rest:
        for a in _kernel_address_order(i, _fam(dst)):
            if a.scope == RT_SCOPE_UNIVERSE:
                return a.address.ip
    return None


def _fam(ip: IPAddress) -> int:
    return AF_INET if ip.version == 4 else AF_INET6

