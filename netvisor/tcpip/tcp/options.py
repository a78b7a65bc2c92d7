"""Per-socket settings (what setsockopt changes), shared by a socket and its connection.

A listener's settings are copied into each accepted connection, as Linux
copies the listening sock (``sk_clone_lock``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass


@dataclass(slots=True)
class SockOpts:
    """Socket-level and TCP-level options; ``None`` means "the stack default"."""

    nodelay: bool = False
    cork: bool = False
    quickack: bool = True
    keepalive: bool = False
    keepidle: float | None = None
    keepintvl: float | None = None
    keepcnt: int | None = None
    linger: tuple[bool, int] = (False, 0)
    linger2: float | None = None
    """TCP_LINGER2 seconds; None = tcp_fin_timeout; negative = RST at close."""
    defer_accept: float = 0.0
    window_clamp: int = 0
    user_mss: int = 0
    user_timeout: float = 0.0
    syncnt: int = 0
    congestion: str | None = None
    rcvbuf: int | None = None
    """SO_RCVBUF as stored (already doubled), None = auto-tuned."""
    sndbuf: int | None = None
    reuseaddr: bool = False
    reuseport: bool = False
    v6only: bool = False
    keepalive_set: bool = False
    tos: int = 0
    ttl: int | None = None
    notsent_lowat: int = 0
    rcvlowat: int = 1
    oobinline: bool = False
    priority: int = 0
    dontroute: bool = False
    debug: bool = False
    broadcast: bool = False
    fastopen: int = 0
    """TCP_FASTOPEN queue length / TCP_FASTOPEN_CONNECT: stored, Fast Open not done."""
    fastopen_connect: bool = False
    pmtudisc: int = 1
    """IP_MTU_DISCOVER (Linux default IP_PMTUDISC_WANT, ip_no_pmtu_disc=0)."""
    pmtudisc6: int = 1
    """IPV6_MTU_DISCOVER (IPV6_PMTUDISC_WANT)."""
    recverr: bool = False
    """IP_RECVERR / IPV6_RECVERR (``recverr6``): stored and reported. TCP has
    no error queue; Linux would also report an ICMP error on an established
    connection at once (sk_err) instead of keeping it soft: not modelled."""
    recverr6: bool = False

    df_off: bool = False
    """IPv4 segments without DF: Linux ip_dont_fragment() sets DF for
    IP_PMTUDISC_DO and WANT only (PROBE, INTERFACE, OMIT, DONT: clear).
    Kept with ``pmtudisc`` by setsockopt (read per segment)."""

    def clone(self) -> "SockOpts":
        return copy.copy(self)
