"""``struct sockaddr`` encodings <-> Python socket-module address tuples.

Rules follow Linux (net/ipv4/af_inet.c inet_bind/inet_stream_connect,
net/ipv6/af_inet6.c): an AF_INET address needs addrlen >= 16 (EINVAL), an
AF_INET6 one >= 24 (EINVAL); a wrong family is EAFNOSUPPORT (EINVAL for
bind on AF_INET6). AF_UNSPEC on connect means "disconnect" for datagram
sockets; AF_UNSPEC with 0.0.0.0 is accepted by IPv4 bind (Linux compat).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from typing import Any

from netvisor.tcpip.errors import NetError

SockAddr = tuple[Any, ...]

SIZEOF_IN = 16
SIZEOF_IN6 = 28


def decode(raw: bytes, family: int) -> tuple[int, SockAddr | None]:
    """(sa_family, address tuple or None for AF_UNSPEC) from raw bytes.

    ``family`` is the socket's family; raises NetError with Linux's errno.
    """
    if len(raw) < 2:
        raise NetError(errno.EINVAL, "address too short")
    sa_family = struct.unpack_from("<H", raw)[0]
    if sa_family == socket.AF_UNSPEC:
        return sa_family, None
    if sa_family == socket.AF_INET:
        if len(raw) < SIZEOF_IN:
            raise NetError(errno.EINVAL, "sockaddr_in too short")
        port = struct.unpack_from("!H", raw, 2)[0]
        host = socket.inet_ntop(socket.AF_INET, raw[4:8])
        return sa_family, (host, port)
    if sa_family == socket.AF_INET6:
        if len(raw) < 24:  # SIN6_LEN_RFC2133: scope id optional
            raise NetError(errno.EINVAL, "sockaddr_in6 too short")
        port, flowinfo = struct.unpack_from("!HI", raw, 2)
        host = socket.inet_ntop(socket.AF_INET6, raw[8:24])
        scope = struct.unpack_from("<I", raw, 24)[0] if len(raw) >= 28 else 0
        return sa_family, (host, port, flowinfo, scope)
    return sa_family, None


def encode(addr: SockAddr | None, family: int) -> bytes:
    """Raw sockaddr for an address tuple (``family`` picks the layout)."""
    if addr is None:
        return struct.pack("<H", socket.AF_UNSPEC) + bytes(14)
    if family == socket.AF_INET:
        host, port = addr[0], addr[1]
        return (struct.pack("<H", socket.AF_INET) + struct.pack("!H", port)
                + socket.inet_pton(socket.AF_INET, str(host)) + bytes(8))
    host, port = addr[0], addr[1]
    flowinfo = addr[2] if len(addr) > 2 else 0
    scope = addr[3] if len(addr) > 3 else 0
    host = str(host)
    if "%" in host:
        host = host.split("%", 1)[0]
    if ":" not in host:  # an IPv4 peer of an IPv6 socket: v4-mapped
        host = "::ffff:" + host
    return (struct.pack("<H", socket.AF_INET6) + struct.pack("!HI", port, flowinfo)
            + socket.inet_pton(socket.AF_INET6, host) + struct.pack("<I", scope))


def normalize_host(host: str) -> str:
    """Canonical text for an address (as the stack hands it back)."""
    return str(ipaddress.ip_address(host.split("%", 1)[0]))
