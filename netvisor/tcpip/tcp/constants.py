"""Linux numbers the TCP socket API speaks (copied as ints: no ``socket``/``select`` imports)."""

from __future__ import annotations

import enum
from typing import Final


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


AF_INET: Final = 2
AF_INET6: Final = 10
SOCK_STREAM: Final = 1
IPPROTO_TCP: Final = 6

POLLIN: Final = 0x001
POLLPRI: Final = 0x002
POLLOUT: Final = 0x004
POLLERR: Final = 0x008
POLLHUP: Final = 0x010
POLLRDNORM: Final = 0x040
POLLWRNORM: Final = 0x100
POLLRDHUP: Final = 0x2000

RCV_SHUTDOWN: Final = 1
SEND_SHUTDOWN: Final = 2
SHUTDOWN_MASK: Final = 3

SHUT_RD: Final = 0
SHUT_WR: Final = 1
SHUT_RDWR: Final = 2

MSG_OOB: Final = 0x1
MSG_PEEK: Final = 0x2
MSG_DONTWAIT: Final = 0x40
MSG_WAITALL: Final = 0x100
MSG_NOSIGNAL: Final = 0x4000
MSG_MORE: Final = 0x8000

SOL_SOCKET: Final = 1
SO_DEBUG: Final = 1
SO_REUSEADDR: Final = 2
SO_TYPE: Final = 3
SO_ERROR: Final = 4
SO_DONTROUTE: Final = 5
SO_BROADCAST: Final = 6
SO_SNDBUF: Final = 7
SO_RCVBUF: Final = 8
SO_KEEPALIVE: Final = 9
SO_OOBINLINE: Final = 10
SO_PRIORITY: Final = 12
SO_LINGER: Final = 13
SO_REUSEPORT: Final = 15
SO_RCVLOWAT: Final = 18
SO_SNDLOWAT: Final = 19
SO_ACCEPTCONN: Final = 30
SO_SNDBUFFORCE: Final = 32
SO_RCVBUFFORCE: Final = 33
SO_PROTOCOL: Final = 38
SO_DOMAIN: Final = 39

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

IPPROTO_IP: Final = 0
IP_TOS: Final = 1
IP_TTL: Final = 2
IPPROTO_IPV6: Final = 41
IPV6_V6ONLY: Final = 26
IPV6_TCLASS: Final = 67
IPV6_UNICAST_HOPS: Final = 16

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
