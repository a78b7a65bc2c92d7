"""Socket option values and control messages in Linux's byte layouts (x86_64), sans-IO.

The syscall plane uses this module to turn the program's ``setsockopt``
bytes into values for the stack, the stack's values into the bytes
``getsockopt`` must return (with Linux's rules for short buffers), and
ancillary data (cmsgs) to and from ``sendmsg``/``recvmsg`` buffers. The
:data:`OPTIONS` table says which (level, optname) pairs Linux knows on
AF_INET/AF_INET6 TCP and UDP sockets and what their values are, so that
unknown ones get the errno Linux gives (:func:`lookup`).

Linux sources mirrored (6.x): ``net/core/sock.c`` (sk_setsockopt /
sk_getsockopt, sock_set_timeout / sock_get_timeout), ``net/ipv4/ip_sockglue.c``
(do_ip_setsockopt / do_ip_getsockopt), ``net/ipv6/ipv6_sockglue.c``,
``net/ipv4/tcp.c``, ``net/ipv4/udp.c``, ``net/core/scm.c`` (put_cmsg).
Layouts from ``include/uapi/linux/{in,in6,time_types,errqueue}.h``,
``include/linux/socket.h``. Every table entry and rule is checked against a
real kernel by ``tests/unit/syscall_codecs/test_sockopt_codec.py``.

Rules for int options (verified on Linux 6.18):

- getsockopt copies ``min(optlen, 4)`` bytes of the int (its low bytes on
  little-endian) at SOL_SOCKET, IPPROTO_IPV6, IPPROTO_TCP and IPPROTO_UDP.
  At IPPROTO_IP, a buffer shorter than an int receives one byte when the
  value is in 0..255 (do_ip_getsockopt), so ``IP_TTL`` reads fine into a char.
- setsockopt needs a full int (EINVAL otherwise) at SOL_SOCKET, TCP, UDP and
  IPv6; IPPROTO_IP takes an int, or one unsigned char when shorter, and an
  empty buffer means 0 (except for the options that want at least a byte,
  or exactly an int).
- An unknown optname is ENOPROTOOPT; getsockopt on an AF_INET socket at a
  level that is neither SOL_SOCKET, IPPROTO_IP nor the socket's own protocol
  is EOPNOTSUPP (ip_getsockopt), while setsockopt answers ENOPROTOOPT.
"""

from __future__ import annotations

import errno as _errno
import ipaddress
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

# Levels (include/linux/socket.h, uapi/linux/in.h)
SOL_SOCKET: Final = 1
SOL_IP: Final = 0
SOL_IPV6: Final = 41
SOL_TCP: Final = 6
SOL_UDP: Final = 17
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
AF_INET: Final = 2
AF_INET6: Final = 10
SOCK_STREAM: Final = 1
SOCK_DGRAM: Final = 2

# SOL_SOCKET option numbers that have _OLD/_NEW variants (asm-generic/socket.h):
# on x86_64 the _OLD ones are the plain names and use the same 64-bit layout.
SO_TIMESTAMP_OLD: Final = 29
SO_TIMESTAMPNS_OLD: Final = 35
SO_TIMESTAMPING_OLD: Final = 37
SO_RCVTIMEO_OLD: Final = 20
SO_SNDTIMEO_OLD: Final = 21
SO_TIMESTAMP_NEW: Final = 63
SO_TIMESTAMPNS_NEW: Final = 64
SO_TIMESTAMPING_NEW: Final = 65
SO_RCVTIMEO_NEW: Final = 66
SO_SNDTIMEO_NEW: Final = 67
SO_RCVTIMEO: Final = SO_RCVTIMEO_OLD
SO_SNDTIMEO: Final = SO_SNDTIMEO_OLD
SCM_TIMESTAMP: Final = SO_TIMESTAMP_OLD
SCM_TIMESTAMPNS: Final = SO_TIMESTAMPNS_OLD
SCM_TIMESTAMPING: Final = SO_TIMESTAMPING_OLD

# cmsg types of IPPROTO_IP / IPPROTO_IPV6 that have their own payload layout.
IP_TOS: Final = 1
IP_TTL: Final = 2
IP_PKTINFO: Final = 8
IP_RECVERR: Final = 11
IP_ORIGDSTADDR: Final = 20
IPV6_PKTINFO: Final = 50
IPV6_HOPLIMIT: Final = 52
IPV6_TCLASS: Final = 67
IPV6_RECVERR: Final = 25
UDP_GRO: Final = 104

# Clock ticks per second of the reference kernel (CONFIG_HZ): socket
# timeouts are stored in jiffies, so SO_RCVTIMEO reads back rounded up to
# 4 ms on Linux 6.18 as built here (measured: 1 us -> 4000 us).
LINUX_HZ: Final = 250


