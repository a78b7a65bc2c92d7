"""Neighbour cache shared by ARP (RFC 826) and NDP (RFC 4861 7.3).

One state machine, two users: the IPv4 side feeds it ARP requests/replies,
the IPv6 side NS/NA/RA/Redirect link-layer options. States and timers follow
RFC 4861 7.3.2 (and Linux ``net/core/neighbour.c``, which uses the same
machine for ARP):

- INCOMPLETE: multicast (broadcast for ARP) solicitation every
  RetransTimer, MAX_MULTICAST_SOLICIT times, then FAILED. Packets wait in a
  bounded per-entry queue (Linux ``unres_qlen_bytes``; the oldest is dropped
  when full, as ``__neigh_event_send`` does).
- REACHABLE: for ReachableTime (random 0.5..1.5 x base, RFC 4861 6.3.2),
  then STALE.
- STALE: usable; first use moves to DELAY. Unused STALE entries are
  garbage-collected after ``gc_stale_time`` (Linux), so a later packet
  re-resolves from scratch.
- DELAY: after DELAY_FIRST_PROBE_TIME, PROBE (unless confirmed meanwhile).
- PROBE: unicast solicitation every RetransTimer, MAX_UNICAST_SOLICIT
  times, then FAILED.
- FAILED: queued packets are handed to ``on_failed`` (the stack turns them
  into a local ICMP host-unreachable, as Linux's ``ipv4_link_failure`` does,
  so waiting sockets get EHOSTUNREACH); the entry lingers briefly, and a new
  packet restarts resolution (Linux ``neigh_event_send`` does the same).
- PERMANENT: static entries, never timed out.

Sans-IO: solicitations and releases of queued packets are callbacks the
owner (the stack) provides; time comes in as ``now``.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from netvisor.tcpip.config import StackConfig

if TYPE_CHECKING:
    import random

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class NeighborState(enum.Enum):
    INCOMPLETE = "incomplete"
    REACHABLE = "reachable"
    STALE = "stale"
    DELAY = "delay"
    PROBE = "probe"
    FAILED = "failed"
    PERMANENT = "permanent"


_REACHABLE, _PERMANENT = NeighborState.REACHABLE, NeighborState.PERMANENT
_DELAY, _PROBE = NeighborState.DELAY, NeighborState.PROBE


@dataclass(slots=True)
class NeighborEntry:
    """One neighbour: address, link-layer address, state and its timer."""

    ip: IPAddress
    state: NeighborState
    mac: bytes | None = None
    timer_at: float | None = None
    probes: int = 0
    is_router: bool = False
    used_at: float = 0.0
    queue: deque[tuple[Any, int]] = field(default_factory=deque)
    queue_bytes: int = 0
    confirmed_at: float = float("-inf")
    """Last upper-layer confirmation while REACHABLE (Linux ``neigh->confirmed``)."""


# solicit(ip, unicast_mac_or_None_for_multicast)
SolicitFn = Callable[[IPAddress, "bytes | None"], None]
# release(entry, queued_items): resolved -> send them; failed -> report them
ReleaseFn = Callable[[NeighborEntry, list[Any]], None]


class NeighborCache:
    """The neighbour table of one NIC and one protocol (ARP or NDP)."""

    def __init__(self, config: StackConfig, rng: random.Random, *, solicit: SolicitFn,
                 on_resolved: ReleaseFn, on_failed: ReleaseFn,
                 on_drop: Callable[[int], None] | None = None) -> None:
        self.config = config
        self.rng = rng
        self._solicit = solicit
        self._on_resolved = on_resolved
        self._on_failed = on_failed
        self._on_drop = on_drop or (lambda n: None)
        self.entries: dict[IPAddress, NeighborEntry] = {}
        self.base_reachable_time = config.base_reachable_time
        self.retrans_timer = config.retrans_timer
        self._deadline_cache: float | None = None
        self._deadline_dirty = True

    # -- helpers -----------------------------------------------------------------

    def _reachable_time(self) -> float:
        # RFC 4861 6.3.2: uniformly random between MIN_RANDOM_FACTOR (0.5) and
        # MAX_RANDOM_FACTOR (1.5) times BaseReachableTime.
        return self.base_reachable_time * self.rng.uniform(0.5, 1.5)

    def _set_state(self, e: NeighborEntry, state: NeighborState, timer_at: float | None) -> None:
        if e.state is not state:
            log.debug("neighbour %s: %s -> %s", e.ip, e.state.value, state.value)
        e.state = state
        e.timer_at = timer_at
        self._deadline_dirty = True

    def _release(self, e: NeighborEntry) -> None:
        if e.queue:
            items = [item for item, _ in e.queue]
            e.queue.clear()
            e.queue_bytes = 0
            self._on_resolved(e, items)

    def _make_room(self) -> bool:
        """Keep the table under ``neigh_max_entries`` (Linux gc_thresh3): evict the
        least recently used entry that is neither permanent nor resolving, or
        refuse the new one (a flood of forged sources must not grow memory)."""
        if len(self.entries) < self.config.neigh_max_entries:
            return True
        victims = [e for e in self.entries.values()
                   if e.state not in (NeighborState.PERMANENT, NeighborState.INCOMPLETE)]
        if not victims:
            return False
        victim = min(victims, key=lambda e: e.used_at)
        del self.entries[victim.ip]
        self._deadline_dirty = True
        return True

    # -- queries and transmit path ------------------------------------------------

    def get(self, ip: IPAddress) -> NeighborEntry | None:
        """The entry for ``ip``, or None."""
        return self.entries.get(ip)

    def usable_mac(self, ip: IPAddress, now: float) -> bytes | None:
        """The MAC of ``ip`` when sending needs no state change (REACHABLE, DELAY,
        PROBE, PERMANENT), else None: then call :meth:`resolve`. The per-packet
        fast path of the output (no queue item built)."""
        e = self.entries.get(ip)
        if e is None:
            return None
        st = e.state
        if st is _REACHABLE or st is _PERMANENT or st is _DELAY or st is _PROBE:
            e.used_at = now
            return e.mac
        return None

    def resolve(self, ip: IPAddress, item: Any, size: int, now: float) -> bytes | None:
        """The MAC to send to ``ip`` now, or None (``item`` queued, resolution started).

        Using a STALE entry moves it to DELAY (RFC 4861 7.3.3).
        """
        e = self.entries.get(ip)
        if e is not None and e.mac is not None and e.state is not NeighborState.FAILED \
                and e.state is not NeighborState.INCOMPLETE:
            e.used_at = now
            if e.state is NeighborState.STALE:
                self._set_state(e, NeighborState.DELAY, now + self.config.delay_first_probe_time)
            return e.mac
        if e is None or e.state is NeighborState.FAILED:
            if e is None and not self._make_room():
                self._on_drop(1)
                return None
            e = NeighborEntry(ip, NeighborState.INCOMPLETE, used_at=now)
            self.entries[ip] = e
            e.probes = 1
            self._set_state(e, NeighborState.INCOMPLETE, now + self.retrans_timer)
            self._solicit(ip, None)
        self._enqueue(e, item, size)
        return None

    def _enqueue(self, e: NeighborEntry, item: Any, size: int) -> None:
        limit = self.config.neigh_queue_bytes
        while e.queue and e.queue_bytes + size > limit:
            _, old = e.queue.popleft()
            e.queue_bytes -= old
            self._on_drop(1)
        if size > limit:
            self._on_drop(1)
            return
        e.queue.append((item, size))
        e.queue_bytes += size

    # -- inputs -------------------------------------------------------------------

    def add_static(self, ip: IPAddress, mac: bytes) -> None:
        """A PERMANENT entry (``ip neigh ... nud permanent``); releases queued packets."""
        e = self.entries.get(ip)
        if e is None:
            e = self.entries[ip] = NeighborEntry(ip, NeighborState.PERMANENT, mac=mac)
        e.mac = mac
        self._set_state(e, NeighborState.PERMANENT, None)
        self._release(e)

    def remove(self, ip: IPAddress) -> None:
        """Forget ``ip``."""
        if self.entries.pop(ip, None) is not None:
            self._deadline_dirty = True

    def handle_advertisement(self, ip: IPAddress, mac: bytes | None, now: float, *,
                             solicited: bool, override: bool,
                             is_router: bool | None = None) -> None:
        """A Neighbor Advertisement or ARP reply (RFC 4861 7.2.5; Linux arp_process).

        ARP replies come in as ``solicited=True, override=True``.
        """
        e = self.entries.get(ip)
        if e is None:
            # RFC 4861 7.2.5: no entry -> the advertisement is silently discarded.
            return
        if e.state is NeighborState.PERMANENT:
            return
        if is_router is not None:
            e.is_router = is_router
        if e.state in (NeighborState.INCOMPLETE, NeighborState.FAILED):
            if mac is None:
                return
            e.mac = mac
            if solicited:
                self._set_state(e, NeighborState.REACHABLE, now + self._reachable_time())
            else:
                self._set_state(e, NeighborState.STALE, now + self.config.neigh_gc_stale_time)
            e.probes = 0
            self._release(e)
            return
        changed = mac is not None and mac != e.mac
        if not override and changed:
            # Different address without Override: only demote a REACHABLE entry.
            if e.state is NeighborState.REACHABLE:
                self._set_state(e, NeighborState.STALE, now + self.config.neigh_gc_stale_time)
            return
        if mac is not None:
            e.mac = mac
        if solicited:
            e.probes = 0
            self._set_state(e, NeighborState.REACHABLE, now + self._reachable_time())
        elif changed:
            self._set_state(e, NeighborState.STALE, now + self.config.neigh_gc_stale_time)
        self._release(e)

    def handle_unsolicited(self, ip: IPAddress, mac: bytes, now: float, *,
                           create: bool = True, is_router: bool | None = None) -> None:
        """A link-layer address learnt without a confirmation of reachability.

        NS/RS/RA source link-layer options (RFC 4861 7.2.3, 6.3.4) and ARP
        requests addressed to us (create=True); gratuitous ARP (create=False:
        Linux ``arp_accept=0`` only updates existing entries).
        """
        e = self.entries.get(ip)
        if e is None:
            if not create or not self._make_room():
                return
            e = self.entries[ip] = NeighborEntry(ip, NeighborState.STALE, mac=mac, used_at=now)
            if is_router is not None:
                e.is_router = is_router
            self._set_state(e, NeighborState.STALE, now + self.config.neigh_gc_stale_time)
            return
        if e.state is NeighborState.PERMANENT:
            return
        if is_router is not None:
            e.is_router = is_router
        if e.state in (NeighborState.INCOMPLETE, NeighborState.FAILED) or e.mac != mac:
            e.mac = mac
            e.probes = 0
            self._set_state(e, NeighborState.STALE, now + self.config.neigh_gc_stale_time)
            self._release(e)

    def confirm(self, ip: IPAddress, now: float) -> None:
        """Upper-layer reachability confirmation (RFC 4861 7.3.1), e.g. a TCP ACK.

        An entry with a link-layer address becomes REACHABLE for a new
        ReachableTime (STALE/DELAY/PROBE too: the hint proves the path works,
        so no probe has to win over a congested link). Called per ACK, so a
        REACHABLE entry only records the time, as Linux ``neigh_confirm``
        stores ``neigh->confirmed``; its timer re-arms from it when it fires.
        """
        e = self.entries.get(ip)
        if e is None or e.mac is None:
            return
        st = e.state
        if st is NeighborState.REACHABLE:
            e.confirmed_at = now
        elif st not in (NeighborState.PERMANENT, NeighborState.INCOMPLETE,
                        NeighborState.FAILED):
            e.probes = 0
            e.confirmed_at = now
            self._set_state(e, NeighborState.REACHABLE, now + self._reachable_time())

    # -- timers ------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        """Run the state machine's timers due at ``now`` (retries, expiry, probes)."""
        deadline = self.next_deadline()
        if deadline is None or deadline > now:
            return  # the common case, every driver turn: nothing due
        for e in list(self.entries.values()):
            if e.timer_at is None or e.timer_at > now:
                continue
            st = e.state
            if st is NeighborState.INCOMPLETE:
                if e.probes >= self.config.max_multicast_solicit:
                    self._fail(e, now)
                else:
                    e.probes += 1
                    self._set_state(e, st, now + self.retrans_timer)
                    self._solicit(e.ip, None)
            elif st is NeighborState.REACHABLE:
                reach = self._reachable_time()
                if now < e.confirmed_at + reach:
                    # Confirmed meanwhile (Linux neigh_timer_handler): stay REACHABLE.
                    self._set_state(e, st, e.confirmed_at + reach)
                else:
                    self._set_state(e, NeighborState.STALE,
                                    now + self.config.neigh_gc_stale_time)
            elif st is NeighborState.STALE:
                # Unused for gc_stale_time: forget it (re-resolve on next use).
                if now - e.used_at >= self.config.neigh_gc_stale_time and not e.queue:
                    del self.entries[e.ip]
                    self._deadline_dirty = True
                else:
                    self._set_state(e, st, e.used_at + self.config.neigh_gc_stale_time)
            elif st is NeighborState.DELAY:
                e.probes = 1
                self._set_state(e, NeighborState.PROBE, now + self.retrans_timer)
                self._solicit(e.ip, e.mac)
            elif st is NeighborState.PROBE:
                if e.probes >= self.config.max_unicast_solicit:
                    self._fail(e, now)
                else:
                    e.probes += 1
                    self._set_state(e, st, now + self.retrans_timer)
                    self._solicit(e.ip, e.mac)
            elif st is NeighborState.FAILED:
                del self.entries[e.ip]
                self._deadline_dirty = True

    def _fail(self, e: NeighborEntry, now: float) -> None:
        items = [item for item, _ in e.queue]
        e.queue.clear()
        e.queue_bytes = 0
        e.mac = None
        self._set_state(e, NeighborState.FAILED, now + self.config.neigh_failed_linger)
        if items:
            self._on_failed(e, items)

    def next_deadline(self) -> float | None:
        """Earliest timer of any entry, or None."""
        if self._deadline_dirty:
            times = [e.timer_at for e in self.entries.values() if e.timer_at is not None]
            self._deadline_cache = min(times) if times else None
            self._deadline_dirty = False
        return self._deadline_cache
