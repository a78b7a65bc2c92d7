"""Configuration of the sans-IO stack: every tunable with its Linux default.

Numbers follow Linux sysctls (``net.ipv4.*``, ``net.ipv6.conf.*``,
``net.ipv4.neigh.default.*``) unless an RFC constant is cited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random


@dataclass
class StackConfig:
    """Tunables of :class:`netvisor.tcpip.stack.Stack`."""

    rng: random.Random | None = None
    """All randomness (ephemeral ports, IP IDs, timer jitter) comes from here.
    Required by the Stack; the core may not create one (sans-IO rule), so the
    driver (``NetStack(seed=...)``) or the test hands in ``random.Random(seed)``."""
    tcp_secret: bytes | None = None
    """Key of TCP's ISNs, timestamp offsets and ephemeral-port offsets (None:
    drawn from ``rng``). A driver gives one secret per host boot, as Linux
    keeps one per boot, so that with the host clock (``Stack.host_clock_offset``)
    a later run's ISNs and TSvals toward a peer exceed an earlier run's."""

    # IPv4 / IPv6 defaults.
    default_ttl: int = 64                    # net.ipv4.ip_default_ttl
    default_hop_limit: int = 64              # net.ipv6.conf.*.hop_limit
    ipv4_frag_timeout: float = 30.0          # net.ipv4.ipfrag_time
    ipv6_frag_timeout: float = 60.0          # net.ipv6.ip6frag_time (RFC 8200 4.5)
    frag_high_thresh: int = 4 * 1024 * 1024  # net.ipv4.ipfrag_high_thresh
    tx_queue_len: int = 1000                 # txqueuelen of an Ethernet device

    # Neighbour discovery (ARP and NDP share Linux's neigh parameters).
    base_reachable_time: float = 30.0        # RFC 4861 REACHABLE_TIME, Linux base_reachable_time_ms
    retrans_timer: float = 1.0               # RFC 4861 RETRANS_TIMER
    delay_first_probe_time: float = 5.0      # RFC 4861 DELAY_FIRST_PROBE_TIME
    max_multicast_solicit: int = 3           # RFC 4861 MAX_MULTICAST_SOLICIT / Linux mcast_solicit
    max_unicast_solicit: int = 3             # RFC 4861 MAX_UNICAST_SOLICIT / Linux ucast_solicit
    neigh_queue_bytes: int = 212992          # Linux unres_qlen_bytes (= SK_WMEM_MAX)
    neigh_gc_stale_time: float = 60.0        # Linux gc_stale_time: unused STALE entries go
    neigh_failed_linger: float = 3.0         # FAILED entries are kept this long (then removed)
    neigh_max_entries: int = 1024            # Linux gc_thresh3: hard cap per table

    # IPv6 address configuration (RFC 4862, RFC 4861 10).
    dad_transmits: int = 1                   # DupAddrDetectTransmits / Linux dad_transmits
    dad_max_delay: float = 1.0               # MAX_RTR_SOLICITATION_DELAY before the first DAD NS
    router_solicitations: int = 3            # RFC 4861 MAX_RTR_SOLICITATIONS
    router_solicitation_interval: float = 4.0  # RTR_SOLICITATION_INTERVAL
    accept_ra: bool = True
    autoconf: bool = True                    # SLAAC from RA prefixes (RFC 4862 5.5.3)

    # ICMP (Linux icmp_ratelimit / icmp_msgs_per_sec / icmp_msgs_burst).
    icmp_ratelimit_interval: float = 1.0     # per-destination: 1 token per second ...
    icmp_ratelimit_burst: int = 6            # ... burst XRLIM_BURST_FACTOR = 6
    icmp_msgs_per_sec: int = 1000            # global bucket rate
    icmp_msgs_burst: int = 50                # global bucket depth
    icmp_echo_ignore_broadcasts: bool = True # net.ipv4.icmp_echo_ignore_broadcasts

    # UDP.
    ephemeral_low: int = 32768               # net.ipv4.ip_local_port_range
    ephemeral_high: int = 60999
    udp_rcvbuf: int = 212992                 # net.core.rmem_default
    udp_sndbuf: int = 212992                 # net.core.wmem_default
    rcvbuf_max: int = 212992                 # net.core.rmem_max (SO_RCVBUF is doubled, capped)

    # Multicast (IGMPv3 RFC 3376 / MLDv2 RFC 3810).
    unsolicited_report_interval: float = 1.0  # Linux igmpv3_unsolicited_report_interval
    robustness: int = 2
