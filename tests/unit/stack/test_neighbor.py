"""The neighbour cache state machine (RFC 4861 7.3, shared with ARP)."""

from __future__ import annotations

import ipaddress
import random
from typing import Any

from netvisor.tcpip.config import StackConfig
from netvisor.tcpip.neighbor import NeighborCache, NeighborState

IP = ipaddress.ip_address("10.0.0.1")
MAC = b"\x02\x00\x00\x00\x00\x02"
MAC2 = b"\x02\x00\x00\x00\x00\x03"


class Recorder:
    def __init__(self, **cfg: Any) -> None:
        self.solicits: list[tuple[Any, bytes | None]] = []
        self.resolved: list[Any] = []
        self.failed: list[Any] = []
        self.drops = 0
        self.cache = NeighborCache(
            StackConfig(rng=random.Random(1), **cfg), random.Random(1),
            solicit=lambda ip, mac: self.solicits.append((ip, mac)),
            on_resolved=lambda e, items: self.resolved.extend(items),
            on_failed=lambda e, items: self.failed.extend(items),
            on_drop=self._drop)

    def _drop(self, n: int) -> None:
        self.drops += n

    def run(self, until: float, step: float = 0.1) -> None:
        t = 0.0
        while t <= until:
            self.cache.handle_timer(t)
            t = round(t + step, 6)


def test_incomplete_retries_then_fails_with_queued_packets() -> None:
    r = Recorder()
    assert r.cache.resolve(IP, "p1", 100, 0.0) is None
    assert r.cache.resolve(IP, "p2", 100, 0.5) is None
    assert r.solicits == [(IP, None)]  # one solicitation, not one per packet
    r.cache.handle_timer(0.99)
    assert len(r.solicits) == 1
    r.cache.handle_timer(1.0)
    r.cache.handle_timer(2.0)
    assert len(r.solicits) == 3  # MAX_MULTICAST_SOLICIT
    assert r.cache.get(IP).state is NeighborState.INCOMPLETE  # type: ignore[union-attr]
    r.cache.handle_timer(3.0)
    assert r.cache.get(IP).state is NeighborState.FAILED  # type: ignore[union-attr]
    assert r.failed == ["p1", "p2"]
    # A new packet restarts resolution.
    r.cache.handle_timer(10.0)
    assert r.cache.get(IP) is None
    assert r.cache.resolve(IP, "p3", 100, 10.0) is None
    assert len(r.solicits) == 4


def test_reply_releases_queue_and_becomes_reachable_then_stale() -> None:
    r = Recorder()
    r.cache.resolve(IP, "p1", 100, 0.0)
    r.cache.handle_advertisement(IP, MAC, 0.2, solicited=True, override=True)
    assert r.resolved == ["p1"]
    e = r.cache.get(IP)
    assert e.state is NeighborState.REACHABLE and e.mac == MAC  # type: ignore[union-attr]
    # ReachableTime is random in [15, 45] s for the 30 s base.
    assert 15.2 <= e.timer_at <= 45.2  # type: ignore[union-attr, operator]
    r.cache.handle_timer(e.timer_at)  # type: ignore[union-attr, arg-type]
    assert e.state is NeighborState.STALE  # type: ignore[union-attr]


def test_stale_use_goes_delay_probe_and_fails_without_answer() -> None:
    r = Recorder()
    r.cache.handle_unsolicited(IP, MAC, 0.0)
    assert r.cache.get(IP).state is NeighborState.STALE  # type: ignore[union-attr]
    assert r.cache.resolve(IP, "p", 10, 1.0) == MAC  # still usable while stale
    e = r.cache.get(IP)
    assert e.state is NeighborState.DELAY  # type: ignore[union-attr]
    r.cache.handle_timer(5.99)
    assert e.state is NeighborState.DELAY  # type: ignore[union-attr]
    r.cache.handle_timer(6.0)  # DELAY_FIRST_PROBE_TIME = 5 s
    assert e.state is NeighborState.PROBE and r.solicits == [(IP, MAC)]  # type: ignore[union-attr]
    r.cache.handle_timer(7.0)
    r.cache.handle_timer(8.0)
    assert r.solicits == [(IP, MAC)] * 3  # unicast probes
    r.cache.handle_timer(9.0)
    assert e.state is NeighborState.FAILED  # type: ignore[union-attr]


