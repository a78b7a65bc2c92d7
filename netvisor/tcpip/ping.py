"""ICMP "ping" sockets: ``socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)`` and the IPv6 twin.

Linux semantics (``net/ipv4/ping.c``, ``net/ipv6/ping.c``): the socket's
local "port" is the echo identifier. ``send`` takes an ICMP header plus
payload; only echo requests are allowed (type 8 / 128, code 0, else
EINVAL); the stack writes the identifier and the checksum. Echo replies
whose identifier matches are delivered whole (header included), with the
sender as ``(host, 0)``. Binding, connect, options and ICMP error rules are
the UDP socket's (the class derives from it), since Linux shares
``ip4_datagram_connect`` and the same hard/soft error rule in ``ping_err``;
with IP_RECVERR an error-queue entry carries the quoted echo request from its
ICMP header on, named by the destination with port 0.
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING, Any

from netvisor.tcpip import consts as C
from netvisor.tcpip.errors import NetError
from netvisor.tcpip.udp import IPAddress, UdpSocket, UdpTransport
from netvisor.tcpip.wire.checksum import checksum, pseudo_header_sum

if TYPE_CHECKING:
    from netvisor.tcpip.stack import Stack

ECHO_REQUEST = {C.IPPROTO_ICMP: 8, C.IPPROTO_ICMPV6: 128}


class PingSocket(UdpSocket):
    """A datagram socket that sends echo requests and receives their replies."""

    def __init__(self, transport: PingTransport, family: int) -> None:
        super().__init__(transport, family)
        self.protocol = transport.protocol

    def _check_payload(self, data: bytes | memoryview, dst: IPAddress) -> None:
        if len(data) < 8:
            raise NetError(errno.EINVAL, "ICMP header needs 8 bytes")
        if data[0] != ECHO_REQUEST[self.protocol] or data[1] != 0:
            raise NetError(errno.EINVAL, "ping sockets send echo requests only")
        if dst.version != (4 if self.protocol == C.IPPROTO_ICMP else 6):
            raise NetError(errno.EINVAL, "address family does not match the ICMP version")
        if len(data) > (65535 - 20 if dst.version == 4 else 65535):
            raise NetError(errno.EMSGSIZE)

    def _transmit(self, route: Any, dst: IPAddress, dport: int, data: bytes | memoryview,
                  ttl: int | None) -> None:
        msg = bytearray(data)
        struct.pack_into("!HH", msg, 2, 0, self.local_port)
        if self.protocol == C.IPPROTO_ICMP:
            struct.pack_into("!H", msg, 2, checksum(msg))
        else:
            struct.pack_into("!H", msg, 2, checksum(msg, pseudo_header_sum(
                route.src, dst, C.IPPROTO_ICMPV6, len(msg))))
        self.stack.output(route, dst, self.protocol, msg, ttl=ttl, tos=self.tos,
                          dont_fragment=False)
        self.stack.counters.inc("ping_tx")

    def connect(self, addr: Any) -> None:
        if len(addr) >= 2:
            addr = (addr[0], 0, *addr[2:])
        super().connect(addr)


class PingTransport(UdpTransport):
    """Identifier table and reply demultiplexing for one ICMP version."""

    def __init__(self, stack: Stack, protocol: int) -> None:
        super().__init__(stack)
        self.protocol = protocol

    def socket(self, family: int) -> PingSocket:
        want = C.AF_INET if self.protocol == C.IPPROTO_ICMP else C.AF_INET6
        if family != want:
            raise NetError(errno.EPROTONOSUPPORT)
        return PingSocket(self, family)

    def bind_port(self, sock: UdpSocket, port: int) -> None:
        # Linux ping_get_port: identifiers 1..65535 (0 is never used).
        if port == 0:
            for _ in range(64):
                candidate = self.stack.rng.randrange(1, 65536)
                if self._port_free(sock, candidate):
                    port = candidate
                    break
        super().bind_port(sock, port)

    @staticmethod
    def quoted_ports(q: bytes) -> tuple[int, int] | None:
        if len(q) < 8 or q[0] not in (8, 128):
            return None
        return struct.unpack_from("!H", q, 4)[0], 0

    @staticmethod
    def error_payload(q: bytes) -> bytes:
        """ping_err queues from the quoted ICMP header on (``(u8 *)icmph``)."""
        return bytes(q)

    def handle_packet(self, src: IPAddress, dst: IPAddress, transport: memoryview,
                      now: float, *, checksum_valid: bool, nic_id: int) -> bool:
        """Unused: the network layer parses ICMP itself and calls :meth:`handle_reply`."""
        return True

    def handle_reply(self, src: IPAddress, dst: IPAddress, msg: bytes, nic_id: int) -> bool:
        """An echo reply: deliver it to the socket owning its identifier."""
        if len(msg) < 8:
            return False
        ident = struct.unpack_from("!H", msg, 4)[0]
        self.current_nic = nic_id
        self.current_dst = dst
        best: UdpSocket | None = None
        best_score = -1
        for s in self.ports.get(ident, ()):
            sc = self._score(s, dst.version, src, 0, dst, nic_id)
            if sc > best_score:
                best, best_score = s, sc
        if best is None:
            return False
        if best.deliver(bytes(msg), src, 0):
            self.stack.counters.inc("ping_rx")
        return True
