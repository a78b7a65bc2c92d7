"""UDP (RFC 768, RFC 8200 8.1) transport and sockets with Linux semantics.

Module rules: everything about UDP sockets lives here; the network layer
(``stack.py``) calls :meth:`UdpTransport.handle_packet` with a reassembled
datagram and sends ICMP port unreachable when it returns False.

Linux behaviours mirrored (``net/ipv4/udp.c``, ``net/ipv6/udp.c``,
``net/ipv4/datagram.c``):

- Socket lookup scores candidates like ``compute_score``: +4 each for a
  matching bound address, connected peer, bound device; IPv4 packets
  prefer AF_INET sockets over dual-stack AF_INET6 ones. SO_REUSEPORT groups
  share unicast by a hash of the 4-tuple; multicast/broadcast go to every
  matching socket (``__udp4_lib_mcast_deliver``).
- bind: EINVAL when already bound, EADDRNOTAVAIL for a non-local address,
  EADDRINUSE unless both sockets set SO_REUSEADDR or both SO_REUSEPORT
  (``udp_lib_lport_inuse``); ephemeral ports are random in
  ``ip_local_port_range`` (32768-60999).
- connect fixes the local address from the route (``ip4_datagram_connect``);
  connect with AF_UNSPEC disconnects and releases an address/port that
  connect chose (``__udp_disconnect``). Pass ``(AF_UNSPEC,)`` or ``()``.
- ICMP errors: only a connected socket (or one with IP_RECVERR) gets a
  pending error, and only a hard one (``__udp4_lib_err``); the next
  send/recv/SO_ERROR returns and clears it (``sock_error``).
- IP_RECVERR / IPV6_RECVERR (two switches, as Linux: an IPv4 error checks
  IP_RECVERR even on an AF_INET6 socket): every ICMP error for a datagram
  the socket sent also queues an entry on the error queue
  (``ip_icmp_error`` / ``ipv6_icmp_error``): ``struct sock_extended_err``
  (:class:`ExtendedError`), the ICMP sender as offender, the original
  destination, and the quoted payload. ``recvmsg(MSG_ERRQUEUE)`` takes the
  oldest (``ip_recv_error``: EAGAIN when empty, MSG_TRUNC when cut, never
  peeks) and re-arms sk_err with the next entry's errno, or clears it
  (``sock_dequeue_err_skb``). Entries are charged like datagrams and
  refused once the receive buffer is full (``sock_queue_err_skb``); turning
  the option off purges the queue. poll() has POLLERR while it is not
  empty. The entry's RecvResult also carries the ICMP message's own
  destination, NIC, TTL and TOS (``ip_cmsg_recv`` of the ICMP skb: the
  IP_PKTINFO/IP_TTL/... cmsgs tracepath reads). A send over the path MTU
  with DF (IP_PMTUDISC_DO, IPV6_DONTFRAG) queues an SO_EE_ORIGIN_LOCAL
  entry with the MTU (``ip_local_error``), as tracepath expects. (Order
  departure: a pending sk_err fails such a send first; Linux checks the
  size before ``sock_alloc_send_skb`` reports sk_err.)
- Receive buffer: a datagram is charged ``len + RCV_OVERHEAD`` (skb
  truesize stand-in) against SO_RCVBUF (set value doubled, as Linux does);
  over the limit it is dropped and counted (``UDP_MIB_RCVBUFERRORS``).
- send without SO_BROADCAST to a broadcast address: EACCES; payload over
  65507 (IPv4) / 65527 (IPv6): EMSGSIZE.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import struct
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from netvisor.tcpip import consts as C
from netvisor.tcpip.api import IcmpError, SockAddr
from netvisor.tcpip.errors import MalformedPacket, NetError
from netvisor.tcpip.wire.checksum import fold, partial_sum, pseudo_header_sum

if TYPE_CHECKING:
    from netvisor.tcpip.stack import Stack

log = logging.getLogger(__name__)

IPv4Address = ipaddress.IPv4Address
IPv6Address = ipaddress.IPv6Address
IPAddress = IPv4Address | IPv6Address

UDP_HLEN: Final = 8
MAX_PAYLOAD_V4: Final = 65535 - 20 - 8
MAX_PAYLOAD_V6: Final = 65535 - 8
CMSG_OPTIONS: Final = frozenset({
    (C.IPPROTO_IP, C.IP_PKTINFO), (C.IPPROTO_IP, C.IP_RECVTTL), (C.IPPROTO_IP, C.IP_RECVTOS),
    (C.IPPROTO_IPV6, C.IPV6_RECVPKTINFO), (C.IPPROTO_IPV6, C.IPV6_RECVHOPLIMIT),
    (C.IPPROTO_IPV6, C.IPV6_RECVTCLASS),
})
IGMP_MAX_MEMBERSHIPS: Final = 20  # Linux net.ipv4.igmp_max_memberships (per socket)
RCV_OVERHEAD: Final = 768
"""Bytes charged per queued datagram on top of its payload (a stand-in for
the skb truesize Linux charges; keeps many tiny datagrams from being free)."""

V4_ANY: Final = IPv4Address(0)
V6_ANY: Final = IPv6Address(0)
V4_BCAST: Final = IPv4Address("255.255.255.255")
GENERIC_SOCKET_OPTIONS: Final = frozenset({
    C.SO_DONTROUTE, C.SO_KEEPALIVE, C.SO_OOBINLINE, C.SO_NO_CHECK, C.SO_PRIORITY,
    C.SO_LINGER, C.SO_PASSCRED, C.SO_RCVLOWAT, C.SO_TIMESTAMP, C.SO_TIMESTAMPNS, C.SO_MARK,
})


def _int_opt(value: bytes) -> int:
    if len(value) >= 4:
        return int.from_bytes(value[:4], "little", signed=True)
    if len(value) >= 1:
        return value[0]
    raise NetError(errno.EINVAL, "option value too short")


def _pack_int(v: int) -> bytes:
    return int(v).to_bytes(4, "little", signed=True)


def _is_mcast(addr: IPAddress) -> bool:
    """``addr.is_multicast`` without building an IPv4Network per call (hot path)."""
    if addr.version == 4:
        return int(addr) >> 28 == 14
    return int(addr) >> 120 == 0xFF


_HOST_CACHE: dict[Any, IPAddress] = {}
_HOST_CACHE_MAX: Final = 4096


def _parse_host(host: Any) -> IPAddress:
    """Text (or ipaddress) host -> address, memoised: a sendto per datagram would
    otherwise parse the same string each time (~2 us)."""
    try:
        ip = _HOST_CACHE.get(host)
    except TypeError:  # unhashable: not an address anyway
        raise NetError(errno.EINVAL, f"bad host {host!r}") from None
    if ip is None:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise NetError(errno.EINVAL, f"bad host {host!r}") from None
        if len(_HOST_CACHE) >= _HOST_CACHE_MAX:
            _HOST_CACHE.clear()
        _HOST_CACHE[host] = ip
    return ip


def unmap(addr: IPAddress) -> IPAddress:
    """::ffff:a.b.c.d -> a.b.c.d; anything else unchanged."""
    if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def mapped(addr: IPv4Address) -> IPv6Address:
    return IPv6Address(b"\x00" * 10 + b"\xff\xff" + addr.packed)


def mapped_str(addr: IPv4Address) -> str:
    """'::ffff:a.b.c.d', the text form Linux/Python use for v4-mapped addresses."""
    return f"::ffff:{addr}"


@dataclass(slots=True)
class RecvResult:
    """One datagram handed out by :meth:`UdpSocket.recvmsg`."""

    data: bytes
    addr: SockAddr
    length: int
    """Full datagram length (so MSG_TRUNC callers can report it)."""
    truncated: bool
    dst: IPAddress | None = None
    """Destination address of the datagram (IP_PKTINFO ipi_addr / ipi6_addr)."""
    ifindex: int = 0
    """NIC it arrived on (IP_PKTINFO ipi_ifindex)."""
    ttl: int = 0
    """Its TTL / hop limit (IP_RECVTTL, IPV6_RECVHOPLIMIT)."""
    tos: int = 0
    """Its TOS / traffic class (IP_RECVTOS, IPV6_RECVTCLASS)."""
    ee: ExtendedError | None = None
    """Set for an error-queue entry (recvmsg with MSG_ERRQUEUE): the
    IP_RECVERR / IPV6_RECVERR control message; ``addr`` is then the original
    destination, and dst/ifindex/ttl/tos describe the ICMP message."""


@dataclass(frozen=True, slots=True)
class ExtendedError:
    """One error-queue entry's ``struct sock_extended_err`` and offender (ip(7))."""

    errno: int
    origin: int
    """SO_EE_ORIGIN_LOCAL (1), SO_EE_ORIGIN_ICMP (2) or SO_EE_ORIGIN_ICMP6 (3)."""
    type: int
    code: int
    info: int
    """ee_info: next-hop MTU, parameter-problem pointer (IPv4), the raw
    ICMPv6 32-bit field (IPv6), else 0."""
    data: int
    offender: IPAddress | None
    """Who sent the ICMP message (SO_EE_OFFENDER); None for a local error."""