class SockoptError(Exception):
    """getsockopt/setsockopt fails with this errno."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(f"{_errno.errorcode.get(code, code)}: {detail}" if detail else
                         _errno.errorcode.get(code, str(code)))
        self.errno = code


# --------------------------------------------------------------------------- the table

# Value kinds and their getsockopt length on a fresh socket (None: variable).
KIND_SIZES: Final[dict[str, int | None]] = {
    "int": 4,
    "linger": 8,          # struct linger {int l_onoff; int l_linger}
    "timeval": 16,        # struct timeval / __kernel_sock_timeval {s64 sec; s64 usec}
    "ucred": 12,          # struct ucred {pid_t pid; uid_t uid; gid_t gid}
    "u64": 8,             # SO_COOKIE, SO_MAX_PACING_RATE (unsigned long)
    "timestamping": 8,    # struct so_timestamping {int flags; int bind_phc}
    "txtime": 8,          # struct sock_txtime {clockid_t clockid; u32 flags}
    "meminfo": 36,        # u32 [SK_MEMINFO_VARS = 9]
    "in_addr": 4,         # IP_MULTICAST_IF reads back a struct in_addr
    "tcp_info": 280,      # struct tcp_info, Linux 6.18 (grows with versions)
    "cc_info": 20,        # union tcp_cc_info
    "string": None,       # NUL-terminated name: SO_BINDTODEVICE, TCP_CONGESTION, TCP_ULP
    "bytes": None,        # opaque or variable: IP_OPTIONS, SO_PEERNAME, TCP_SAVED_SYN, ...
    "mreq": None,         # ip_mreq(8) / ip_mreqn(12) / ip_mreq_source(12) / ipv6_mreq(20)
    "group_req": None,    # group_req(136) / group_source_req(264) / group_filter
    "filter": None,       # struct sock_fprog, BPF fds
    "netfilter": None,    # ip(6)tables' own get/set protocol
}


@dataclass(frozen=True, slots=True)
class OptSpec:
    """One option Linux knows for AF_INET/AF_INET6 TCP/UDP sockets."""

    level: int
    optname: int
    name: str
    kind: str
    get: bool = True
    set: bool = True
    get_proto: int = 0
    """0 = readable on TCP and UDP; else only on that protocol (ENOPROTOOPT or
    ``other_errno`` on the other)."""
    set_proto: int = 0
    other_errno: int = _errno.ENOPROTOOPT
    unsupported: int = 0
    """Non-zero: Linux knows the option but refuses it on inet sockets with
    this errno, for both calls (e.g. SO_PASSCRED -> EOPNOTSUPP)."""
    unconnected_errno: int = 0
    """What a get answers on a fresh, unconnected socket (ENOTCONN for IP_MTU)."""

    @property
    def size(self) -> int | None:
        return KIND_SIZES[self.kind]


def _rows(level: int, text: str) -> list[OptSpec]:
    """Parse ``"num NAME kind [flags]"`` lines; flags: get-only, set-only,
    get:tcp, set:udp, other:EOPNOTSUPP, unsup:EOPNOTSUPP, noconn:ENOTCONN."""
    out = []
    for line in text.strip().splitlines():
        parts = line.split("#", 1)[0].split()
        if not parts:
            continue
        num, name, kind, *flags = parts
        kw: dict[str, object] = {}
        for f in flags:
            key, _, val = f.partition(":")
            if key == "get-only":
                kw["set"] = False
            elif key == "set-only":
                kw["get"] = False
            elif key == "get":
                kw["get_proto"] = IPPROTO_TCP if val == "tcp" else IPPROTO_UDP
            elif key == "set":
                kw["set_proto"] = IPPROTO_TCP if val == "tcp" else IPPROTO_UDP
            elif key == "other":
                kw["other_errno"] = getattr(_errno, val)
            elif key == "unsup":
                kw["unsupported"] = getattr(_errno, val)
            elif key == "noconn":
                kw["unconnected_errno"] = getattr(_errno, val)
            else:  # pragma: no cover - table typo
                raise ValueError(f"bad flag {f!r} in {line!r}")
        assert kind in KIND_SIZES, line
        out.append(OptSpec(level, int(num), name, kind, **kw))  # type: ignore[arg-type]
    return out


_SOL_SOCKET = """
1  SO_DEBUG int
2  SO_REUSEADDR int
3  SO_TYPE int get-only
4  SO_ERROR int get-only
5  SO_DONTROUTE int
6  SO_BROADCAST int
7  SO_SNDBUF int
8  SO_RCVBUF int
9  SO_KEEPALIVE int
10 SO_OOBINLINE int
11 SO_NO_CHECK int
12 SO_PRIORITY int
13 SO_LINGER linger
14 SO_BSDCOMPAT int
15 SO_REUSEPORT int
16 SO_PASSCRED int unsup:EOPNOTSUPP     # AF_UNIX / netlink only since 6.x
17 SO_PEERCRED ucred get-only
18 SO_RCVLOWAT int
19 SO_SNDLOWAT int get-only             # setting it is ENOPROTOOPT on Linux
20 SO_RCVTIMEO_OLD timeval
21 SO_SNDTIMEO_OLD timeval
# 22-24 SO_SECURITY_*: defined, but ENOPROTOOPT both ways on Linux 6.x
25 SO_BINDTODEVICE string
26 SO_ATTACH_FILTER filter              # get is SO_GET_FILTER
27 SO_DETACH_FILTER filter set-only
28 SO_PEERNAME bytes get-only noconn:ENOTCONN
29 SO_TIMESTAMP_OLD int
30 SO_ACCEPTCONN int get-only
32 SO_SNDBUFFORCE int set-only
33 SO_RCVBUFFORCE int set-only
34 SO_PASSSEC int unsup:EOPNOTSUPP
35 SO_TIMESTAMPNS_OLD int
36 SO_MARK int
37 SO_TIMESTAMPING_OLD timestamping
38 SO_PROTOCOL int get-only
39 SO_DOMAIN int get-only
40 SO_RXQ_OVFL int
41 SO_WIFI_STATUS int
42 SO_PEEK_OFF int
43 SO_NOFCS int
44 SO_LOCK_FILTER int
45 SO_SELECT_ERR_QUEUE int
46 SO_BUSY_POLL int
47 SO_MAX_PACING_RATE u64
48 SO_BPF_EXTENSIONS int get-only
49 SO_INCOMING_CPU int
50 SO_ATTACH_BPF filter set-only
51 SO_ATTACH_REUSEPORT_CBPF filter set-only
52 SO_ATTACH_REUSEPORT_EBPF filter set-only
53 SO_CNX_ADVICE int set-only
55 SO_MEMINFO meminfo get-only
56 SO_INCOMING_NAPI_ID int get-only
57 SO_COOKIE u64 get-only
59 SO_PEERGROUPS bytes get-only          # ENODATA without peer credentials
60 SO_ZEROCOPY int
61 SO_TXTIME txtime
62 SO_BINDTOIFINDEX int
63 SO_TIMESTAMP_NEW int
64 SO_TIMESTAMPNS_NEW int
65 SO_TIMESTAMPING_NEW timestamping
66 SO_RCVTIMEO_NEW timeval
67 SO_SNDTIMEO_NEW timeval
68 SO_DETACH_REUSEPORT_BPF filter set-only
69 SO_PREFER_BUSY_POLL int
70 SO_BUSY_POLL_BUDGET int set-only
71 SO_NETNS_COOKIE u64 get-only          # optlen must be exactly 8, else EINVAL
72 SO_BUF_LOCK int
73 SO_RESERVE_MEM int                    # set: EOPNOTSUPP without memcg accounting
74 SO_TXREHASH int get:tcp set:tcp other:EOPNOTSUPP
75 SO_RCVMARK int
76 SO_PASSPIDFD int unsup:EOPNOTSUPP
77 SO_PEERPIDFD int get-only             # ENODATA without a peer process
80 SO_DEVMEM_DONTNEED bytes set-only
82 SO_RCVPRIORITY int
83 SO_PASSRIGHTS int unsup:EOPNOTSUPP
"""

_SOL_IP = """
1  IP_TOS int
2  IP_TTL int
3  IP_HDRINCL int get-only               # settable on raw sockets only
4  IP_OPTIONS bytes
5  IP_ROUTER_ALERT int                    # set: EINVAL except on raw sockets
6  IP_RECVOPTS int
7  IP_RETOPTS int
8  IP_PKTINFO int
9  IP_PKTOPTIONS bytes get-only get:tcp
10 IP_MTU_DISCOVER int
11 IP_RECVERR int
12 IP_RECVTTL int
13 IP_RECVTOS int
14 IP_MTU int get-only noconn:ENOTCONN
15 IP_FREEBIND int
16 IP_IPSEC_POLICY bytes set-only
17 IP_XFRM_POLICY bytes set-only
18 IP_PASSSEC int
19 IP_TRANSPARENT int
20 IP_RECVORIGDSTADDR int
21 IP_MINTTL int
22 IP_NODEFRAG int get-only              # settable on raw sockets only
23 IP_CHECKSUM int
24 IP_BIND_ADDRESS_NO_PORT int
25 IP_RECVFRAGSIZE int
26 IP_RECVERR_RFC4884 int
32 IP_MULTICAST_IF in_addr
33 IP_MULTICAST_TTL int
34 IP_MULTICAST_LOOP int
35 IP_ADD_MEMBERSHIP mreq set-only
36 IP_DROP_MEMBERSHIP mreq set-only
37 IP_UNBLOCK_SOURCE mreq set-only
38 IP_BLOCK_SOURCE mreq set-only
39 IP_ADD_SOURCE_MEMBERSHIP mreq set-only
40 IP_DROP_SOURCE_MEMBERSHIP mreq set-only
41 IP_MSFILTER group_req
42 MCAST_JOIN_GROUP group_req set-only
43 MCAST_BLOCK_SOURCE group_req set-only
44 MCAST_UNBLOCK_SOURCE group_req set-only
45 MCAST_LEAVE_GROUP group_req set-only
46 MCAST_JOIN_SOURCE_GROUP group_req set-only
47 MCAST_LEAVE_SOURCE_GROUP group_req set-only
48 MCAST_MSFILTER group_req
49 IP_MULTICAST_ALL int
50 IP_UNICAST_IF int
51 IP_LOCAL_PORT_RANGE int
52 IP_PROTOCOL int get-only
64 IPT_SO_SET_REPLACE netfilter         # get 64: IPT_SO_GET_INFO
65 IPT_SO_SET_ADD_COUNTERS netfilter    # get 65: IPT_SO_GET_ENTRIES
66 IPT_SO_GET_REVISION_MATCH netfilter get-only
67 IPT_SO_GET_REVISION_TARGET netfilter get-only
80 SO_ORIGINAL_DST bytes get-only get:tcp   # conntrack; ENOENT without an entry
83 SO_IP_SET netfilter get-only         # ipset's protocol; EPROTO for garbage
96 EBT_SO_SET_ENTRIES netfilter         # get 96: EBT_SO_GET_INFO
97 EBT_SO_SET_COUNTERS netfilter        # get 97: EBT_SO_GET_ENTRIES
98 EBT_SO_GET_INIT_INFO netfilter get-only
99 EBT_SO_GET_INIT_ENTRIES netfilter get-only
"""
# MRT_INIT (200) .. MRT_FLUSH (212): multicast routing, raw IGMP sockets only.
_MROUTE = "\n".join(f"{n} MRT_{n} bytes unsup:EOPNOTSUPP" for n in range(200, 213))
_SOL_IP += _MROUTE + "\n"

_SOL_IPV6 = """
1  IPV6_ADDRFORM int noconn:ENOTCONN
2  IPV6_2292PKTINFO int
3  IPV6_2292HOPOPTS int
4  IPV6_2292DSTOPTS int
5  IPV6_2292RTHDR int
6  IPV6_2292PKTOPTIONS bytes get:tcp
8  IPV6_2292HOPLIMIT int
11 IPV6_FLOWINFO int
16 IPV6_UNICAST_HOPS int
17 IPV6_MULTICAST_IF int set:udp
18 IPV6_MULTICAST_HOPS int set:udp
19 IPV6_MULTICAST_LOOP int
20 IPV6_ADD_MEMBERSHIP mreq set-only
21 IPV6_DROP_MEMBERSHIP mreq set-only
22 IPV6_ROUTER_ALERT int get-only        # settable on raw sockets only
23 IPV6_MTU_DISCOVER int
24 IPV6_MTU int noconn:ENOTCONN
25 IPV6_RECVERR int
26 IPV6_V6ONLY int
27 IPV6_JOIN_ANYCAST mreq set-only
28 IPV6_LEAVE_ANYCAST mreq set-only
29 IPV6_MULTICAST_ALL int
30 IPV6_ROUTER_ALERT_ISOLATE int
31 IPV6_RECVERR_RFC4884 int
32 IPV6_FLOWLABEL_MGR bytes               # get: ENOENT without a flow label
33 IPV6_FLOWINFO_SEND int
34 IPV6_IPSEC_POLICY bytes set-only
35 IPV6_XFRM_POLICY bytes set-only
42 MCAST_JOIN_GROUP group_req set-only
43 MCAST_BLOCK_SOURCE group_req set-only
44 MCAST_UNBLOCK_SOURCE group_req set-only
45 MCAST_LEAVE_GROUP group_req set-only
46 MCAST_JOIN_SOURCE_GROUP group_req set-only
47 MCAST_LEAVE_SOURCE_GROUP group_req set-only
48 MCAST_MSFILTER group_req
49 IPV6_RECVPKTINFO int
50 IPV6_PKTINFO bytes set-only
51 IPV6_RECVHOPLIMIT int
53 IPV6_RECVHOPOPTS int
54 IPV6_HOPOPTS bytes
55 IPV6_RTHDRDSTOPTS bytes
56 IPV6_RECVRTHDR int
57 IPV6_RTHDR bytes
58 IPV6_RECVDSTOPTS int
59 IPV6_DSTOPTS bytes
60 IPV6_RECVPATHMTU int
61 IPV6_PATHMTU bytes get-only noconn:ENOTCONN
62 IPV6_DONTFRAG int
64 IP6T_SO_SET_REPLACE netfilter
65 IP6T_SO_SET_ADD_COUNTERS netfilter
66 IPV6_RECVTCLASS int
67 IPV6_TCLASS int
68 IP6T_SO_GET_REVISION_MATCH netfilter get-only
69 IP6T_SO_GET_REVISION_TARGET netfilter get-only
70 IPV6_AUTOFLOWLABEL int
72 IPV6_ADDR_PREFERENCES int
73 IPV6_MINHOPCOUNT int
74 IPV6_RECVORIGDSTADDR int
75 IPV6_TRANSPARENT int
76 IPV6_UNICAST_IF int
77 IPV6_RECVFRAGSIZE int
78 IPV6_FREEBIND int
80 IP6T_SO_ORIGINAL_DST bytes get-only get:tcp   # ENOENT without conntrack
"""
# MRT6_INIT (200) .. MRT6_FLUSH (212): multicast routing, raw ICMPv6 sockets only.
_SOL_IPV6 += _MROUTE.replace("MRT_", "MRT6_") + "\n"

_SOL_TCP = """
1  TCP_NODELAY int
2  TCP_MAXSEG int
3  TCP_CORK int
4  TCP_KEEPIDLE int
5  TCP_KEEPINTVL int
6  TCP_KEEPCNT int
7  TCP_SYNCNT int
8  TCP_LINGER2 int
9  TCP_DEFER_ACCEPT int
10 TCP_WINDOW_CLAMP int
11 TCP_INFO tcp_info get-only
12 TCP_QUICKACK int
13 TCP_CONGESTION string
14 TCP_MD5SIG bytes set-only
16 TCP_THIN_LINEAR_TIMEOUTS int
17 TCP_THIN_DUPACK int
18 TCP_USER_TIMEOUT int
19 TCP_REPAIR int
20 TCP_REPAIR_QUEUE int                  # get outside repair mode: EINVAL
21 TCP_QUEUE_SEQ int
22 TCP_REPAIR_OPTIONS bytes set-only
23 TCP_FASTOPEN int
24 TCP_TIMESTAMP int
25 TCP_NOTSENT_LOWAT int
26 TCP_CC_INFO cc_info get-only
27 TCP_SAVE_SYN int
28 TCP_SAVED_SYN bytes get-only
29 TCP_REPAIR_WINDOW bytes               # struct tcp_repair_window, exact size
30 TCP_FASTOPEN_CONNECT int
31 TCP_ULP string
32 TCP_MD5SIG_EXT bytes set-only
33 TCP_FASTOPEN_KEY bytes
34 TCP_FASTOPEN_NO_COOKIE int
35 TCP_ZEROCOPY_RECEIVE bytes get-only
36 TCP_INQ int
37 TCP_TX_DELAY int
43 TCP_IS_MPTCP int get-only
44 TCP_RTO_MAX_MS int
45 TCP_RTO_MIN_US int
46 TCP_DELACK_MAX_US int
"""

_SOL_UDP = """
1   UDP_CORK int
10  UDPLITE_SEND_CSCOV int get-only        # readable on UDP, settable on UDP-Lite only
11  UDPLITE_RECV_CSCOV int get-only
100 UDP_ENCAP int
101 UDP_NO_CHECK6_TX int
102 UDP_NO_CHECK6_RX int
103 UDP_SEGMENT int
104 UDP_GRO int
"""

OPTIONS: Final[dict[tuple[int, int], OptSpec]] = {
    (s.level, s.optname): s
    for level, text in ((SOL_SOCKET, _SOL_SOCKET), (SOL_IP, _SOL_IP), (SOL_IPV6, _SOL_IPV6),
                        (SOL_TCP, _SOL_TCP), (SOL_UDP, _SOL_UDP))
    for s in _rows(level, text)
}
"""Every (level, optname) Linux 6.18 knows on AF_INET/AF_INET6 TCP/UDP sockets."""

BY_NAME: Final[dict[str, OptSpec]] = {s.name: s for s in OPTIONS.values()}


def _proto_of(sotype: int) -> int:
    return IPPROTO_TCP if sotype == SOCK_STREAM else IPPROTO_UDP


def lookup(family: int, sotype: int, level: int, optname: int, *, get: bool) -> OptSpec:
    """The option's spec, or :class:`SockoptError` with the errno Linux answers.

    ``family`` AF_INET/AF_INET6, ``sotype`` SOCK_STREAM (TCP) / SOCK_DGRAM (UDP).
    """
    proto = _proto_of(sotype)
    own_levels = {SOL_SOCKET, SOL_IP, proto} | ({SOL_IPV6} if family == AF_INET6 else set())
    if level not in own_levels:
        # tcp/udp_getsockopt hand other levels to ip_getsockopt, which answers
        # EOPNOTSUPP for a level it does not own; ipv6_getsockopt and every
        # setsockopt path answer ENOPROTOOPT.
        raise SockoptError(_errno.EOPNOTSUPP if get and family == AF_INET
                           else _errno.ENOPROTOOPT)
    spec = OPTIONS.get((level, optname))
    if spec is None or not (spec.get if get else spec.set):
        raise SockoptError(_errno.ENOPROTOOPT)
    if spec.unsupported:
        raise SockoptError(spec.unsupported)
    only = spec.get_proto if get else spec.set_proto
    if only and only != proto:
        raise SockoptError(spec.other_errno)
    return spec


# --------------------------------------------------------------------------- ints


def encode_int_for_get(level: int, value: int, optlen: int) -> bytes:
    """The bytes getsockopt returns for an int option into an ``optlen`` buffer.

    Raises EINVAL for a negative optlen, as every level does.
    """
    if optlen < 0:
        raise SockoptError(_errno.EINVAL)
    raw = struct.pack("=i", value) if value < 2**31 else struct.pack("=I", value)
    if level == SOL_IP and 0 < optlen < 4 and 0 <= value <= 255:
        return bytes([value])  # do_ip_getsockopt: a char for a short buffer
    return raw[:min(optlen, 4)]


# do_ip_setsockopt: options that refuse an empty buffer, and those that want
# exactly an int (measured on Linux 6.18; the rest read a char or treat
# optlen 0 as the value 0).
_IP_NEEDS_A_BYTE: Final = frozenset({2, 15, 19, 21, 33, 34, 49})  # TTL FREEBIND TRANSPARENT
#                                          MINTTL MULTICAST_TTL MULTICAST_LOOP MULTICAST_ALL
_IP_NEEDS_AN_INT: Final = frozenset({50, 51})  # IP_UNICAST_IF, IP_LOCAL_PORT_RANGE


def decode_int_for_set(level: int, optname: int, optval: bytes) -> int:
    """The int a setsockopt buffer means, by Linux's per-level rules (EINVAL if too short)."""
    if level == SOL_IP:
        if optname in _IP_NEEDS_AN_INT and len(optval) != 4:
            raise SockoptError(_errno.EINVAL, "optlen != sizeof(int)")
        if len(optval) >= 4:
            return int(struct.unpack_from("=i", optval)[0])
        if not optval and optname in _IP_NEEDS_A_BYTE:
            raise SockoptError(_errno.EINVAL, "optlen < 1")
        # An unsigned char when shorter than an int; optlen 0 means 0.
        return optval[0] if optval else 0
    if len(optval) >= 4:
        return int(struct.unpack_from("=i", optval)[0])
    raise SockoptError(_errno.EINVAL, "optlen < sizeof(int)")


