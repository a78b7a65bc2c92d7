"""Routing table (longest prefix, metrics, expiry) and source address selection."""

from __future__ import annotations

import errno
import ipaddress

import pytest

from netvisor.tcpip.errors import NetError
from netvisor.tcpip.nic import AddrState
from netvisor.tcpip.route import RouteEntry, RoutingTable

from .helpers import make_stack

ip = ipaddress.ip_address
net = ipaddress.ip_network


def test_longest_prefix_wins_then_metric() -> None:
    t = RoutingTable()
    t.add(RouteEntry(net("0.0.0.0/0"), 2, gateway=ip("10.0.0.1")))
    t.add(RouteEntry(net("10.0.0.0/8"), 3, gateway=ip("10.0.0.9"), metric=10))
    t.add(RouteEntry(net("10.1.0.0/16"), 4, metric=100))
    t.add(RouteEntry(net("10.1.0.0/16"), 5, metric=5))
    assert t.lookup(ip("8.8.8.8")).nic_id == 2  # type: ignore[union-attr]
    assert t.lookup(ip("10.2.0.1")).nic_id == 3  # type: ignore[union-attr]
    assert t.lookup(ip("10.1.2.3")).nic_id == 5  # lower metric among equal prefixes
    assert t.lookup(ip("10.1.2.3"), nic_id=4).nic_id == 4  # type: ignore[union-attr]
    assert t.lookup(ip("fd00::1")) is None  # other family never matches


def test_equal_routes_first_added_wins_and_replace() -> None:
    t = RoutingTable()
    t.add(RouteEntry(net("0.0.0.0/0"), 2, gateway=ip("10.0.0.1")))
    t.add(RouteEntry(net("0.0.0.0/0"), 3, gateway=ip("10.0.0.2")))
    assert t.lookup(ip("1.1.1.1")).nic_id == 2  # type: ignore[union-attr]
    assert t.remove(net("0.0.0.0/0"), nic_id=2) == 1
    assert t.lookup(ip("1.1.1.1")).nic_id == 3  # type: ignore[union-attr]


def test_expired_routes_are_ignored_and_removed() -> None:
    t = RoutingTable()
    t.add(RouteEntry(net("::/0"), 2, gateway=ip("fe80::1"), expires_at=30.0))
    assert t.lookup(ip("2001:db8::1"), now=29.9) is not None
    assert t.lookup(ip("2001:db8::1"), now=30.0) is None
    assert t.next_deadline() == 30.0
    assert len(t.expire(30.0)) == 1 and len(t) == 0


def test_stack_route_on_link_gateway_and_unreachable() -> None:
    s, nic = make_stack()
    r = s.route(ip("10.0.0.7"))
    assert (r.src, r.next_hop, r.nic_id, r.mtu) == (ip("10.0.0.2"), None, nic, 1500)
    with pytest.raises(NetError) as e:
        s.route(ip("192.0.2.1"))
    assert e.value.errno == errno.ENETUNREACH
    s.add_route("0.0.0.0/0", gateway="10.0.0.1")
    r = s.route(ip("192.0.2.1"))
    assert r.next_hop == ip("10.0.0.1") and r.nic_id == nic
    with pytest.raises(NetError):
        s.add_route("0.0.0.0/0", gateway="192.168.5.1")  # gateway not on-link


def test_local_destinations_route_via_loopback() -> None:
    s, _ = make_stack()
    for dst in ("127.0.0.1", "127.3.4.5", "10.0.0.2", "::1", "fd00::2"):
        r = s.route(ip(dst))
        assert r.nic_id == 1 and r.next_hop is None
    assert s.route(ip("10.0.0.2")).src == ip("10.0.0.2")
    assert s.route(ip("127.0.0.1")).src == ip("127.0.0.1")


def test_ipv4_source_prefers_address_in_the_destination_subnet() -> None:
    s, nic = make_stack()
    s.add_address(nic, ipaddress.ip_interface("192.168.7.5/24"))
    assert s.route(ip("192.168.7.9")).src == ip("192.168.7.5")
    assert s.route(ip("10.0.0.9")).src == ip("10.0.0.2")


def test_ipv6_source_selection_rfc6724() -> None:
    s, nic = make_stack()
    s.add_address(nic, ipaddress.ip_interface("2001:db8:1::5/64"))
    s.add_route("::/0", gateway="fe80::1", nic_id=nic)
    # Rule 2 (scope): link-local destination -> link-local source.
    ll = s.route(ip("fe80::9"), bound_nic=nic).src
    assert ll.is_link_local  # type: ignore[union-attr]
    # Rule 8 (longest matching prefix) among global addresses.
    assert s.route(ip("2001:db8:1:ffff::1")).src == ip("2001:db8:1::5")
    assert s.route(ip("fd00:0:0:1::1")).src == ip("fd00::2")
    # Rule 3: avoid deprecated addresses.
    s.nics[nic].v6_addr(ip("2001:db8:1::5")).state = AddrState.DEPRECATED  # type: ignore[union-attr]
    assert s.route(ip("2001:db8:1:ffff::1")).src == ip("fd00::2")


def test_tentative_addresses_are_never_sources() -> None:
    s, nic = make_stack(dad=True)
    s.add_address(nic, ipaddress.ip_interface("2001:db8::5/64"))
    assert s.is_tentative(ip("2001:db8::5"))
    assert s.route(ip("2001:db8::9")).src != ip("2001:db8::5")