class UdpSocket:
    """A UDP socket; see the module docstring for the Linux rules it follows."""

    type: int = C.SOCK_DGRAM
    protocol: int = C.IPPROTO_UDP

    def __init__(self, transport: UdpTransport, family: int) -> None:
        self.transport = transport
        self.stack = transport.stack
        self.family = family
        self.local_addr: IPAddress | None = None  # None = not bound
        self.local_port = 0
        self.remote_addr: IPAddress | None = None
        self.remote_port = 0
        self.bound_nic: int | None = None        # SO_BINDTODEVICE / link-local scope
        self.addr_locked = False                  # explicit bind() of an address
        self.port_locked = False                  # explicit bind() of a port
        self.v6only = False
        self.reuseaddr = False
        self.reuseport = False
        self.broadcast = False
        self.recverr = False                      # IP_RECVERR
        self.recverr6 = False                     # IPV6_RECVERR
        self.errq: deque[tuple[bytes, IPAddress, int, ExtendedError, tuple[Any, ...]]] = deque()
        """The error queue: (quoted payload, original destination, its port, entry,
        (the ICMP message's destination, NIC, TTL, TOS))."""
        self.rcvbuf = 2 * 0 + transport.stack.config.udp_rcvbuf
        self.sndbuf = transport.stack.config.udp_sndbuf
        self.ttl: int | None = None               # None = route/default
        self.mcast_ttl = 1                        # IP_MULTICAST_TTL default (RFC 1112)
        self.mcast_loop = True
        self.mcast_if: int | None = None
        self.tos = 0
        self.pmtudisc = C.IP_PMTUDISC_WANT   # Linux default for UDP (ip_no_pmtu_disc=0)
        self.pmtudisc6 = C.IP_PMTUDISC_WANT
        self.dontfrag6 = False
        self.error = 0
        self.rxq: deque[tuple[bytes, SockAddr, tuple[Any, ...]]] = deque()
        """(payload, source sockaddr, (dst, ifindex, ttl, tos))"""
        self.rx_bytes = 0
        self.drops = 0
        self.shut_rd = False
        self.shut_wr = False
        self.closed = False
        self.memberships: set[tuple[IPAddress, int]] = set()
        self.generic_opts: dict[int, bytes] = {}
        self.cmsg_opts: dict[tuple[int, int], bool] = {}
        """Ancillary-data switches (IP_PKTINFO, IP_RECVTTL, IPV6_RECVHOPLIMIT, ...)."""
        self.bind_seq = 0

    # -- helpers ---------------------------------------------------------------

    def __repr__(self) -> str:
        return (f"<UdpSocket fam={self.family} local={self.local_addr}:{self.local_port} "
                f"remote={self.remote_addr}:{self.remote_port}>")

    def _parse_addr(self, addr: SockAddr) -> tuple[IPAddress, int, int | None]:
        """(address, port, scope nic) from a socket-module tuple, validated."""
        try:
            host, port = addr[0], int(addr[1])
        except (IndexError, TypeError, ValueError):
            raise NetError(errno.EINVAL, f"bad address {addr!r}") from None
        if not 0 <= port <= 65535:
            raise NetError(errno.EINVAL, "port out of range")
        ip = _parse_host(host if host != "" else ("0.0.0.0" if self.family == C.AF_INET else "::"))
        scope: int | None = None
        if self.family == C.AF_INET:
            if not isinstance(ip, IPv4Address):
                raise NetError(errno.EAFNOSUPPORT, "IPv6 address on an AF_INET socket")
        else:
            if not isinstance(ip, IPv6Address):
                raise NetError(errno.EINVAL, "IPv4 address on an AF_INET6 socket")
            if len(addr) >= 4 and addr[3]:
                scope = int(addr[3])
                if not self.stack.has_nic(scope):
                    raise NetError(errno.ENODEV, f"no interface {scope}")
            if ip.ipv4_mapped is not None:
                if self.v6only:
                    raise NetError(errno.EINVAL, "v4-mapped address on an IPV6_V6ONLY socket")
                return ip.ipv4_mapped, port, None
            if ip.is_link_local or _is_mcast(ip) and (ip.packed[1] & 0x0F) <= 2:
                scope = scope if scope is not None else self.bound_nic
        return ip, port, scope

    def sockaddr(self, ip: IPAddress | None, port: int) -> SockAddr:
        """The socket-module tuple for (ip, port) in this socket's family."""
        if self.family == C.AF_INET:
            return (str(ip if ip is not None else V4_ANY), port)
        if ip is None:
            return ("::", port, 0, 0)
        if isinstance(ip, IPv4Address):
            return (mapped_str(ip), port, 0, 0)
        scope = 0
        if ip.is_link_local and self.bound_nic is not None:
            scope = self.bound_nic
        return (str(ip), port, 0, scope)

    def _binding_keys(self) -> list[tuple[int, IPAddress | None]]:
        """(version, addr-or-None-for-wildcard) this socket's binding covers."""
        addr = self.local_addr
        if self.family == C.AF_INET:
            return [(4, None if addr is None or addr == V4_ANY else addr)]
        if addr is None or addr == V6_ANY:
            return [(6, None)] if self.v6only else [(6, None), (4, None)]
        if isinstance(addr, IPv4Address):
            return [(4, None if addr == V4_ANY else addr)]
        return [(6, addr)]

    def accepts_version(self, version: int) -> bool:
        return any(v == version for v, _ in self._binding_keys())

    # -- Socket protocol -------------------------------------------------------

    def bind(self, addr: SockAddr) -> None:
        if self.closed:
            raise NetError(errno.EBADF)
        if self.local_port:
            raise NetError(errno.EINVAL, "already bound")
        ip, port, scope = self._parse_addr(addr)
        if self.family == C.AF_INET6 and isinstance(ip, IPv6Address) and ip.is_link_local \
                and scope is None:
            raise NetError(errno.EINVAL, "link-local bind needs a scope id")
        wildcard = ip == V4_ANY or ip == V6_ANY
        if not wildcard and not _is_mcast(ip) and not self.stack.is_local_address(ip) \
                and not (isinstance(ip, IPv4Address) and self.stack.is_broadcast(ip)):
            raise NetError(errno.EADDRNOTAVAIL, f"{ip} is not a local address")
        if isinstance(ip, IPv6Address) and not wildcard and not _is_mcast(ip) \
                and self.stack.is_tentative(ip):
            # Linux: a tentative address cannot be bound (ipv6_chk_addr skips it).
            raise NetError(errno.EADDRNOTAVAIL, f"{ip} is tentative")
        old = (self.local_addr, self.bound_nic)
        self.local_addr = None if wildcard else ip
        if self.family == C.AF_INET6 and wildcard:
            self.local_addr = None
        if scope is not None:
            self.bound_nic = scope
        try:
            self.transport.bind_port(self, port)
        except NetError:
            self.local_addr, self.bound_nic = old
            raise
        self.addr_locked = not wildcard
        self.port_locked = port != 0

    def listen(self, backlog: int) -> None:
        raise NetError(errno.EOPNOTSUPP)

    def accept(self) -> tuple[Any, SockAddr]:
        raise NetError(errno.EOPNOTSUPP)

    def connect(self, addr: SockAddr) -> None:
        if self.closed:
            raise NetError(errno.EBADF)
        if len(addr) == 0 or (len(addr) == 1 and addr[0] == C.AF_UNSPEC):
            self.disconnect()
            return
        ip, port, scope = self._parse_addr(addr)
        if ip == V4_ANY:
            ip = IPv4Address("127.0.0.1")   # Linux: connect to INADDR_ANY means loopback
        elif ip == V6_ANY:
            ip = IPv6Address("::1")
        if isinstance(ip, IPv4Address) and self.stack.is_broadcast(ip) and not self.broadcast:
            raise NetError(errno.EACCES, "broadcast without SO_BROADCAST")
        if self.local_addr is not None and self.local_addr.version != ip.version:
            raise NetError(errno.ENETUNREACH, "address family mismatch with bound address")
        route = self._route(ip, scope)
        if self.local_addr is None:
            self.local_addr = route.src
        self.remote_addr = ip
        self.remote_port = port
        if scope is not None and self.bound_nic is None:
            self.bound_nic = scope
        if not self.local_port:
            self.transport.bind_port(self, 0)
        self.transport.rehash(self)

    def disconnect(self) -> None:
        """connect(AF_UNSPEC): forget the peer and whatever connect chose."""
        self.remote_addr = None
        self.remote_port = 0
        if not self.addr_locked:
            self.local_addr = None
        if not self.port_locked and self.local_port:
            self.transport.unbind(self)
        self.transport.rehash(self)

    def _route(self, dst: IPAddress, scope: int | None) -> Any:
        nic = scope if scope is not None else self.bound_nic
        if _is_mcast(dst) and nic is None and self.mcast_if is not None:
            nic = self.mcast_if
        src = self.local_addr if self.local_addr is not None and not _is_mcast(self.local_addr) \
            and not self.stack.is_broadcast(self.local_addr) else None
        if src is not None and src.version != dst.version:
            raise NetError(errno.ENETUNREACH)
        return self.stack.route(dst, src=src, bound_nic=nic)

    def _take_error(self) -> None:
        if self.error:
            code, self.error = self.error, 0
            raise NetError(code)

    def send(self, data: bytes | memoryview, flags: int = 0) -> int:
        return self.sendto(data, flags, None)

    def sendto(self, data: bytes | memoryview, flags: int, addr: SockAddr | None) -> int:
        if self.closed:
            raise NetError(errno.EBADF)
        self._take_error()
        if self.shut_wr:
            raise NetError(errno.EPIPE)
        if addr is None:
            if self.remote_addr is None:
                raise NetError(errno.EDESTADDRREQ)
            dst, dport, scope = self.remote_addr, self.remote_port, None
        else:
            dst, dport, scope = self._parse_addr(addr)
            if dport == 0 and self.protocol == C.IPPROTO_UDP:
                raise NetError(errno.EINVAL, "destination port 0")
            if dst == V4_ANY:
                dst = IPv4Address("127.0.0.1")
            elif dst == V6_ANY:
                dst = IPv6Address("::1")
            if self.family == C.AF_INET6 and isinstance(dst, IPv6Address) \
                    and dst.is_link_local and scope is None and self.bound_nic is None:
                raise NetError(errno.EINVAL, "link-local destination needs a scope id")
        n = len(data)
        self._check_payload(data, dst)
        if isinstance(dst, IPv4Address) and self.stack.is_broadcast(dst) and not self.broadcast:
            raise NetError(errno.EACCES, "broadcast without SO_BROADCAST")
        if self.local_addr is not None and self.local_addr.version != dst.version \
                and not (self.family == C.AF_INET6 and self.local_addr == V6_ANY):
            raise NetError(errno.ENETUNREACH if self.family == C.AF_INET6 else errno.EINVAL)
        if self.family == C.AF_INET6 and isinstance(dst, IPv4Address) and self.v6only:
            raise NetError(errno.ENETUNREACH)
        route = self._route(dst, scope)
        if not self.local_port:
            self.transport.bind_port(self, 0)
        ttl = self.mcast_ttl if _is_mcast(dst) else self.ttl
        try:
            self._transmit(route, dst, dport, data, ttl)
        except NetError as e:
            if e.errno == errno.EMSGSIZE:
                self._local_error(dst, dport, route.mtu)
            raise
        return n

    def _dont_fragment(self, dst: IPAddress) -> bool | None:
        """DF policy for ``dst``: True = EMSGSIZE over the path MTU (IP_PMTUDISC_DO /
        PROBE, IPV6_DONTFRAG), False = never DF, None = Linux's WANT (DF unless
        the datagram must be fragmented)."""
        mode = self.pmtudisc if dst.version == 4 else self.pmtudisc6
        if dst.version == 6 and self.dontfrag6:
            return True
        if mode in (C.IP_PMTUDISC_DO, C.IP_PMTUDISC_PROBE):
            return True
        if mode == C.IP_PMTUDISC_DONT or mode > C.IP_PMTUDISC_PROBE:
            return False
        return None

    def _check_payload(self, data: bytes | memoryview, dst: IPAddress) -> None:
        if len(data) > (MAX_PAYLOAD_V4 if dst.version == 4 else MAX_PAYLOAD_V6):
            raise NetError(errno.EMSGSIZE)

    def _transmit(self, route: Any, dst: IPAddress, dport: int, data: bytes | memoryview,
                  ttl: int | None) -> None:
        """Build the UDP datagram and hand it to the network layer."""
        n = len(data)
        src = route.src
        hdr = struct.pack("!HHHH", self.local_port, dport, UDP_HLEN + n, 0)
        seg = bytearray(hdr)
        seg += data
        # Pseudo-header sum in the checksum field; the network layer (or the
        # NIC) completes it (virtio NEEDS_CSUM semantics).
        struct.pack_into("!H", seg, 6, fold(pseudo_header_sum(src, dst, C.IPPROTO_UDP,
                                                               UDP_HLEN + n)))
        self.stack.output(route, dst, C.IPPROTO_UDP, seg, ttl=ttl, tos=self.tos,
                          checksum_offset=6, dont_fragment=self._dont_fragment(dst),
                          multicast_loop=self.mcast_loop and _is_mcast(dst))
        self.stack.counters.inc("udp_tx")

    def recvmsg(self, bufsize: int, flags: int = 0) -> RecvResult:
        """recvfrom with the full length and truncation flag (for MSG_TRUNC / msg_flags).

        MSG_ERRQUEUE: the oldest error-queue entry instead (``RecvResult.ee``)."""
        if self.closed:
            raise NetError(errno.EBADF)
        if flags & C.MSG_ERRQUEUE:
            return self._recv_error(bufsize)
        self._take_error()
        if not self.rxq:
            if self.shut_rd and not flags & C.MSG_DONTWAIT:
                # Linux __skb_wait_for_more_packets: a *blocking* receive after
                # SHUT_RD returns 0 at once; a non-blocking one (MSG_DONTWAIT or
                # O_NONBLOCK, which the caller maps to MSG_DONTWAIT) gets EAGAIN.
                return RecvResult(b"", self.sockaddr(None, 0), 0, False)
            raise NetError(errno.EAGAIN)
        data, addr, meta = self.rxq[0]
        if not flags & C.MSG_PEEK:
            self.rxq.popleft()
            self.rx_bytes -= len(data) + RCV_OVERHEAD
            self.stack.readiness_changed(self)
        n = len(data)
        truncated = n > bufsize
        return RecvResult(data[:bufsize] if truncated else data, addr, n, truncated, *meta)

    def _recv_error(self, bufsize: int) -> RecvResult:
        """ip_recv_error / ipv6_recv_error: dequeue one entry (MSG_PEEK has no effect)."""
        if not self.errq:
            raise NetError(errno.EAGAIN)
        data, dst, dport, ee, meta = self.errq.popleft()
        self.rx_bytes -= len(data) + RCV_OVERHEAD
        # sock_dequeue_err_skb: sk_err becomes the next ICMP entry's errno, or 0
        # after an ICMP entry (a local one leaves it alone).
        nxt = self.errq[0][3] if self.errq else None
        if nxt is not None and nxt.origin != C.SO_EE_ORIGIN_LOCAL:
            self.error = nxt.errno
        elif ee.origin != C.SO_EE_ORIGIN_LOCAL:
            self.error = 0
        self.stack.readiness_changed(self)
        n = len(data)
        # ipv4_datagram_support_addr: an ICMP entry always names the original
        # destination (port 0 for ping sockets).
        return RecvResult(data[:bufsize], self.sockaddr(dst, dport), n, n > bufsize, *meta,
                          ee=ee)

    def _local_error(self, dst: IPAddress, dport: int, mtu: int) -> None:
        """ip_local_error / ipv6_local_error: EMSGSIZE over the path MTU (DF) queues
        an SO_EE_ORIGIN_LOCAL entry: no payload, ee_info = the MTU, no offender,
        named by the destination with the connected port (IPv4: inet_dport) or
        the datagram's (IPv6: fl6_dport). sk_err is left alone."""
        if not (self.recverr if dst.version == 4 else self.recverr6):
            return
        if self.rx_bytes + RCV_OVERHEAD >= self.rcvbuf:
            return
        port = self.remote_port if dst.version == 4 else dport
        ee = ExtendedError(errno.EMSGSIZE, C.SO_EE_ORIGIN_LOCAL, 0, 0, mtu, 0, None)
        self.errq.append((b"", dst, port, ee, (None, 0, 0, 0)))
        self.rx_bytes += RCV_OVERHEAD
        self.stack.readiness_changed(self)

    def _purge_errq(self) -> None:
        """IP_RECVERR / IPV6_RECVERR turned off: skb_errqueue_purge (sk_err stays)."""
        for data, *_ in self.errq:
            self.rx_bytes -= len(data) + RCV_OVERHEAD
        self.errq.clear()
        self.stack.readiness_changed(self)

    def queue_error(self, err: IcmpError, payload: bytes, dst: IPAddress, dport: int) -> None:
        """ip_icmp_error / ipv6_icmp_error: queue an entry for an ICMP error quoting
        our datagram to ``dst``:``dport`` (``payload``: what followed our header)."""
        cost = len(payload) + RCV_OVERHEAD
        if self.rx_bytes + cost >= self.rcvbuf:   # sock_queue_err_skb: -ENOMEM, not queued
            self.drops += 1
            return
        v4 = err.family == C.AF_INET
        if v4:
            # icmp_unreach: the MTU of fragmentation-needed, the pointer of a
            # parameter problem, else 0.
            info = err.mtu if err.type == 3 and err.code == 4 else (
                err.info >> 24 if err.type == 12 else 0)
        else:
            info = err.info   # icmpv6_notify passes the raw 32-bit field
        ee = ExtendedError(err.errno, C.SO_EE_ORIGIN_ICMP if v4 else C.SO_EE_ORIGIN_ICMP6,
                           err.type, err.code, info, 0, err.reporter)
        self.errq.append((payload, dst, dport, ee, (err.local, err.nic_id, err.ttl, err.tos)))
        self.rx_bytes += cost

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        return self.recvmsg(bufsize, flags).data

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, SockAddr | None]:
        r = self.recvmsg(bufsize, flags)
        return r.data, r.addr

    def shutdown(self, how: int) -> None:
        if how not in (C.SHUT_RD, C.SHUT_WR, C.SHUT_RDWR):
            raise NetError(errno.EINVAL)
        # Linux inet_shutdown: the flags are applied even when it then answers
        # ENOTCONN for an unconnected datagram socket.
        if how in (C.SHUT_RD, C.SHUT_RDWR):
            self.shut_rd = True
        if how in (C.SHUT_WR, C.SHUT_RDWR):
            self.shut_wr = True
        self.stack.readiness_changed(self)
        if self.remote_addr is None:
            raise NetError(errno.ENOTCONN)

    def close(self) -> None:
        if self.closed:
            return
        for group, nic in list(self.memberships):
            self.stack.leave_group(nic, group)
        self.memberships.clear()
        self.transport.unbind(self)
        self.closed = True
        self.rxq.clear()
        self.errq.clear()
        self.stack.readiness_changed(self)

    def getsockname(self) -> SockAddr:
        return self.sockaddr(self.local_addr, self.local_port)

    def getpeername(self) -> SockAddr:
        if self.remote_addr is None:
            raise NetError(errno.ENOTCONN)
        return self.sockaddr(self.remote_addr, self.remote_port)

    def poll(self) -> int:
        mask = 0
        if self.rxq:
            mask |= C.POLLIN | C.POLLRDNORM
        if not self.shut_wr:
            mask |= C.POLLOUT | C.POLLWRNORM
        if self.error or self.errq:   # datagram_poll: sk_err or a non-empty error queue
            mask |= C.POLLERR
        if self.shut_rd:
            mask |= C.POLLRDHUP | C.POLLIN | C.POLLRDNORM
        if self.shut_rd and self.shut_wr or self.closed:
            mask |= C.POLLHUP
        return mask

    # -- options ---------------------------------------------------------------

    def setsockopt(self, level: int, optname: int, value: bytes) -> None:
        if level == C.SOL_SOCKET:
            if optname == C.SO_REUSEADDR:
                self.reuseaddr = bool(_int_opt(value))
            elif optname == C.SO_REUSEPORT:
                self.reuseport = bool(_int_opt(value))
            elif optname == C.SO_BROADCAST:
                self.broadcast = bool(_int_opt(value))
            elif optname in (C.SO_RCVBUF, C.SO_RCVBUFFORCE):
                v = max(_int_opt(value), 0)
                if optname == C.SO_RCVBUF:
                    v = min(v, self.stack.config.rcvbuf_max)
                # Linux doubles the value (bookkeeping overhead); minimum 2304.
                self.rcvbuf = max(2 * v, 2304)
            elif optname == C.SO_SNDBUF:
                self.sndbuf = max(2 * min(max(_int_opt(value), 0), 212992), 4608)
            elif optname == C.SO_BINDTOIFINDEX:
                idx = _int_opt(value)
                if idx and not self.stack.has_nic(idx):
                    raise NetError(errno.ENODEV)
                self.bound_nic = idx or None
            elif optname in GENERIC_SOCKET_OPTIONS:
                # Accepted by Linux sock_setsockopt for any socket; stored and
                # reported back, no effect on a datagram socket here.
                if len(value) < (8 if optname == C.SO_LINGER else 4):
                    raise NetError(errno.EINVAL)
                self.generic_opts[optname] = bytes(value[:8 if optname == C.SO_LINGER else 4])
            elif optname == C.SO_BINDTODEVICE:
                name = bytes(value).split(b"\x00", 1)[0].decode(errors="replace")
                if not name:
                    self.bound_nic = None
                else:
                    idx2 = self.stack.nic_by_name(name)
                    if idx2 is None:
                        raise NetError(errno.ENODEV)
                    self.bound_nic = idx2
            else:
                raise NetError(errno.ENOPROTOOPT)
        elif level == C.IPPROTO_IP:
            if self.family == C.AF_INET6 and optname not in (
                    C.IP_ADD_MEMBERSHIP, C.IP_DROP_MEMBERSHIP, C.IP_MULTICAST_TTL,
                    C.IP_MULTICAST_LOOP, C.IP_TTL, C.IP_TOS, C.IP_RECVERR, C.IP_PKTINFO,
                    C.IP_RECVTTL, C.IP_RECVTOS, C.IP_MTU_DISCOVER):
                raise NetError(errno.ENOPROTOOPT)
            if optname == C.IP_TTL:
                v = _int_opt(value)
                if v == -1:
                    self.ttl = None
                elif 1 <= v <= 255:
                    self.ttl = v
                else:
                    raise NetError(errno.EINVAL)
            elif optname == C.IP_TOS:
                self.tos = _int_opt(value) & 0xFF
            elif optname == C.IP_MULTICAST_TTL:
                v = _int_opt(value) if len(value) >= 4 else value[0]
                if v == -1:
                    v = 1
                if not 0 <= v <= 255:
                    raise NetError(errno.EINVAL)
                self.mcast_ttl = v
            elif optname == C.IP_MULTICAST_LOOP:
                self.mcast_loop = bool(_int_opt(value) if len(value) >= 4 else value[0])
            elif optname == C.IP_RECVERR:
                self.recverr = bool(_int_opt(value))
                if not self.recverr:
                    self._purge_errq()
            elif optname in (C.IP_PKTINFO, C.IP_RECVTTL, C.IP_RECVTOS):
                # Ancillary-data switches: the stack keeps each datagram's facts
                # (recvmsg -> RecvResult); the syscall plane builds the cmsgs.
                self.cmsg_opts[(level, optname)] = bool(_int_opt(value))
            elif optname == C.IP_MULTICAST_IF:
                self.mcast_if = self._mreq_nic(value, iface_only=True)
            elif optname in (C.IP_ADD_MEMBERSHIP, C.IP_DROP_MEMBERSHIP):
                if len(value) < 8:
                    raise NetError(errno.EINVAL)
                group = IPv4Address(bytes(value[:4]))
                if not _is_mcast(group):
                    raise NetError(errno.EINVAL)
                nic = self._mreq_nic(value[4:], iface_only=False)
                self._membership(optname == C.IP_ADD_MEMBERSHIP, group, nic)
            elif optname == C.IP_MTU_DISCOVER:
                v = _int_opt(value)
                if not 0 <= v <= 5:  # up to IP_PMTUDISC_OMIT
                    raise NetError(errno.EINVAL)
                self.pmtudisc = v
            elif optname == C.IP_MULTICAST_ALL:
                pass  # accepted; delivery already follows the default (1)
            else:
                raise NetError(errno.ENOPROTOOPT)
        elif level == C.IPPROTO_IPV6:
            if self.family != C.AF_INET6:
                raise NetError(errno.ENOPROTOOPT)
            if optname == C.IPV6_V6ONLY:
                if self.local_port:
                    raise NetError(errno.EINVAL)
                self.v6only = bool(_int_opt(value))
            elif optname == C.IPV6_UNICAST_HOPS:
                v = _int_opt(value)
                if v == -1:
                    self.ttl = None
                elif 0 <= v <= 255:
                    self.ttl = v
                else:
                    raise NetError(errno.EINVAL)
            elif optname == C.IPV6_MULTICAST_HOPS:
                v = _int_opt(value)
                if v == -1:
                    v = 1
                if not 0 <= v <= 255:
                    raise NetError(errno.EINVAL)
                self.mcast_ttl = v
            elif optname == C.IPV6_MULTICAST_LOOP:
                v = _int_opt(value)
                if v not in (0, 1):
                    raise NetError(errno.EINVAL)
                self.mcast_loop = bool(v)
            elif optname == C.IPV6_MULTICAST_IF:
                idx = _int_opt(value)
                if idx and not self.stack.has_nic(idx):
                    raise NetError(errno.ENODEV)
                self.mcast_if = idx or None
            elif optname == C.IPV6_TCLASS:
                self.tos = _int_opt(value) & 0xFF
            elif optname == C.IPV6_MTU_DISCOVER:
                v = _int_opt(value)
                if not 0 <= v <= 5:
                    raise NetError(errno.EINVAL)
                self.pmtudisc6 = v
            elif optname == C.IPV6_DONTFRAG:
                self.dontfrag6 = bool(_int_opt(value))
            elif optname == C.IPV6_RECVERR:
                self.recverr6 = bool(_int_opt(value))
                if not self.recverr6:
                    self._purge_errq()
            elif optname in (C.IPV6_RECVPKTINFO, C.IPV6_RECVHOPLIMIT, C.IPV6_RECVTCLASS):
                self.cmsg_opts[(level, optname)] = bool(_int_opt(value))
            elif optname in (C.IPV6_JOIN_GROUP, C.IPV6_LEAVE_GROUP):
                if len(value) < 20:
                    raise NetError(errno.EINVAL)
                group6 = IPv6Address(bytes(value[:16]))
                if not _is_mcast(group6):
                    raise NetError(errno.EINVAL)
                idx = int.from_bytes(value[16:20], "little")
                if idx and not self.stack.has_nic(idx):
                    raise NetError(errno.ENODEV)
                nic6 = idx or self.stack.default_multicast_nic(group6)
                if nic6 is None:
                    raise NetError(errno.ENODEV)
                self._membership(optname == C.IPV6_JOIN_GROUP, group6, nic6)
            else:
                raise NetError(errno.ENOPROTOOPT)
        else:
            raise NetError(errno.ENOPROTOOPT)

    def _mreq_nic(self, value: bytes, *, iface_only: bool) -> int | None:
        """The NIC an ip_mreq / ip_mreqn / in_addr names (Linux ``ip_mc_find_dev``)."""
        value = bytes(value)
        if len(value) >= 8 and not iface_only or len(value) >= 12:
            # ip_mreqn: imr_address (4) + imr_ifindex (4)
            idx = int.from_bytes(value[4:8], "little") if not iface_only else \
                int.from_bytes(value[8:12], "little")
            if idx:
                if not self.stack.has_nic(idx):
                    raise NetError(errno.ENODEV)
                return idx
            addr_bytes = value[:4]
        elif len(value) >= 4:
            addr_bytes = value[:4]
        else:
            raise NetError(errno.EINVAL)
        addr = IPv4Address(addr_bytes)
        if addr == V4_ANY:
            return None if iface_only else self.stack.default_multicast_nic(IPv4Address("224.0.0.1"))
        nic = self.stack.nic_of_address(addr)
        if nic is None:
            raise NetError(errno.EADDRNOTAVAIL)
        return nic

    def _membership(self, join: bool, group: IPAddress, nic: int | None) -> None:
        if nic is None:
            raise NetError(errno.ENODEV)
        key = (group, nic)
        if join:
            if key in self.memberships:
                raise NetError(errno.EADDRINUSE)
            if group.version == 4 and sum(1 for g, _ in self.memberships if g.version == 4) \
                    >= IGMP_MAX_MEMBERSHIPS:
                raise NetError(errno.ENOBUFS)  # Linux net.ipv4.igmp_max_memberships
            self.memberships.add(key)
            self.stack.join_group(nic, group)
        else:
            if key not in self.memberships:
                raise NetError(errno.EADDRNOTAVAIL)
            self.memberships.discard(key)
            self.stack.leave_group(nic, group)

    def getsockopt(self, level: int, optname: int, buflen: int) -> bytes:
        if level == C.SOL_SOCKET:
            table = {
                C.SO_TYPE: C.SOCK_DGRAM, C.SO_PROTOCOL: C.IPPROTO_UDP, C.SO_DOMAIN: self.family,
                C.SO_REUSEADDR: int(self.reuseaddr), C.SO_REUSEPORT: int(self.reuseport),
                C.SO_BROADCAST: int(self.broadcast), C.SO_RCVBUF: self.rcvbuf,
                C.SO_SNDBUF: self.sndbuf, C.SO_BINDTOIFINDEX: self.bound_nic or 0,
            }
            if optname in GENERIC_SOCKET_OPTIONS:
                default = bytes(8) if optname == C.SO_LINGER else _pack_int(0)
                return self.generic_opts.get(optname, default)
            if optname == C.SO_ERROR:
                code, self.error = self.error, 0
                self.stack.readiness_changed(self)
                return _pack_int(code)
            if optname in table:
                return _pack_int(table[optname])
        if (level, optname) in CMSG_OPTIONS:
            return _pack_int(int(self.cmsg_opts.get((level, optname), False)))
        if level == C.IPPROTO_IP:
            table = {
                C.IP_TTL: self.ttl if self.ttl is not None else self.stack.config.default_ttl,
                C.IP_TOS: self.tos, C.IP_MULTICAST_TTL: self.mcast_ttl,
                C.IP_MULTICAST_LOOP: int(self.mcast_loop), C.IP_RECVERR: int(self.recverr),
                C.IP_MTU_DISCOVER: self.pmtudisc,
            }
            if optname == C.IP_MTU:
                if self.remote_addr is None:
                    raise NetError(errno.ENOTCONN)
                return _pack_int(self._route(self.remote_addr, None).mtu)
            if optname in table:
                return _pack_int(table[optname])
        elif level == C.IPPROTO_IPV6 and self.family == C.AF_INET6:
            table = {
                C.IPV6_V6ONLY: int(self.v6only),
                C.IPV6_UNICAST_HOPS: self.ttl if self.ttl is not None
                else self.stack.config.default_hop_limit,
                C.IPV6_MULTICAST_HOPS: self.mcast_ttl,
                C.IPV6_MULTICAST_LOOP: int(self.mcast_loop), C.IPV6_TCLASS: self.tos,
                C.IPV6_MULTICAST_IF: self.mcast_if or 0,
                C.IPV6_MTU_DISCOVER: self.pmtudisc6, C.IPV6_DONTFRAG: int(self.dontfrag6),
                C.IPV6_RECVERR: int(self.recverr6),
            }
            if optname == C.IPV6_MTU:
                if self.remote_addr is None:
                    raise NetError(errno.ENOTCONN)
                return _pack_int(self._route(self.remote_addr, None).mtu)
            if optname in table:
                return _pack_int(table[optname])
        raise NetError(errno.ENOPROTOOPT)

    # -- input from the transport ------------------------------------------------

    def deliver(self, data: bytes, src: IPAddress, sport: int) -> bool:
        """Queue a datagram; False (counted drop) when the receive buffer is full."""
        if self.shut_rd or self.closed:
            return False
        cost = len(data) + RCV_OVERHEAD
        # Linux __udp_enqueue_schedule_skb: drop once the memory already
        # charged exceeds SO_RCVBUF (the datagram that crosses it still fits).
        if self.rx_bytes > self.rcvbuf:
            self.drops += 1
            return False
        if self.family == C.AF_INET6:
            if isinstance(src, IPv4Address):
                addr: SockAddr = (mapped_str(src), sport, 0, 0)
            else:
                scope = self.transport.current_nic if src.is_link_local else 0
                addr = (str(src), sport, 0, scope)
        else:
            addr = (str(src), sport)
        was_empty = not self.rxq
        t = self.transport
        self.rxq.append((data, addr, (t.current_dst, t.current_nic, *self.stack.rx_ttl_tos)))
        self.rx_bytes += cost
        if was_empty:
            self.stack.readiness_changed(self)
        return True


