"""ICMPv4/ICMPv6 helpers: the error rate limiter and Linux's errno translation.

Rate limiting follows Linux (``icmp_global_allow`` + ``icmpv4_xrlim_allow``
/ ``icmpv6_xrlim_allow``, RFC 4443 2.4(f) asks for a token bucket):

- a global bucket of ``icmp_msgs_per_sec`` tokens/s, depth ``icmp_msgs_burst``;
- a per-destination bucket of one token per ``icmp_ratelimit_interval``,
  depth ``icmp_ratelimit_burst`` (Linux ``XRLIM_BURST_FACTOR`` = 6);
- echo replies are not limited (``icmp_ratemask`` excludes them) and nothing
  sent to a loopback destination is limited (Linux exempts loopback devices).
"""

from __future__ import annotations

import errno
import ipaddress
from typing import Final

from netvisor.tcpip.config import StackConfig

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# ICMPv4 types/codes (RFC 792).
ICMP_ECHO_REPLY: Final = 0
ICMP_DEST_UNREACH: Final = 3
ICMP_SOURCE_QUENCH: Final = 4
ICMP_REDIRECT: Final = 5
ICMP_ECHO: Final = 8
ICMP_TIME_EXCEEDED: Final = 11
ICMP_PARAMETERPROB: Final = 12
ICMP_NET_UNREACH: Final = 0
ICMP_HOST_UNREACH: Final = 1
ICMP_PROT_UNREACH: Final = 2
ICMP_PORT_UNREACH: Final = 3
ICMP_FRAG_NEEDED: Final = 4
ICMP_EXC_TTL: Final = 0
ICMP_EXC_FRAGTIME: Final = 1

# ICMPv6 types/codes (RFC 4443, RFC 4861, RFC 3810).
ICMPV6_DEST_UNREACH: Final = 1
ICMPV6_PKT_TOOBIG: Final = 2
ICMPV6_TIME_EXCEED: Final = 3
ICMPV6_PARAMPROB: Final = 4
ICMPV6_ECHO_REQUEST: Final = 128
ICMPV6_ECHO_REPLY: Final = 129
ICMPV6_MLD_QUERY: Final = 130
ICMPV6_MLD_REPORT: Final = 131
ICMPV6_MLD_DONE: Final = 132
ICMPV6_RS: Final = 133
ICMPV6_RA: Final = 134
ICMPV6_NS: Final = 135
ICMPV6_NA: Final = 136
ICMPV6_REDIRECT: Final = 137
ICMPV6_MLD2_REPORT: Final = 143
ICMPV6_ADDR_UNREACH: Final = 3
ICMPV6_PORT_UNREACH: Final = 4
ICMPV6_EXC_HOPLIMIT: Final = 0
ICMPV6_EXC_FRAGTIME: Final = 1
ICMPV6_HDR_FIELD: Final = 0
ICMPV6_UNK_NEXTHDR: Final = 1
ICMPV6_UNK_OPTION: Final = 2

# Linux net/ipv4/icmp.c icmp_err_convert[] for ICMP_DEST_UNREACH codes 0..15.
_V4_UNREACH_ERRNO: Final = (
    errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENOPROTOOPT, errno.ECONNREFUSED,
    errno.EMSGSIZE, errno.EOPNOTSUPP, errno.ENETUNREACH, errno.EHOSTDOWN,
    errno.ENONET, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETUNREACH,
    errno.EHOSTUNREACH, errno.EHOSTUNREACH, errno.EHOSTUNREACH, errno.EHOSTUNREACH,
)
# Which of those are "fatal" (hard errors) in icmp_err_convert[].
_V4_UNREACH_FATAL: Final = (False, True, True, True, False, True, True, True,
                            True, True, True, True, True, True, True, True)

# Linux net/ipv6/icmp.c tab_unreach[] for ICMPV6_DEST_UNREACH codes 0..6.
_V6_UNREACH_ERRNO: Final = (
    errno.ENETUNREACH, errno.EACCES, errno.EHOSTUNREACH, errno.EHOSTUNREACH,
    errno.ECONNREFUSED, errno.EACCES, errno.EACCES,
)
_V6_UNREACH_FATAL: Final = (False, True, True, False, True, True, True)


def icmpv4_errno(type_: int, code: int) -> tuple[int, bool]:
    """(errno, fatal) for a received ICMPv4 error (Linux ``icmp_err_convert``)."""
    if type_ == ICMP_DEST_UNREACH:
        if code < len(_V4_UNREACH_ERRNO):
            return _V4_UNREACH_ERRNO[code], _V4_UNREACH_FATAL[code]
        return errno.EHOSTUNREACH, True
    if type_ == ICMP_TIME_EXCEEDED:
        return errno.EHOSTUNREACH, False
    if type_ == ICMP_PARAMETERPROB:
        return errno.EPROTO, True
    return errno.EHOSTUNREACH, False


def icmpv6_errno(type_: int, code: int) -> tuple[int, bool]:
    """(errno, fatal) for a received ICMPv6 error (Linux ``icmpv6_err_convert``)."""
    if type_ == ICMPV6_DEST_UNREACH:
        if code < len(_V6_UNREACH_ERRNO):
            return _V6_UNREACH_ERRNO[code], _V6_UNREACH_FATAL[code]
        return errno.EPROTO, True
    if type_ == ICMPV6_PKT_TOOBIG:
        return errno.EMSGSIZE, False
    if type_ == ICMPV6_PARAMPROB:
        return errno.EPROTO, True
    if type_ == ICMPV6_TIME_EXCEED:
        return errno.EHOSTUNREACH, False
    return errno.EPROTO, False


class TokenBucket:
    """A token bucket refilled continuously (``rate`` tokens/s, depth ``burst``)."""

    __slots__ = ("burst", "rate", "tokens", "updated_at")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.updated_at = now

    def take(self, now: float) -> bool:
        """Take one token if there is one (refilling for the time since the last call)."""
        elapsed = now - self.updated_at
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.updated_at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class IcmpRateLimiter:
    """Decides whether an ICMP error may be sent now (see the module docstring)."""

    MAX_PEERS: Final = 4096
    """Bound on per-destination buckets (Linux keeps them in the inetpeer cache)."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self._global: TokenBucket | None = None
        self._peers: dict[IPAddress, TokenBucket] = {}

    def allow(self, dst: IPAddress, now: float) -> bool:
        """True when an ICMP error to ``dst`` may be sent now (both buckets had a token)."""
        cfg = self.config
        if self._global is None:
            self._global = TokenBucket(cfg.icmp_msgs_per_sec, cfg.icmp_msgs_burst, now)
        if not self._global.take(now):
            return False
        if cfg.icmp_ratelimit_interval <= 0:
            return True  # icmp_ratelimit=0: no per-destination limit (Linux)
        bucket = self._peers.get(dst)
        if bucket is None:
            if len(self._peers) >= self.MAX_PEERS:
                # Forget the oldest peer (dicts keep insertion order).
                self._peers.pop(next(iter(self._peers)))
            bucket = TokenBucket(1.0 / cfg.icmp_ratelimit_interval, cfg.icmp_ratelimit_burst, now)
            self._peers[dst] = bucket
        return bucket.take(now)