def test_probe_answered_returns_to_reachable() -> None:
    r = Recorder()
    r.cache.handle_unsolicited(IP, MAC, 0.0)
    r.cache.resolve(IP, "p", 10, 0.0)
    r.cache.handle_timer(5.0)
    r.cache.handle_advertisement(IP, MAC, 5.5, solicited=True, override=False)
    assert r.cache.get(IP).state is NeighborState.REACHABLE  # type: ignore[union-attr]


def test_unused_stale_entries_are_garbage_collected() -> None:
    r = Recorder()
    r.cache.handle_unsolicited(IP, MAC, 0.0)
    r.cache.handle_timer(59.0)
    assert r.cache.get(IP) is not None
    r.cache.handle_timer(60.0)
    assert r.cache.get(IP) is None


def test_advertisement_without_override_only_demotes() -> None:
    r = Recorder()
    r.cache.resolve(IP, "p", 10, 0.0)
    r.cache.handle_advertisement(IP, MAC, 0.1, solicited=True, override=True)
    r.cache.handle_advertisement(IP, MAC2, 0.2, solicited=True, override=False)
    e = r.cache.get(IP)
    assert e.mac == MAC and e.state is NeighborState.STALE  # type: ignore[union-attr]
    r.cache.handle_advertisement(IP, MAC2, 0.3, solicited=False, override=True)
    assert e.mac == MAC2 and e.state is NeighborState.STALE  # type: ignore[union-attr]


def test_unsolicited_advertisement_for_unknown_neighbour_is_ignored() -> None:
    r = Recorder()
    r.cache.handle_advertisement(IP, MAC, 0.0, solicited=False, override=True)
    assert r.cache.get(IP) is None
    r.cache.handle_unsolicited(IP, MAC, 0.0, create=False)  # gratuitous ARP
    assert r.cache.get(IP) is None


def test_queue_is_bounded_dropping_oldest() -> None:
    r = Recorder(neigh_queue_bytes=250)
    for i in range(5):
        r.cache.resolve(IP, f"p{i}", 100, 0.0)
    assert r.drops == 3
    r.cache.handle_advertisement(IP, MAC, 0.1, solicited=True, override=True)
    assert r.resolved == ["p3", "p4"]


def test_permanent_entries_never_change() -> None:
    r = Recorder()
    r.cache.add_static(IP, MAC)
    r.cache.handle_unsolicited(IP, MAC2, 0.0)
    r.cache.handle_advertisement(IP, MAC2, 0.0, solicited=True, override=True)
    r.run(200)
    e = r.cache.get(IP)
    assert e.state is NeighborState.PERMANENT and e.mac == MAC  # type: ignore[union-attr]
    assert r.cache.next_deadline() is None


def test_table_is_bounded_evicting_least_recently_used() -> None:
    r = Recorder(neigh_max_entries=4)
    for i in range(4):
        r.cache.handle_unsolicited(ipaddress.ip_address(f"10.0.0.{10 + i}"), MAC, float(i))
    r.cache.resolve(ipaddress.ip_address("10.0.0.11"), "p", 10, 5.0)  # used: not the victim
    r.cache.handle_unsolicited(ipaddress.ip_address("10.0.0.99"), MAC, 6.0)
    assert len(r.cache.entries) == 4
    assert r.cache.get(ipaddress.ip_address("10.0.0.10")) is None  # least recently used
    assert r.cache.get(ipaddress.ip_address("10.0.0.11")) is not None
