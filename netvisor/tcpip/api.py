"""The contracts between the stack's parts, and between the stack and its users.

Three interfaces live here so that each part can be built and tested alone:

``Socket``
    What the stack offers to programs (the syscall plane, ``netvisor host``):
    BSD-socket operations with Linux semantics. Every method is synchronous
    and never blocks; an operation that would block raises
    ``NetError(errno.EAGAIN)`` (``EINPROGRESS`` for a started connect). Waiting
    is the driver's job: ``await netstack.wait(sock, select.POLLIN)``.
    Addresses are Python ``socket``-module tuples: ``(host, port)`` for
    AF_INET, ``(host, port, flowinfo, scope_id)`` for AF_INET6, hosts as text.

``TransportContext``
    What the network layer offers to a transport protocol (TCP, UDP, ICMP
    sockets): routing and source selection, local-address checks, output, a
    seeded random generator, and a way to say "this socket's readiness may
    have changed" so the driver wakes its waiters.

``Transport``
    What a transport protocol offers to the network layer: segment input,
    ICMP error input, timers and socket creation.

All times are float seconds on the driver's clock (``trio.current_time()``),
passed in as ``now``; nothing here reads a clock.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # the core only receives a Random; it never makes one
    import random

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SockAddr = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Route:
    """The answer to "how do I reach this destination" (``TransportContext.route``)."""

    src: IPAddress
    """Source address chosen per RFC 6724 / Linux's preferred source."""
    next_hop: IPAddress | None
    """Gateway, or None when the destination is on-link."""
    nic_id: int
    mtu: int
    """Path MTU towards ``dst`` (link MTU unless PMTU discovery lowered it)."""
    gso_max_size: int
    """Largest TCP segment (headers included) the NIC takes with TSO; 0 = no TSO."""
    checksum_offload: bool
    """The NIC completes transport checksums (emit pseudo-header sums only)."""


@dataclass(frozen=True, slots=True)
class IcmpError:
    """An ICMP/ICMPv6 error that quotes a packet we sent (RFC 1122 4.1.3.3, RFC 4443 3)."""

    family: int
    """socket.AF_INET or socket.AF_INET6."""
    type: int
    code: int
    errno: int
    """Linux's translation (icmp_err_convert / icmpv6_err_convert)."""
    reporter: IPAddress
    """Who sent the ICMP message."""
    src: IPAddress
    dst: IPAddress
    """Addresses of the quoted (our) packet."""
    protocol: int
    quoted_transport: bytes
    """The quoted transport header and whatever payload came with it (>= 8 bytes)."""
    mtu: int = 0
    """Next-hop MTU for fragmentation-needed / packet-too-big, else 0."""
    info: int = 0
    """The ICMP header's 32-bit "unused/pointer" field (parameter-problem pointer)."""
    local: IPAddress | None = None
    """Destination of the ICMP message itself (IP_PKTINFO of an error-queue entry)."""
    nic_id: int = 0
    """NIC it arrived on."""
    ttl: int = 0
    """Its TTL / hop limit and TOS / traffic class (IP_TTL, IP_TOS ... cmsgs)."""
    tos: int = 0


@runtime_checkable
class Socket(Protocol):
    """A socket of the stack; Linux semantics, never blocks (see module doc)."""

    family: int
    type: int
    protocol: int

    def bind(self, addr: SockAddr) -> None: ...
    def listen(self, backlog: int) -> None: ...
    def connect(self, addr: SockAddr) -> None: ...
    def accept(self) -> tuple["Socket", SockAddr]: ...
    def send(self, data: bytes | memoryview, flags: int = 0) -> int: ...
    def sendto(self, data: bytes | memoryview, flags: int, addr: SockAddr | None) -> int: ...
    def recv(self, bufsize: int, flags: int = 0) -> bytes: ...
    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, SockAddr | None]: ...
    def shutdown(self, how: int) -> None: ...
    def close(self) -> None: ...
    def getsockname(self) -> SockAddr: ...
    def getpeername(self) -> SockAddr: ...
    def setsockopt(self, level: int, optname: int, value: bytes) -> None: ...
    def getsockopt(self, level: int, optname: int, buflen: int) -> bytes: ...
    def poll(self) -> int:
        """POLLIN/POLLOUT/POLLERR/POLLHUP/POLLRDHUP bits as Linux reports them now."""
        ...


class TransportContext(Protocol):
    """What the network layer offers a transport protocol."""

    rng: random.Random
    now: float
    """The driver's time for this turn; the driver sets it before calling into
    the stack (socket operations included), so socket methods need no clock."""

    def route(self, dst: IPAddress, *, src: IPAddress | None = None,
              bound_nic: int | None = None) -> Route:
        """Route to ``dst``; raises ``NetError(ENETUNREACH)``."""
        ...

    def is_local_address(self, addr: IPAddress) -> bool: ...

    def output(self, route: Route, dst: IPAddress, protocol: int,
               transport: bytes | bytearray | memoryview, *,
               ttl: int | None = None, tos: int = 0, dont_fragment: bool | None = None,
               checksum_offset: int = -1, gso_size: int = 0) -> None:
        """Send one transport packet (header + payload already built).

        ``checksum_offset`` >= 0: the transport checksum field at that offset
        holds the pseudo-header sum only, to be completed by the NIC or by the
        network layer. ``gso_size`` > 0: a TCP segment larger than the MTU to
        be cut into ``gso_size`` payload pieces (TSO) by the NIC.
        """
        ...

    def egress_has_room(self, nic_id: int) -> bool:
        """False while the NIC's transmit queue is full (shaper backpressure)."""
        ...

    def readiness_changed(self, sock: Socket) -> None:
        """Tell the driver that ``sock.poll()`` may now answer differently."""
        ...

    def confirm_neighbor(self, route: Route, dst: IPAddress) -> None:
        """Forward progress proves the next hop towards ``dst`` reachable.

        Upper-layer reachability hint (RFC 4861 7.3.1; Linux ``dst_confirm_neigh``
        after ``tcp_ack`` saw new data acknowledged): the neighbour entry of
        ``route.next_hop or dst`` becomes REACHABLE for a new ReachableTime when
        it has a link-layer address, so a busy connection never waits on ARP/NDP
        probes. Added after the first version of this contract: callers must
        tolerate a context without it (``getattr(ctx, "confirm_neighbor", None)``).
        """
        ...


class Transport(Protocol):
    """What a transport protocol (TCP, UDP, ...) offers the network layer."""

    protocol: int

    def handle_packet(self, src: IPAddress, dst: IPAddress, transport: memoryview,
                      now: float, *, checksum_valid: bool, nic_id: int) -> None:
        """One received transport packet (header + payload), already reassembled.

        Raises ``MalformedPacket`` for a bad header or checksum; the network
        layer turns that into a counted drop. Anything else is a bug.
        """
        ...

    def handle_icmp_error(self, err: IcmpError, now: float) -> None: ...
    def handle_timer(self, now: float) -> None: ...
    def next_deadline(self) -> float | None: ...
    def socket(self, family: int) -> Socket: ...

    # Optional (added later; the network layer looks it up with getattr):
    #
    # def handle_egress_room(self, nic_id: int, now: float) -> None:
    #     """The driver took NIC ``nic_id``'s transmit queue (``frames_to_send``):
    #     bytes the transport queued there have left it (Linux TSQ's tcp_wfree).
    #     Only take note; send from the next ``handle_timer`` (report a deadline
    #     of ``now`` from ``next_deadline``), never from inside this call."""
