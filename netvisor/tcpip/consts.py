"""Linux socket-API constants as plain ints (the core may not import ``socket``).

Values are Linux x86_64's (include/uapi/linux/socket.h, in.h, in6.h).
"""

from __future__ import annotations

from typing import Final

AF_UNSPEC: Final = 0
AF_INET: Final = 2
AF_INET6: Final = 10
SOCK_STREAM: Final = 1
SOCK_DGRAM: Final = 2
SOCK_RAW: Final = 3

IPPROTO_IP: Final = 0
IPPROTO_HOPOPTS: Final = 0
IPPROTO_ICMP: Final = 1
IPPROTO_IGMP: Final = 2
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IPPROTO_IPV6: Final = 41
IPPROTO_ROUTING: Final = 43
IPPROTO_FRAGMENT: Final = 44
IPPROTO_ICMPV6: Final = 58
IPPROTO_NONE: Final = 59
IPPROTO_DSTOPTS: Final = 60

SOL_SOCKET: Final = 1
SO_REUSEADDR: Final = 2
SO_TYPE: Final = 3
SO_ERROR: Final = 4
SO_DONTROUTE: Final = 5
SO_BROADCAST: Final = 6
SO_SNDBUF: Final = 7
SO_RCVBUF: Final = 8
SO_KEEPALIVE: Final = 9
SO_OOBINLINE: Final = 10
SO_NO_CHECK: Final = 11
SO_PRIORITY: Final = 12
SO_LINGER: Final = 13
SO_REUSEPORT: Final = 15
SO_PASSCRED: Final = 16
SO_RCVLOWAT: Final = 18
SO_TIMESTAMP: Final = 29
SO_TIMESTAMPNS: Final = 35
SO_MARK: Final = 36
SO_BINDTODEVICE: Final = 25
SO_RCVBUFFORCE: Final = 33
SO_PROTOCOL: Final = 38
SO_DOMAIN: Final = 39
SO_BINDTOIFINDEX: Final = 62

IP_TOS: Final = 1
IP_TTL: Final = 2
IP_MTU_DISCOVER: Final = 10
IP_MTU: Final = 14
IP_PMTUDISC_DONT: Final = 0
IP_PMTUDISC_WANT: Final = 1
IP_PMTUDISC_DO: Final = 2
IP_PMTUDISC_PROBE: Final = 3
IP_RECVERR: Final = 11
IP_MULTICAST_IF: Final = 32
IP_MULTICAST_TTL: Final = 33
IP_MULTICAST_LOOP: Final = 34
IP_ADD_MEMBERSHIP: Final = 35
IP_DROP_MEMBERSHIP: Final = 36
IP_MULTICAST_ALL: Final = 49

IPV6_UNICAST_HOPS: Final = 16
IPV6_MULTICAST_IF: Final = 17
IPV6_MULTICAST_HOPS: Final = 18
IPV6_MULTICAST_LOOP: Final = 19
IPV6_JOIN_GROUP: Final = 20   # IPV6_ADD_MEMBERSHIP
IPV6_LEAVE_GROUP: Final = 21  # IPV6_DROP_MEMBERSHIP
IPV6_MTU_DISCOVER: Final = 23
IPV6_MTU: Final = 24
IPV6_V6ONLY: Final = 26
IPV6_DONTFRAG: Final = 62
IPV6_TCLASS: Final = 67

MSG_PEEK: Final = 0x2
MSG_TRUNC: Final = 0x20
MSG_DONTWAIT: Final = 0x40

SHUT_RD: Final = 0
SHUT_WR: Final = 1
SHUT_RDWR: Final = 2

POLLIN: Final = 0x001
POLLPRI: Final = 0x002
POLLOUT: Final = 0x004
POLLERR: Final = 0x008
POLLHUP: Final = 0x010
POLLNVAL: Final = 0x020
POLLRDNORM: Final = 0x040
POLLWRNORM: Final = 0x100
POLLRDHUP: Final = 0x2000