class UdpTransport:
    """The UDP protocol: port table, demultiplexing, ICMP error delivery."""

    protocol: int = C.IPPROTO_UDP
    has_timers: bool = False
    """No ``handle_timer`` work ever (the Stack skips it on every turn)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.ports: dict[int, list[UdpSocket]] = {}
        self.current_nic = 0
        self.current_dst: IPAddress | None = None
        self._bind_seq = 0

    # -- port table ------------------------------------------------------------

    @staticmethod
    def _conflict(a: UdpSocket, b: UdpSocket) -> bool:
        if a.reuseaddr and b.reuseaddr:
            return False
        if a.reuseport and b.reuseport:
            return False
        if a.bound_nic is not None and b.bound_nic is not None and a.bound_nic != b.bound_nic:
            return False
        for va, aa in a._binding_keys():
            for vb, ab in b._binding_keys():
                if va == vb and (aa is None or ab is None or aa == ab):
                    return True
        return False

    def _port_free(self, sock: UdpSocket, port: int) -> bool:
        return not any(self._conflict(sock, other) for other in self.ports.get(port, ())
                       if other is not sock)

    def bind_port(self, sock: UdpSocket, port: int) -> None:
        """Claim ``port`` for ``sock`` (0: a free ephemeral port); EADDRINUSE on conflict."""
        cfg = self.stack.config
        if port == 0:
            low, high = cfg.ephemeral_low, cfg.ephemeral_high
            span = high - low + 1
            start = self.stack.rng.randrange(span)
            for i in range(span):
                candidate = low + (start + i) % span
                if self._port_free(sock, candidate):
                    port = candidate
                    break
            else:
                raise NetError(errno.EAGAIN, "no ephemeral port")  # Linux udp_lib_get_port
        elif not self._port_free(sock, port):
            raise NetError(errno.EADDRINUSE, f"port {port} in use")
        sock.local_port = port
        self._bind_seq += 1
        sock.bind_seq = self._bind_seq
        self.ports.setdefault(port, []).append(sock)

    def unbind(self, sock: UdpSocket) -> None:
        """Release ``sock``'s port."""
        lst = self.ports.get(sock.local_port)
        if lst is not None and sock in lst:
            lst.remove(sock)
            if not lst:
                del self.ports[sock.local_port]
        sock.local_port = 0

    def rehash(self, sock: UdpSocket) -> None:
        """Addresses changed (connect/disconnect); the table is keyed by port only."""

    # -- Transport protocol ----------------------------------------------------

    def socket(self, family: int) -> UdpSocket:
        """A new UDP socket of ``family``."""
        if family not in (C.AF_INET, C.AF_INET6):
            raise NetError(errno.EAFNOSUPPORT)
        return UdpSocket(self, family)

    @staticmethod
    def _score(s: UdpSocket, version: int, src: IPAddress, sport: int,
               dst: IPAddress, nic_id: int) -> int:
        """Linux ``compute_score``: -1 = no match."""
        if s.closed:
            return -1
        score = 2 if (s.family == C.AF_INET) == (version == 4) else 1
        if version == 4 and s.family == C.AF_INET6:
            if s.v6only:
                return -1
            la = s.local_addr
            if la is not None and la != V6_ANY:
                if not isinstance(la, IPv4Address) or la != dst:
                    return -1
                score += 4
        else:
            if version == 6 and s.family == C.AF_INET:
                return -1
            la = s.local_addr
            if la is not None and la != V4_ANY and la != V6_ANY:
                if la != dst:
                    return -1
                score += 4
        if s.remote_addr is not None:
            if s.remote_addr != src or s.remote_port != sport:
                return -1
            score += 4
        if s.bound_nic is not None:
            if s.bound_nic != nic_id:
                return -1
            score += 4
        return score

    def handle_packet(self, src: IPAddress, dst: IPAddress, transport: memoryview,
                      now: float, *, checksum_valid: bool, nic_id: int) -> bool:
        """Deliver one datagram; False = no socket (caller may send port unreachable)."""
        if len(transport) < UDP_HLEN:
            raise MalformedPacket("UDP header truncated")
        sport, dport, length, csum = struct.unpack_from("!HHHH", transport)
        if length < UDP_HLEN or length > len(transport):
            raise MalformedPacket("UDP length field")
        seg = transport[:length]
        if csum == 0:
            if dst.version == 6:
                raise MalformedPacket("UDP over IPv6 without checksum (RFC 8200 8.1)")
        elif not checksum_valid:
            total = partial_sum(seg, pseudo_header_sum(src, dst, C.IPPROTO_UDP, length))
            if fold(total) != 0xFFFF:
                raise MalformedPacket("UDP checksum")
        payload = bytes(seg[UDP_HLEN:])
        self.current_nic = nic_id
        self.current_dst = dst
        version = dst.version
        candidates = self.ports.get(dport)
        if not candidates:
            return False
        stack = self.stack
        if _is_mcast(dst) or (version == 4 and stack.is_broadcast(dst)):
            delivered = False
            for s in list(candidates):
                if self._score(s, version, src, sport, dst, nic_id) < 0:
                    continue
                if not s.deliver(payload, src, sport):
                    stack.counters.inc("udp_rcvbuf_errors")
                delivered = True
            if delivered:
                stack.counters.inc("udp_rx")
            # Linux: no port unreachable for multicast/broadcast.
            return True
        best: list[UdpSocket] = []
        best_score = -1
        for s in candidates:
            sc = self._score(s, version, src, sport, dst, nic_id)
            if sc > best_score:
                best, best_score = [s], sc
            elif sc == best_score and sc >= 0:
                best.append(s)
        if best_score < 0:
            return False
        if len(best) > 1:
            group = [s for s in best if s.reuseport]
            if len(group) == len(best):
                # SO_REUSEPORT: stable hash of the 4-tuple picks the socket.
                h = hash((src.packed, sport, dst.packed, dport))
                target = sorted(group, key=lambda s: s.bind_seq)[h % len(group)]
            else:
                # SO_REUSEADDR duplicates: the most recently bound wins.
                target = max(best, key=lambda s: s.bind_seq)
        else:
            target = best[0]
        if target.deliver(payload, src, sport):
            stack.counters.inc("udp_rx")
        else:
            stack.counters.inc("udp_rcvbuf_errors")
            from netvisor.tcpip.counters import DropReason
            stack.counters.drop(DropReason.RCVBUF_FULL)
        return True

    @staticmethod
    def quoted_ports(q: bytes) -> tuple[int, int] | None:
        """(our port, their port) from the transport header quoted in an ICMP error."""
        if len(q) < 4:
            return None
        sport, dport = struct.unpack_from("!HH", q)
        return sport, dport

    def handle_icmp_error(self, err: IcmpError, now: float) -> None:
        """An ICMP error quoting one of our datagrams: a pending error for the socket
        that sent it, under Linux's rules (see the module docstring)."""
        ports = self.quoted_ports(err.quoted_transport)
        if ports is None:
            return
        sport, dport = ports
        src, dst = unmap(err.src), unmap(err.dst)
        if err.family == C.AF_INET:
            from netvisor.tcpip.icmp import icmpv4_errno
            _, fatal = icmpv4_errno(err.type, err.code)
        else:
            from netvisor.tcpip.icmp import icmpv6_errno
            _, fatal = icmpv6_errno(err.type, err.code)
        for s in self.ports.get(sport, ()):
            if s.remote_addr is not None and (s.remote_addr != dst or s.remote_port != dport):
                continue
            la = s.local_addr
            if la is not None and la not in (V4_ANY, V6_ANY) and la != src:
                continue
            if not s.accepts_version(dst.version):
                continue
            # __udp4_lib_err: unconnected sockets without IP_RECVERR ignore
            # errors; soft errors (e.g. PMTU) only reach IP_RECVERR sockets.
            # (IPv4 errors check IP_RECVERR, IPv6 ones IPV6_RECVERR.)
            recverr = s.recverr if err.family == C.AF_INET else s.recverr6
            if not recverr and (not fatal or s.remote_addr is None):
                continue
            if recverr:
                s.queue_error(err, self.error_payload(err.quoted_transport), dst, dport)
            s.error = err.errno
            self.stack.readiness_changed(s)
            return

    @staticmethod
    def error_payload(q: bytes) -> bytes:
        """What an error-queue entry carries: the quoted datagram after our UDP
        header (``__udp4_lib_err`` passes ``uh + 1``)."""
        return bytes(q[UDP_HLEN:])

    def handle_timer(self, now: float) -> None:
        """UDP has no timers."""

    def next_deadline(self) -> float | None:
        return None
