"""IP reassembly (RFC 791 3.2, RFC 8200 4.5, RFC 5722) and fragmentation helpers.

Reassembly rules, as Linux ``inet_frag_queue_insert`` applies them to both
IPv4 and IPv6 since the 2018 FragmentSmack fixes:

- A fragment entirely inside data already received is a duplicate: it is
  dropped and the datagram keeps reassembling (RFC 5722 errata 3089).
- A fragment that partly overlaps received data discards the whole datagram
  (RFC 5722 for IPv6; Linux does the same for IPv4, "ip: discard IPv4
  datagrams with overlapping segments").
- A datagram longer than 65535 bytes, or a last fragment that disagrees with
  an earlier one about the end, is discarded as malformed.
- Timeout: 30 s for IPv4 (``ipfrag_time``), 60 s for IPv6 (RFC 8200 4.5);
  the caller sends ICMP time exceeded (code 1) only when the first fragment
  (offset 0) had arrived.
- Memory: all queues of one reassembler share a budget (Linux
  ``ipfrag_high_thresh``, 4 MiB); when a new fragment would exceed it, the
  oldest queues are evicted until it fits.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Final

from netvisor.tcpip.counters import Counters, DropReason

FRAG_OVERHEAD: Final = 128
"""Per-fragment bookkeeping charged to the memory budget (an skb's truesize is
larger than its data; without a charge, tiny fragments would be free)."""

MAX_DATAGRAM: Final = 65535


@dataclass(slots=True)
class FragQueue:
    """Fragments of one datagram being reassembled."""

    key: Hashable
    created_at: float
    expires_at: float
    pieces: list[tuple[int, int, bytes]] = field(default_factory=list)  # (start, end, data), sorted
    total_len: int | None = None     # known once the last fragment arrived
    received: int = 0
    mem: int = 0
    first: Any = None
    """Whatever the caller stored with the offset-0 fragment (its header, for ICMP)."""


class Reassembler:
    """Reassembly queues for one IP version."""

    def __init__(self, timeout: float, high_thresh: int, counters: Counters) -> None:
        self.timeout = timeout
        self.high_thresh = high_thresh
        self.counters = counters
        self.queues: OrderedDict[Hashable, FragQueue] = OrderedDict()  # oldest first
        self.mem = 0

    def _discard(self, q: FragQueue) -> None:
        self.queues.pop(q.key, None)
        self.mem -= q.mem

    def add(self, key: Hashable, offset: int, data: bytes | memoryview, more: bool,
            now: float, first: Any = None) -> tuple[bytes, Any] | None:
        """Add one fragment; returns ``(payload, first_info)`` when the datagram is complete.

        Drops are counted here (``FRAG_*`` reasons); the caller only forwards
        complete payloads.
        """
        start, end = offset, offset + len(data)
        if end > MAX_DATAGRAM:
            self.counters.drop(DropReason.FRAG_TOO_BIG)
            q = self.queues.get(key)
            if q is not None:
                self._discard(q)
            return None
        q = self.queues.get(key)
        if q is None:
            q = FragQueue(key, now, now + self.timeout)
            self.queues[key] = q
        # Last-fragment consistency (Linux ip_frag_queue / ip6_frag_queue).
        if not more:
            if (q.total_len is not None and q.total_len != end) or \
                    (q.pieces and q.pieces[-1][1] > end):
                self.counters.drop(DropReason.MALFORMED)
                self._discard(q)
                return None
            q.total_len = end
        elif q.total_len is not None and end > q.total_len:
            self.counters.drop(DropReason.MALFORMED)
            self._discard(q)
            return None
        # Overlap / duplicate check against what we have.
        covered = 0
        for a, b, _ in q.pieces:
            if b <= start or a >= end:
                continue
            lo, hi = max(a, start), min(b, end)
            covered += hi - lo
        if covered:
            if covered >= end - start:
                self.counters.drop(DropReason.FRAG_DUPLICATE)
                return None
            self.counters.drop(DropReason.FRAG_OVERLAP)
            self._discard(q)
            return None
        if end == start and more:
            # An empty non-last fragment carries nothing (and would loop forever).
            self.counters.drop(DropReason.MALFORMED)
            return None
        cost = len(data) + FRAG_OVERHEAD
        while self.mem + cost > self.high_thresh and self.queues:
            oldest = next(iter(self.queues.values()))
            self.counters.drop(DropReason.FRAG_MEMORY)
            self._discard(oldest)
            if oldest is q:
                return None
        if self.mem + cost > self.high_thresh:
            self.counters.drop(DropReason.FRAG_MEMORY)
            return None
        # Insert sorted.
        piece = (start, end, bytes(data))
        pieces = q.pieces
        i = len(pieces)
        while i > 0 and pieces[i - 1][0] > start:
            i -= 1
        pieces.insert(i, piece)
        q.received += end - start
        q.mem += cost
        self.mem += cost
        if start == 0:
            q.first = first
        if q.total_len is not None and q.received == q.total_len:
            self._discard(q)
            self.counters.inc("reassembled")
            return b"".join(p[2] for p in pieces), q.first
        return None

    def expire(self, now: float) -> list[FragQueue]:
        """Remove timed-out queues; returns them (``first`` set -> send time exceeded)."""
        gone: list[FragQueue] = []
        while self.queues:
            q = next(iter(self.queues.values()))
            if q.expires_at > now:
                break
            self._discard(q)
            self.counters.drop(DropReason.FRAG_TIMEOUT)
            gone.append(q)
        return gone

    def next_deadline(self) -> float | None:
        """When the oldest reassembly times out, or None."""
        # Queues are created in time order and all share one timeout.
        for q in self.queues.values():
            return q.expires_at
        return None


def fragment_offsets(payload_len: int, max_frag_payload: int) -> list[tuple[int, int]]:
    """Cut ``payload_len`` bytes into (offset, length) pieces, each a multiple of 8
    except the last (RFC 791 3.2, RFC 8200 4.5)."""
    step = max(8, max_frag_payload - max_frag_payload % 8)
    out = []
    off = 0
    while off < payload_len:
        n = min(step, payload_len - off)
        out.append((off, n))
        off += n
    return out
