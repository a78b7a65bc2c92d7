"""Linux numbers the TCP socket API speaks (copied as ints: no ``socket``/``select`` imports)."""

# ruff: noqa: PLC0414 - ``X as X`` below is the explicit re-export that mypy --strict needs

from __future__ import annotations

import enum
from typing import Final

# The generic socket-API numbers live in netvisor.tcpip.consts (one copy for the
# whole core); re-exported here so TCP code keeps importing them from
# this module. TCP-only numbers follow.
from netvisor.tcpip.consts import AF_INET as AF_INET
from netvisor.tcpip.consts import AF_INET6 as AF_INET6
from netvisor.tcpip.consts import IP_TOS as IP_TOS
from netvisor.tcpip.consts import IP_TTL as IP_TTL
from netvisor.tcpip.consts import IPPROTO_IP as IPPROTO_IP
from netvisor.tcpip.consts import IPPROTO_IPV6 as IPPROTO_IPV6
from netvisor.tcpip.consts import IPPROTO_TCP as IPPROTO_TCP
from netvisor.tcpip.consts import IPV6_TCLASS as IPV6_TCLASS
from netvisor.tcpip.consts import IPV6_UNICAST_HOPS as IPV6_UNICAST_HOPS
from netvisor.tcpip.consts import IPV6_V6ONLY as IPV6_V6ONLY
from netvisor.tcpip.consts import MSG_DONTWAIT as MSG_DONTWAIT
from netvisor.tcpip.consts import MSG_PEEK as MSG_PEEK
from netvisor.tcpip.consts import POLLERR as POLLERR
from netvisor.tcpip.consts import POLLHUP as POLLHUP
from netvisor.tcpip.consts import POLLIN as POLLIN
from netvisor.tcpip.consts import POLLOUT as POLLOUT
from netvisor.tcpip.consts import POLLPRI as POLLPRI
from netvisor.tcpip.consts import POLLRDHUP as POLLRDHUP
from netvisor.tcpip.consts import POLLRDNORM as POLLRDNORM
from netvisor.tcpip.consts import POLLWRNORM as POLLWRNORM
from netvisor.tcpip.consts import SHUT_RD as SHUT_RD
from netvisor.tcpip.consts import SHUT_RDWR as SHUT_RDWR
from netvisor.tcpip.consts import SHUT_WR as SHUT_WR
from netvisor.tcpip.consts import SO_BROADCAST as SO_BROADCAST
from netvisor.tcpip.consts import SO_DOMAIN as SO_DOMAIN
from netvisor.tcpip.consts import SO_DONTROUTE as SO_DONTROUTE
from netvisor.tcpip.consts import SO_ERROR as SO_ERROR
from netvisor.tcpip.consts import SO_KEEPALIVE as SO_KEEPALIVE
from netvisor.tcpip.consts import SO_LINGER as SO_LINGER
from netvisor.tcpip.consts import SO_OOBINLINE as SO_OOBINLINE
from netvisor.tcpip.consts import SO_PRIORITY as SO_PRIORITY
from netvisor.tcpip.consts import SO_PROTOCOL as SO_PROTOCOL
from netvisor.tcpip.consts import SO_RCVBUF as SO_RCVBUF
from netvisor.tcpip.consts import SO_RCVBUFFORCE as SO_RCVBUFFORCE
from netvisor.tcpip.consts import SO_RCVLOWAT as SO_RCVLOWAT
from netvisor.tcpip.consts import SO_REUSEADDR as SO_REUSEADDR
from netvisor.tcpip.consts import SO_REUSEPORT as SO_REUSEPORT
from netvisor.tcpip.consts import SO_SNDBUF as SO_SNDBUF
from netvisor.tcpip.consts import SO_TYPE as SO_TYPE
from netvisor.tcpip.consts import SOCK_STREAM as SOCK_STREAM
from netvisor.tcpip.consts import SOL_SOCKET as SOL_SOCKET