def encode_truncated(value: bytes, optlen: int) -> bytes:
    """Structs (linger, timeval, ucred, ...) are cut to the caller's buffer."""
    if optlen < 0:
        raise SockoptError(_errno.EINVAL)
    return value[:optlen]


# --------------------------------------------------------------------------- structs


def encode_linger(onoff: int, linger: int) -> bytes:
    return struct.pack("=ii", onoff, linger)


def decode_linger(optval: bytes) -> tuple[int, int]:
    """(l_onoff, l_linger); sk_setsockopt needs the whole struct."""
    if len(optval) < 8:
        raise SockoptError(_errno.EINVAL)
    onoff, linger = struct.unpack_from("=ii", optval)
    return int(onoff), int(linger)


def encode_timeval(sec: int, usec: int) -> bytes:
    """struct timeval / __kernel_sock_timeval (identical on x86_64)."""
    return struct.pack("=qq", sec, usec)


def decode_timeval(optval: bytes) -> tuple[int, int]:
    """SO_RCVTIMEO/SO_SNDTIMEO set: EINVAL if short, EDOM if usec is outside 0..999999."""
    if len(optval) < 16:
        raise SockoptError(_errno.EINVAL)
    sec, usec = struct.unpack_from("=qq", optval)
    if usec < 0 or usec >= 1_000_000:
        raise SockoptError(_errno.EDOM)
    return sec, usec


