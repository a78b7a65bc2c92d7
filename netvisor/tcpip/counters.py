"""Drop reasons and counters of the network layer.

Every received frame that is not delivered is counted under one
:class:`DropReason` (gVisor's ``tcpip.Stats`` / Linux's SNMP MIB counters,
``nstat``); tests and ``netvisor host --debug`` read them. Counters are a
plain ``collections.Counter`` keyed by name so that any layer can add one
without a central list, plus the drop counter keyed by :class:`DropReason`.
"""

from __future__ import annotations

import enum
from collections import Counter


class DropReason(enum.Enum):
    """Why a received (or locally generated) packet was dropped."""

    TRUNCATED = "truncated"                  # a header runs past the buffer end
    MALFORMED = "malformed"                  # a field has an impossible value
    BAD_ETHERTYPE = "bad_ethertype"          # not ARP/IPv4/IPv6
    NOT_FOR_US = "not_for_us"                # destination MAC/IP is not ours
    BAD_IP_VERSION = "bad_ip_version"
    BAD_IP_CHECKSUM = "bad_ip_checksum"
    BAD_L4_CHECKSUM = "bad_l4_checksum"
    BAD_SOURCE = "bad_source"                # martian source (multicast, loopback on a wire)
    TTL_EXPIRED = "ttl_expired"
    UNKNOWN_PROTOCOL = "unknown_protocol"
    NO_SOCKET = "no_socket"                  # UDP port without listener (ICMP sent)
    RCVBUF_FULL = "rcvbuf_full"
    FRAG_OVERLAP = "frag_overlap"            # RFC 5722: whole datagram discarded
    FRAG_DUPLICATE = "frag_duplicate"
    FRAG_TOO_BIG = "frag_too_big"            # reassembled length > 65535
    FRAG_TIMEOUT = "frag_timeout"
    FRAG_MEMORY = "frag_memory"              # global reassembly memory cap
    NEIGHBOR_FAILED = "neighbor_failed"      # address resolution gave up
    NEIGHBOR_QUEUE_FULL = "neighbor_queue_full"
    TX_QUEUE_FULL = "tx_queue_full"
    ICMP_RATE_LIMITED = "icmp_rate_limited"
    IPV6_OPTION = "ipv6_option"              # unknown option with a discard action
    IPV6_ROUTING = "ipv6_routing"            # routing header with segments left
    NDP_INVALID = "ndp_invalid"              # RFC 4861 validity checks failed
    ARP_INVALID = "arp_invalid"
    ICMP_IGNORED = "icmp_ignored"            # broadcast echo, unknown type, ...
    TRANSPORT_MALFORMED = "transport_malformed"
    TENTATIVE_ADDRESS = "tentative_address"  # RFC 4862 5.4: not yet ours
    NO_ROUTE = "no_route"
    INTERNAL_ERROR = "internal_error"        # a bug; logged at DEBUG with traceback


class Counters:
    """Drops by reason plus free-form event counters (``rx_frames``, ...)."""

    __slots__ = ("drops", "events")

    def __init__(self) -> None:
        self.drops: Counter[DropReason] = Counter()
        self.events: Counter[str] = Counter()

    def drop(self, reason: DropReason, n: int = 1) -> None:
        self.drops[reason] += n

    def inc(self, name: str, n: int = 1) -> None:
        self.events[name] += n

    @property
    def total_drops(self) -> int:
        return sum(self.drops.values())

    def snapshot(self) -> dict[str, int]:
        """All counters as one flat dict (``drop.<reason>`` and event names)."""
        out = {f"drop.{r.value}": n for r, n in self.drops.items()}
        out.update(self.events)
        return out
