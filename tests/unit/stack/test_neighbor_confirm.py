"""Upper-layer reachability confirmation (RFC 4861 7.3.1; BUGS-H9 B2).

TCP forward progress (an ACK that advances SND.UNA) confirms the next hop,
as Linux ``tcp_ack`` -> ``dst_confirm_neigh`` -> ``neigh_confirm``: a busy
connection keeps its neighbour REACHABLE and never depends on winning an
ARP/NDP probe over a congested link.
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any

from netvisor.tcpip.config import StackConfig
from netvisor.tcpip.errors import NetError
from netvisor.tcpip.neighbor import NeighborState
from netvisor.tcpip.stack import Stack
from netvisor.tcpip.tcp.constants import AF_INET, AF_INET6, SOCK_STREAM
from tests.unit.stack.test_neighbor import IP, MAC, Recorder

ETH_P_ARP = b"\x08\x06"
ETH_P_IPV6 = b"\x86\xdd"


def test_confirm_makes_stale_delay_probe_reachable_and_extends_reachable() -> None:
    r = Recorder()
    r.cache.handle_unsolicited(IP, MAC, 0.0)
    e = r.cache.get(IP)
    assert e is not None and e.state is NeighborState.STALE
    r.cache.resolve(IP, "p", 10, 1.0)
    assert e.state is NeighborState.DELAY
    r.cache.confirm(IP, 2.0)
    assert e.state is NeighborState.REACHABLE and e.timer_at is not None
    first_expiry = e.timer_at
    # Confirmations while REACHABLE only record the time (cheap per ACK) ...
    r.cache.confirm(IP, first_expiry - 1.0)
    assert e.timer_at == first_expiry
    # ... and the expiry re-arms from them instead of going STALE (Linux neigh_timer_handler).
    r.cache.handle_timer(first_expiry)
    assert e.state is NeighborState.REACHABLE and e.timer_at > first_expiry
    # Without further confirmation it does go STALE.
    r.cache.handle_timer(e.timer_at)
    assert e.state is NeighborState.STALE
    assert r.solicits == []


def test_confirm_ignores_unresolved_failed_and_permanent_entries() -> None:
    r = Recorder()
    r.cache.resolve(IP, "p", 10, 0.0)  # INCOMPLETE, no MAC
    r.cache.confirm(IP, 0.1)
    assert r.cache.get(IP).state is NeighborState.INCOMPLETE  # type: ignore[union-attr]
    other = ipaddress.ip_address("10.0.0.9")
    r.cache.add_static(other, MAC)
    r.cache.confirm(other, 0.1)
    assert r.cache.get(other).state is NeighborState.PERMANENT  # type: ignore[union-attr]
    r.cache.confirm(ipaddress.ip_address("10.0.0.77"), 0.1)  # unknown: no entry made
    assert r.cache.get(ipaddress.ip_address("10.0.0.77")) is None


class Wire:
    """Two Stacks on one Ethernet segment; a filter can eat frames (a congested link)."""

    def __init__(self, v6: bool) -> None:
        self.stacks: list[Stack] = []
        self.nics: list[int] = []
        self.now = 0.0
        self.eat_resolution = False
        self.eaten = 0
        for i in (1, 2):
            cfg = StackConfig(rng=random.Random(i))
            cfg.dad_transmits = 0
            cfg.router_solicitations = 0
            st = Stack(cfg)
            st.now = 0.0
            nic = st.add_nic("eth0", bytes((2, 0, 0, 0, 0, i)), 1500)
            st.add_address(nic, ipaddress.ip_interface(f"10.0.0.{i}/24"))
            st.add_address(nic, ipaddress.ip_interface(f"fd00::{i}/64"))
            self.stacks.append(st)
            self.nics.append(nic)

    def _resolution(self, data: bytes) -> bool:
        et = data[12:14]
        if et == ETH_P_ARP:
            return True
        # ICMPv6 neighbour solicitation/advertisement (types 135/136).
        return et == ETH_P_IPV6 and data[20] == 58 and data[54] in (135, 136)

    def step(self, dt: float) -> None:
        until = self.now + dt
        while True:
            moved = False
            for i, st in enumerate(self.stacks):
                st.now = self.now
                st.handle_timer(self.now)
                for f in st.frames_to_send(self.nics[i]):
                    data = bytes(f.data)
                    if self.eat_resolution and self._resolution(data):
                        self.eaten += 1
                        continue
                    moved = True
                    other = self.stacks[1 - i]
                    other.now = self.now
                    other.handle_frame(self.nics[1 - i], type(f)(data), self.now)
            if moved:
                continue
            ds = [d for d in (st.next_deadline() for st in self.stacks) if d is not None]
            nxt = min(ds) if ds else None
            if nxt is None or nxt > until:
                break
            self.now = max(self.now, nxt)
        self.now = until
        for st in self.stacks:
            st.now = until


def _echo_session(v6: bool) -> tuple[Wire, list[Any]]:
    fam = AF_INET6 if v6 else AF_INET
    host = "fd00::2" if v6 else "10.0.0.2"
    w = Wire(v6)
    a, b = w.stacks
    ls = b.socket(fam, SOCK_STREAM, 0)
    ls.bind((host, 7))
    ls.listen(4)
    c = a.socket(fam, SOCK_STREAM, 0)
    try:
        c.connect((host, 7))
    except NetError:
        pass
    w.step(0.05)
    s, _ = ls.accept()
    # From now on every ARP/NDP frame is lost, as on the congested TAP of B2.
    w.eat_resolution = True
    got = bytearray()
    for _ in range(120):  # one small exchange per second for two minutes
        c.send(b"x" * 100)
        w.step(0.5)
        try:
            s.send(s.recv(1000))
        except NetError:
            pass
        w.step(0.5)
        try:
            got += c.recv(1000)
        except NetError:
            pass
    return w, [got]


def test_tcp_progress_keeps_the_neighbour_reachable_ipv4() -> None:
    w, (got,) = _echo_session(v6=False)
    assert bytes(got) == b"x" * 100 * 120
    for st, peer in zip(w.stacks, ("10.0.0.2", "10.0.0.1")):
        nic = st.nics[w.nics[0]]
        e = nic.arp.get(ipaddress.ip_address(peer))  # type: ignore[union-attr]
        assert e is not None and e.state is NeighborState.REACHABLE
        snap = st.counters.snapshot()
        assert snap.get("drop.neighbor_failed", 0) == 0
    assert w.eaten == 0  # nobody even had to probe


def test_tcp_progress_keeps_the_neighbour_reachable_ipv6() -> None:
    w, (got,) = _echo_session(v6=True)
    assert bytes(got) == b"x" * 100 * 120
    for st, peer in zip(w.stacks, ("fd00::2", "fd00::1")):
        nic = st.nics[w.nics[0]]
        e = nic.ndp.get(ipaddress.ip_address(peer))  # type: ignore[union-attr]
        assert e is not None and e.state is NeighborState.REACHABLE
    assert w.eaten == 0