def timeout_from_timeval(sec: int, usec: int, hz: int = LINUX_HZ) -> int:
    """sock_set_timeout: a timeval to jiffies (0 = no timeout, rounded up; a
    negative time means 0, i.e. "return at once" is not Linux's reading)."""
    if sec < 0:
        return 0
    return sec * hz + -(-usec // (1_000_000 // hz))


def timeval_from_timeout(jiffies: int, hz: int = LINUX_HZ) -> tuple[int, int]:
    """sock_get_timeout: what SO_RCVTIMEO reads back for a stored timeout."""
    return jiffies // hz, (jiffies % hz) * 1_000_000 // hz


def round_timeval(sec: int, usec: int, hz: int = LINUX_HZ) -> tuple[int, int]:
    """The timeval getsockopt returns after a setsockopt of (sec, usec)."""
    return timeval_from_timeout(timeout_from_timeval(sec, usec, hz), hz)


def encode_ucred(pid: int, uid: int, gid: int) -> bytes:
    return struct.pack("=iII", pid, uid, gid)


def decode_ucred(data: bytes) -> tuple[int, int, int]:
    if len(data) < 12:
        raise SockoptError(_errno.EINVAL)
    pid, uid, gid = struct.unpack_from("=iII", data)
    return int(pid), int(uid), int(gid)


@dataclass(frozen=True, slots=True)
class IpMreq:
    """ip_mreq (8 B), ip_mreqn (12 B, with ifindex) or ip_mreq_source (12 B)."""

    multiaddr: ipaddress.IPv4Address
    interface: ipaddress.IPv4Address
    ifindex: int = 0
    source: ipaddress.IPv4Address | None = None


def decode_ip_mreq(optval: bytes, *, source: bool = False) -> IpMreq:
    """IP_ADD/DROP_MEMBERSHIP (ip_mreqn if >= 12 bytes, else ip_mreq), or with
    ``source`` the ip_mreq_source of the *_SOURCE_* options."""
    if source:
        if len(optval) < 12:
            raise SockoptError(_errno.EINVAL)
        m, i, s = struct.unpack_from("=4s4s4s", optval)
        return IpMreq(ipaddress.IPv4Address(m), ipaddress.IPv4Address(i),
                      source=ipaddress.IPv4Address(s))
    if len(optval) < 8:
        raise SockoptError(_errno.EINVAL)
    if len(optval) >= 12:
        m, a, idx = struct.unpack_from("=4s4si", optval)
        return IpMreq(ipaddress.IPv4Address(m), ipaddress.IPv4Address(a), idx)
    m, a = struct.unpack_from("=4s4s", optval)
    return IpMreq(ipaddress.IPv4Address(m), ipaddress.IPv4Address(a))


def encode_ip_mreq(m: IpMreq, *, mreqn: bool = False) -> bytes:
    if m.source is not None:
        return m.multiaddr.packed + m.interface.packed + m.source.packed
    if mreqn:
        return m.multiaddr.packed + m.interface.packed + struct.pack("=i", m.ifindex)
    return m.multiaddr.packed + m.interface.packed


def decode_ip_multicast_if(optval: bytes) -> IpMreq:
    """IP_MULTICAST_IF set: an ip_mreqn (>= 12 B), an ip_mreq (>= 8 B; its
    imr_interface becomes the address) or an in_addr (>= 4 B); shorter is
    EINVAL. An all-zero value unsets the interface. The result's
    ``multiaddr`` is unused; getsockopt reads back ``interface`` (0.0.0.0
    when chosen by ifindex)."""
    if len(optval) >= 12:
        return decode_ip_mreq(optval)
    if len(optval) >= 8:
        return decode_ip_mreq(optval[:8])
    if len(optval) >= 4:
        return IpMreq(ipaddress.IPv4Address(0), ipaddress.IPv4Address(bytes(optval[:4])))
    raise SockoptError(_errno.EINVAL, "optlen < sizeof(struct in_addr)")


def decode_ipv6_mreq(optval: bytes) -> tuple[ipaddress.IPv6Address, int]:
    """struct ipv6_mreq {in6_addr; int ifindex} (20 B) -> (group, ifindex)."""
    if len(optval) < 20:
        raise SockoptError(_errno.EINVAL)
    addr, idx = struct.unpack_from("=16si", optval)
    return ipaddress.IPv6Address(addr), idx


def encode_ipv6_mreq(group: ipaddress.IPv6Address, ifindex: int) -> bytes:
    return struct.pack("=16si", group.packed, ifindex)


SOCKADDR_STORAGE: Final = 128
GROUP_REQ_SIZE: Final = 136          # u32 interface, 4 B pad, sockaddr_storage
GROUP_SOURCE_REQ_SIZE: Final = 264   # u32 interface, 4 B pad, 2 x sockaddr_storage


def decode_sockaddr(raw: bytes) -> tuple[int, str, int]:
    """sockaddr_in / sockaddr_in6 -> (family, address text, port); ValueError otherwise."""
    if len(raw) < 2:
        raise ValueError("sockaddr too short")
    family = struct.unpack_from("=H", raw)[0]
    if family == AF_INET and len(raw) >= 16:
        port, addr = struct.unpack_from("!H4s", raw, 2)
        return family, str(ipaddress.IPv4Address(addr)), port
    if family == AF_INET6 and len(raw) >= 28:
        port, _flow, addr = struct.unpack_from("!HI16s", raw, 2)
        return family, str(ipaddress.IPv6Address(addr)), port
    raise ValueError(f"unsupported sockaddr family {family} / length {len(raw)}")


def encode_sockaddr(address: str, port: int = 0, *, flowinfo: int = 0,
                    scope_id: int = 0) -> bytes:
    """sockaddr_in (16 B) or sockaddr_in6 (28 B) for ``address``."""
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return struct.pack("=H", AF_INET) + struct.pack("!H4s", port, ip.packed) + bytes(8)
    return (struct.pack("=H", AF_INET6) + struct.pack("!HI16s", port, flowinfo, ip.packed)
            + struct.pack("=I", scope_id))


@dataclass(frozen=True, slots=True)
class GroupReq:
    """group_req / group_source_req (MCAST_JOIN_GROUP ...), protocol independent."""

    interface: int
    group: tuple[int, str, int]
    source: tuple[int, str, int] | None = None


def decode_group_req(optval: bytes, *, source: bool = False) -> GroupReq:
    need = GROUP_SOURCE_REQ_SIZE if source else GROUP_REQ_SIZE
    if len(optval) < need:
        raise SockoptError(_errno.EINVAL)
    interface = struct.unpack_from("=I", optval)[0]
    try:
        group = decode_sockaddr(optval[8:8 + SOCKADDR_STORAGE])
        src = decode_sockaddr(optval[8 + SOCKADDR_STORAGE:need]) if source else None
    except ValueError as e:
        raise SockoptError(_errno.EINVAL, str(e)) from None
    return GroupReq(interface, group, src)


def encode_group_req(req: GroupReq) -> bytes:
    def storage(sa: tuple[int, str, int]) -> bytes:
        return encode_sockaddr(sa[1], sa[2]).ljust(SOCKADDR_STORAGE, b"\x00")

    out = struct.pack("=I4x", req.interface) + storage(req.group)
    if req.source is not None:
        out += storage(req.source)
    return out


# --------------------------------------------------------------------------- cmsg payloads


def encode_in_pktinfo(ifindex: int, spec_dst: ipaddress.IPv4Address,
                      addr: ipaddress.IPv4Address) -> bytes:
    """struct in_pktinfo {int ipi_ifindex; in_addr ipi_spec_dst; in_addr ipi_addr} (12 B)."""
    return struct.pack("=i4s4s", ifindex, spec_dst.packed, addr.packed)


def decode_in_pktinfo(data: bytes) -> tuple[int, ipaddress.IPv4Address, ipaddress.IPv4Address]:
    if len(data) < 12:
        raise SockoptError(_errno.EINVAL)
    idx, spec, addr = struct.unpack_from("=i4s4s", data)
    return idx, ipaddress.IPv4Address(spec), ipaddress.IPv4Address(addr)


def encode_in6_pktinfo(addr: ipaddress.IPv6Address, ifindex: int) -> bytes:
    """struct in6_pktinfo {in6_addr ipi6_addr; int ipi6_ifindex} (20 B)."""
    return struct.pack("=16si", addr.packed, ifindex)


def decode_in6_pktinfo(data: bytes) -> tuple[ipaddress.IPv6Address, int]:
    if len(data) < 20:
        raise SockoptError(_errno.EINVAL)
    addr, idx = struct.unpack_from("=16si", data)
    return ipaddress.IPv6Address(addr), idx


SO_EE_ORIGIN_NONE: Final = 0
SO_EE_ORIGIN_LOCAL: Final = 1
SO_EE_ORIGIN_ICMP: Final = 2
SO_EE_ORIGIN_ICMP6: Final = 3


@dataclass(frozen=True, slots=True)
class ExtendedErr:
    """struct sock_extended_err (16 B) + the offender's sockaddr (SO_EE_OFFENDER).

    For an ICMP error Linux sets ``ee_info`` to the MTU for "fragmentation
    needed"/"packet too big", and the offender is the ICMP sender; the
    sockaddr follows the struct whatever its family (sockaddr_in 16 B or
    sockaddr_in6 28 B; AF_UNSPEC zeros for a local error).
    """

    errno: int
    origin: int
    type: int
    code: int
    info: int = 0
    data: int = 0
    offender: bytes = b""


def encode_extended_err(e: ExtendedErr, *, family: int = AF_INET) -> bytes:
    off = e.offender or bytes(16 if family == AF_INET else 28)
    return struct.pack("=IBBBxII", e.errno, e.origin, e.type, e.code, e.info, e.data) + off


def decode_extended_err(data: bytes) -> ExtendedErr:
    if len(data) < 16:
        raise SockoptError(_errno.EINVAL)
    err, origin, typ, code, info, d = struct.unpack_from("=IBBBxII", data)
    return ExtendedErr(err, origin, typ, code, info, d, bytes(data[16:]))


def cmsg_payload_int(value: int) -> bytes:
    """IP_TTL, IPV6_HOPLIMIT, IPV6_TCLASS, UDP_GRO cmsgs carry an int."""
    return struct.pack("=i", value)


def cmsg_payload_tos(tos: int) -> bytes:
    """IP_TOS cmsg on receive carries a single byte (ip_cmsg_recv_tos)."""
    return bytes([tos & 0xFF])


def cmsg_payload_timestamp(sec: int, usec: int) -> bytes:
    """SCM_TIMESTAMP (SO_TIMESTAMP_OLD): struct timeval."""
    return struct.pack("=qq", sec, usec)


def cmsg_payload_timestampns(sec: int, nsec: int) -> bytes:
    """SCM_TIMESTAMPNS: struct timespec."""
    return struct.pack("=qq", sec, nsec)


# --------------------------------------------------------------------------- cmsg framing

CMSGHDR: Final = struct.Struct("=Qii")   # size_t cmsg_len; int cmsg_level; int cmsg_type
CMSG_HDR_LEN: Final = 16
MSG_CTRUNC: Final = 0x8


def cmsg_align(n: int) -> int:
    """CMSG_ALIGN: sizeof(long) = 8 on x86_64."""
    return (n + 7) & ~7


def cmsg_len(n: int) -> int:
    return CMSG_HDR_LEN + n


def cmsg_space(n: int) -> int:
    return CMSG_HDR_LEN + cmsg_align(n)


Cmsg = tuple[int, int, bytes]


def pack_cmsgs(items: Iterable[Cmsg], controllen: int | None = None) -> tuple[bytes, bool]:
    """Lay out control messages as put_cmsg does for recvmsg.

    Returns ``(bytes, truncated)``: with ``controllen`` (the program's
    msg_controllen) a message that does not fit is copied partially with a
    cmsg_len of what was copied, and MSG_CTRUNC is due; one that does not
    leave room for a header is dropped. The returned length is the new
    msg_controllen. Padding after each message (CMSG_SPACE) is zero here;
    Linux leaves those bytes of the program's buffer as they were, which no
    program walking with CMSG_NXTHDR can tell apart.
    """
    out = bytearray()
    truncated = False
    for level, ctype, data in items:
        room = None if controllen is None else controllen - len(out)
        if room is not None and room < CMSG_HDR_LEN:
            truncated = True
            break
        clen = cmsg_len(len(data))
        if room is not None and room < clen:
            truncated = True
            clen = room
        chunk = CMSGHDR.pack(clen, level, ctype) + data
        chunk = chunk[:clen]
        space = cmsg_space(len(data))
        if room is not None:
            space = min(space, room)
        out += chunk.ljust(space, b"\x00")
    return bytes(out), truncated


def unpack_cmsgs(buf: bytes) -> list[Cmsg]:
    """Control messages of a sendmsg buffer (CMSG_FIRSTHDR/CMSG_NXTHDR walk).

    Raises EINVAL for a cmsg_len shorter than the header or past the end,
    as __sys_sendmsg's cmsghdr_from_user_compat/__scm_send checks do.
    """
    out: list[Cmsg] = []
    off = 0
    while len(buf) - off >= CMSG_HDR_LEN:
        clen, level, ctype = CMSGHDR.unpack_from(buf, off)
        if clen < CMSG_HDR_LEN or clen > len(buf) - off:
            raise SockoptError(_errno.EINVAL, "bad cmsg_len")
        out.append((level, ctype, bytes(buf[off + CMSG_HDR_LEN:off + clen])))
        off += cmsg_align(clen)
    return out


OptValue = int | tuple[int, ...] | bytes


def encode_get(spec: OptSpec, value: OptValue, optlen: int) -> bytes:
    """What getsockopt writes for ``spec`` holding ``value`` into ``optlen`` bytes.

    ``value`` is an int for int options, a tuple for linger ``(onoff, secs)``,
    timeval ``(sec, usec)`` and ucred ``(pid, uid, gid)``, and the raw struct
    bytes for everything else. Structs are cut to the buffer, as Linux does.
    """
    if spec.kind == "int":
        if not isinstance(value, int):
            raise TypeError(f"{spec.name} holds an int")
        return encode_int_for_get(spec.level, value, optlen)
    if isinstance(value, tuple):
        if spec.kind == "linger":
            raw = encode_linger(*value)
        elif spec.kind == "timeval":
            raw = encode_timeval(*value)
        elif spec.kind == "ucred":
            raw = encode_ucred(*value)
        else:
            raise TypeError(f"{spec.name} ({spec.kind}) is given as bytes")
    elif isinstance(value, bytes):
        raw = value
    else:
        raise TypeError(f"{spec.name} ({spec.kind}) is not an int")
    return encode_truncated(raw, optlen)


def decode_set(spec: OptSpec, optval: bytes) -> OptValue:
    """The value a setsockopt buffer carries for ``spec`` (int, tuple or bytes).

    Length rules are Linux's (EINVAL when short); kinds without a fixed layout
    come back as the bytes given, for the caller's own checks.
    """
    if spec.kind == "int":
        return decode_int_for_set(spec.level, spec.optname, optval)
    if spec.kind == "linger":
        return decode_linger(optval)
    if spec.kind == "timeval":
        return decode_timeval(optval)
    return bytes(optval)


@dataclass(frozen=True, slots=True)
class SendControl:
    """What sendmsg's control messages ask of one datagram (None: socket default)."""

    ifindex: int | None = None
    """IP_PKTINFO / IPV6_PKTINFO interface (0 = any)."""
    src: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    """IP_PKTINFO's ipi_spec_dst / IPV6_PKTINFO's address (unspecified = none)."""
    ttl: int | None = None
    """IP_TTL / IPV6_HOPLIMIT (IPv6: -1 = the route's default)."""
    tos: int | None = None
    """IP_TOS / IPV6_TCLASS."""


def _cmsg_int(data: bytes, lo: int, hi: int) -> int:
    if len(data) != 4:
        raise SockoptError(_errno.EINVAL, "cmsg_len != CMSG_LEN(sizeof(int))")
    val = int(struct.unpack("=i", data)[0])
    if not lo <= val <= hi:
        raise SockoptError(_errno.EINVAL, f"value {val} outside {lo}..{hi}")
    return val


def parse_send_cmsgs(family: int, cmsgs: Iterable[Cmsg]) -> SendControl:
    """Control messages of a UDP sendmsg, checked as ip_cmsg_send /
    ip6_datagram_send_ctl do (EINVAL for a bad length or value, or an unknown
    type at the socket's own IP level). Messages of the other IP level are
    skipped, as Linux does; SOL_SOCKET ones are left to the caller
    (SO_MARK, SO_PRIORITY, SCM_TXTIME...) and checked only for being known.
    """
    ifindex: int | None = None
    src: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    ttl: int | None = None
    tos: int | None = None
    own = SOL_IP if family == AF_INET else SOL_IPV6
    for level, ctype, data in cmsgs:
        if level == SOL_SOCKET:
            # __sock_cmsg_send knows SO_MARK, SO_TIMESTAMPING_OLD, SCM_TXTIME,
            # SO_PRIORITY (and SCM_RIGHTS/CREDENTIALS, which inet rejects).
            if ctype not in (36, SO_TIMESTAMPING_OLD, 61, 12):
                raise SockoptError(_errno.EINVAL, "unknown SOL_SOCKET cmsg")
            continue
        if level != own:
            continue
        if family == AF_INET:
            if ctype == IP_PKTINFO:
                if len(data) != 12:
                    raise SockoptError(_errno.EINVAL, "bad in_pktinfo length")
                ifindex, spec_dst, _addr = decode_in_pktinfo(data)
                src = spec_dst if int(spec_dst) else None
            elif ctype == IP_TTL:
                ttl = _cmsg_int(data, 1, 255)
            elif ctype == IP_TOS:
                if len(data) == 1:
                    tos = data[0]
                else:
                    tos = _cmsg_int(data, 0, 255)
            elif ctype == 7:  # IP_RETOPTS: IP options, up to 40 bytes
                if len(data) > 40:
                    raise SockoptError(_errno.EINVAL, "IP options too long")
            else:
                raise SockoptError(_errno.EINVAL, f"unknown IP cmsg {ctype}")
        else:
            if ctype == IPV6_PKTINFO:
                if len(data) != 20:
                    raise SockoptError(_errno.EINVAL, "bad in6_pktinfo length")
                a6, idx = decode_in6_pktinfo(data)
                ifindex = idx
                src = a6 if int(a6) else None
            elif ctype == IPV6_HOPLIMIT:
                ttl = _cmsg_int(data, -1, 255)
            elif ctype == IPV6_TCLASS:
                tos = _cmsg_int(data, -1, 255)
            elif ctype == 62:  # IPV6_DONTFRAG
                _cmsg_int(data, -1, 1)
            else:
                raise SockoptError(_errno.EINVAL, f"unknown IPv6 cmsg {ctype}")
    return SendControl(ifindex, src, ttl, tos)


def known_for(family: int, sotype: int, level: int) -> Sequence[OptSpec]:
    """Every option valid at ``level`` for such a socket (for listings and tests)."""
    out = []
    for spec in OPTIONS.values():
        if spec.level != level:
            continue
        for get in (True, False):
            try:
                lookup(family, sotype, level, spec.optname, get=get)
            except SockoptError:
                continue
            out.append(spec)
            break
    return out