class State(enum.IntEnum):
    """TCP states, numbered as Linux (include/net/tcp_states.h) for TCP_INFO."""

    ESTABLISHED = 1
    SYN_SENT = 2
    SYN_RECEIVED = 3
    FIN_WAIT_1 = 4
    FIN_WAIT_2 = 5
    TIME_WAIT = 6
    CLOSED = 7
    CLOSE_WAIT = 8
    LAST_ACK = 9
    LISTEN = 10
    CLOSING = 11


class CaState(enum.IntEnum):
    """Linux tcp_ca_state (TCP_INFO ca_state)."""

    OPEN = 0
    DISORDER = 1
    CWR = 2
    RECOVERY = 3
    LOSS = 4

RCV_SHUTDOWN: Final = 1
SEND_SHUTDOWN: Final = 2
SHUTDOWN_MASK: Final = 3

MSG_OOB: Final = 0x1
MSG_WAITALL: Final = 0x100
MSG_NOSIGNAL: Final = 0x4000
MSG_MORE: Final = 0x8000

SO_DEBUG: Final = 1
SO_SNDLOWAT: Final = 19
SO_ACCEPTCONN: Final = 30
SO_SNDBUFFORCE: Final = 32

TCP_NODELAY: Final = 1
TCP_MAXSEG: Final = 2
TCP_CORK: Final = 3
TCP_KEEPIDLE: Final = 4
TCP_KEEPINTVL: Final = 5
TCP_KEEPCNT: Final = 6
TCP_SYNCNT: Final = 7
TCP_LINGER2: Final = 8
TCP_DEFER_ACCEPT: Final = 9
TCP_WINDOW_CLAMP: Final = 10
TCP_INFO: Final = 11
TCP_QUICKACK: Final = 12
TCP_CONGESTION: Final = 13
TCP_USER_TIMEOUT: Final = 18
TCP_FASTOPEN: Final = 23
TCP_NOTSENT_LOWAT: Final = 25
TCP_FASTOPEN_CONNECT: Final = 30

TCPI_OPT_TIMESTAMPS: Final = 1
TCPI_OPT_SACK: Final = 2
TCPI_OPT_WSCALE: Final = 4

SOCK_MIN_RCVBUF: Final = 2304
"""Linux SOCK_MIN_RCVBUF (2048 + sizeof(struct sk_buff)) on x86_64."""
SOCK_MIN_SNDBUF: Final = 2 * SOCK_MIN_RCVBUF
MAX_TCP_KEEPIDLE: Final = 32767
MAX_TCP_KEEPINTVL: Final = 32767
MAX_TCP_KEEPCNT: Final = 127
MAX_TCP_SYNCNT: Final = 127
TCP_MSS_MIN: Final = 88
"""Linux TCP_MIN_MSS; TCP_MAXSEG rejects smaller values."""
MAX_TCP_WINDOW: Final = 32767


# ---------------------------------------------------------------- connection internals

M32: Final = 0xFFFFFFFF
# TCP flags as plain ints (the wire's TcpFlags values): IntFlag arithmetic runs in
# Python and costs microseconds per segment on the hot path.
FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
NOFLAGS: Final = 0

PAWS_24DAYS: Final = 24 * 86400.0  # RFC 7323 5.5: ts_recent invalid after 24 days idle
MAX_WSCALE: Final = 14  # RFC 7323 2.3
QUICKACK_SEGMENTS: Final = 16  # Linux TCP_MAX_QUICKACKS
DEFAULT_MSS_V4: Final = 536  # RFC 9293 3.7.1 / RFC 6691 when no MSS option
DEFAULT_MSS_V6: Final = 1220
CORK_CEILING: Final = 0.2  # tcp(7): corked output waits at most 200 ms
TSO_MAX_PAYLOAD: Final = 65535 - 60 - 80
"""Largest payload in one TSO super-segment: IP total length is 16 bits (minus headers)."""

SYNCHRONIZED: Final = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2,
                                 State.CLOSE_WAIT, State.CLOSING, State.LAST_ACK,
                                 State.TIME_WAIT})
CAN_SEND_DATA: Final = frozenset({State.ESTABLISHED, State.CLOSE_WAIT})
SENDING_STATES: Final = frozenset({State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1,
                                   State.CLOSING, State.LAST_ACK})
RECEIVING_STATES: Final = frozenset({State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2})
