"""Neighbour discovery: ARP (RFC 826, RFC 5227 gratuitous ARP) and NDP (RFC 4861, RFC 4862 DAD).

Each case uses its own TB address (one the DUT has no neighbour entry for and
the testbench responder does not answer), so resolution is visible on the wire.
"""

from __future__ import annotations

import itertools
import os
import socket
import time

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    in6_getnsma,
    in6_getnsmac,
)
from scapy.layers.l2 import ARP, Ether

from tests.conformance.testbench import ExpectError

_host = itertools.count(20 + os.getpid() % 100)
MAC2 = "02:4e:56:58:00:22"
MAC3 = "02:4e:56:58:00:33"
TB_PORT = 41000


def fresh_tb_addr(family: int) -> str:
    """A TB address unique to this case (no stale neighbour state on the DUT)."""
    n = next(_host) % 200 + 20
    return f"10.247.0.{n}" if family == 4 else f"fd00:4e56:5800::{n:x}"


def _solicited_node(addr: str) -> tuple[str, str]:
    raw = socket.inet_pton(socket.AF_INET6, addr)
    return socket.inet_ntop(socket.AF_INET6, in6_getnsma(raw)), in6_getnsmac(in6_getnsma(raw))


def _udp_from_dut(tb, family, dst_ip, payload, timeout=1.0):
    def m(p):
        ipl = IP if family == 4 else IPv6
        return ipl in p and UDP in p and p[ipl].dst == dst_ip and bytes(p[UDP].payload) == payload
    return tb.expect(m, timeout, f"UDP to {dst_ip} with {payload!r}")


# ----------------------------------------------------------------------- ARP

def test_arp_request_answered(tb, dut):
    """An ARP request for the DUT's address gets a unicast reply with its MAC."""
    me = fresh_tb_addr(4)
    tb.send(Ether(src=MAC2, dst="ff:ff:ff:ff:ff:ff")
            / ARP(op=1, hwsrc=MAC2, psrc=me, hwdst="00:00:00:00:00:00", pdst=tb.topo.dut_ip4))
    p = tb.expect(lambda p: ARP in p and p[ARP].op == 2 and p[ARP].pdst == me, desc="ARP reply")
    assert p[ARP].hwsrc == tb.topo.dut_mac and p[ARP].psrc == tb.topo.dut_ip4
    assert p[ARP].hwdst == MAC2 and p[Ether].dst == MAC2


def test_arp_request_for_other_address_ignored(tb, dut):
    """An ARP request for an address the DUT does not own gets no reply."""
    me = fresh_tb_addr(4)
    tb.send(Ether(src=MAC2, dst="ff:ff:ff:ff:ff:ff")
            / ARP(op=1, hwsrc=MAC2, psrc=me, pdst="10.247.0.250"))
    tb.expect_none(lambda p: ARP in p and p[ARP].op == 2, 0.5, "ARP reply")


def _resolve_v4(tb, dut, target, mac):
    fd, port = dut.udp_socket(4)
    dut.sendto(fd, b"first", (target, TB_PORT))
    req = tb.expect(lambda p: ARP in p and p[ARP].op == 1 and p[ARP].pdst == target,
                    desc=f"ARP request for {target}")
    assert req[Ether].dst == "ff:ff:ff:ff:ff:ff"
    assert req[ARP].psrc == tb.topo.dut_ip4 and req[ARP].hwsrc == tb.topo.dut_mac
    tb.send(Ether(src=mac, dst=tb.topo.dut_mac)
            / ARP(op=2, hwsrc=mac, psrc=target, hwdst=tb.topo.dut_mac, pdst=tb.topo.dut_ip4))
    p = _udp_from_dut(tb, 4, target, b"first")  # queued during resolution
    assert p[Ether].dst == mac
    return fd


def test_arp_resolution_by_dut(tb, dut):
    """Sending to an unresolved neighbour broadcasts a request; the reply's MAC is used."""
    _resolve_v4(tb, dut, fresh_tb_addr(4), MAC2)


def test_gratuitous_arp_updates_entry(tb, dut):
    """A gratuitous ARP (RFC 5227 3) with a new MAC updates the DUT's entry."""
    target = fresh_tb_addr(4)
    fd = _resolve_v4(tb, dut, target, MAC2)
    tb.send(Ether(src=MAC3, dst="ff:ff:ff:ff:ff:ff")
            / ARP(op=1, hwsrc=MAC3, psrc=target, hwdst="00:00:00:00:00:00", pdst=target))
    time.sleep(0.1)
    dut.sendto(fd, b"second", (target, TB_PORT))
    p = _udp_from_dut(tb, 4, target, b"second")
    assert p[Ether].dst == MAC3


def test_unanswered_arp_retried_then_fails(tb, dut):
    """Unanswered resolution is retried (RFC 1122 2.3.2.1), not sent to a guessed MAC."""
    target = fresh_tb_addr(4)
    fd, port = dut.udp_socket(4)
    dut.sendto(fd, b"lost", (target, TB_PORT))
    first = tb.expect(lambda p: ARP in p and p[ARP].op == 1 and p[ARP].pdst == target)
    second = tb.expect(lambda p: ARP in p and p[ARP].op == 1 and p[ARP].pdst == target, 2.0)
    assert 0.3 <= second.time - first.time <= 1.8


# ----------------------------------------------------------------------- NDP

def test_ns_answered_with_na(tb, dut):
    """A neighbour solicitation for the DUT's address gets a solicited NA (RFC 4861 7.2.4)."""
    me = fresh_tb_addr(6)
    group, gmac = _solicited_node(tb.topo.dut_ip6)
    tb.send(Ether(src=MAC2, dst=gmac) / IPv6(src=me, dst=group, hlim=255)
            / ICMPv6ND_NS(tgt=tb.topo.dut_ip6) / ICMPv6NDOptSrcLLAddr(lladdr=MAC2))
    p = tb.expect(lambda p: ICMPv6ND_NA in p and p[IPv6].dst == me, desc="neighbour advertisement")
    na = p[ICMPv6ND_NA]
    assert na.tgt == tb.topo.dut_ip6 and na.S == 1 and na.O == 1 and p[IPv6].hlim == 255
    assert p[ICMPv6NDOptDstLLAddr].lladdr == tb.topo.dut_mac
    assert p[Ether].dst == MAC2


def test_ns_with_bad_hop_limit_ignored(tb, dut):
    """A solicitation with a hop limit other than 255 is silently dropped (RFC 4861 7.1.1)."""
    me = fresh_tb_addr(6)
    group, gmac = _solicited_node(tb.topo.dut_ip6)
    tb.send(Ether(src=MAC2, dst=gmac) / IPv6(src=me, dst=group, hlim=64)
            / ICMPv6ND_NS(tgt=tb.topo.dut_ip6) / ICMPv6NDOptSrcLLAddr(lladdr=MAC2))
    tb.expect_none(lambda p: ICMPv6ND_NA in p and p[IPv6].dst == me, 0.5, "NA")


def test_dad_probe_defended(tb, dut):
    """A DAD probe (NS from ::) for the DUT's address is answered to all-nodes, S=0 (RFC 4862 5.4.3)."""
    group, gmac = _solicited_node(tb.topo.dut_ip6)
    tb.send(Ether(src=MAC2, dst=gmac) / IPv6(src="::", dst=group, hlim=255)
            / ICMPv6ND_NS(tgt=tb.topo.dut_ip6))
    p = tb.expect(lambda p: ICMPv6ND_NA in p and p[ICMPv6ND_NA].tgt == tb.topo.dut_ip6
                  and p[IPv6].dst == "ff02::1", desc="NA to all-nodes")
    assert p[ICMPv6ND_NA].S == 0 and p[Ether].dst == "33:33:00:00:00:01"


def _resolve_v6(tb, dut, target, mac):
    fd, port = dut.udp_socket(6)
    dut.sendto(fd, b"first", (target, TB_PORT, 0, 0))
    group, gmac = _solicited_node(target)
    ns = tb.expect(lambda p: ICMPv6ND_NS in p and p[ICMPv6ND_NS].tgt == target,
                   desc=f"NS for {target}")
    assert ns[IPv6].dst == group and ns[Ether].dst == gmac and ns[IPv6].hlim == 255
    assert ns[ICMPv6NDOptSrcLLAddr].lladdr == tb.topo.dut_mac
    tb.send(Ether(src=mac, dst=tb.topo.dut_mac) / IPv6(src=target, dst=ns[IPv6].src, hlim=255)
            / ICMPv6ND_NA(tgt=target, R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=mac))
    p = _udp_from_dut(tb, 6, target, b"first")
    assert p[Ether].dst == mac
    return fd


def test_ndp_resolution_by_dut(tb, dut):
    """Sending to an unresolved IPv6 neighbour multicasts an NS to its solicited-node group."""
    _resolve_v6(tb, dut, fresh_tb_addr(6), MAC2)


def test_unsolicited_na_override_updates_entry(tb, dut):
    """An unsolicited NA with O=1 and a new link-layer address updates the entry (RFC 4861 7.2.5)."""
    target = fresh_tb_addr(6)
    fd = _resolve_v6(tb, dut, target, MAC2)
    tb.send(Ether(src=MAC3, dst="33:33:00:00:00:01") / IPv6(src=target, dst="ff02::1", hlim=255)
            / ICMPv6ND_NA(tgt=target, R=0, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=MAC3))
    time.sleep(0.1)
    dut.sendto(fd, b"second", (target, TB_PORT, 0, 0))
    p = _udp_from_dut(tb, 6, target, b"second")
    assert p[Ether].dst == MAC3


def test_unsolicited_na_without_override_keeps_entry(tb, dut):
    """An unsolicited NA with O=0 does not replace a known link-layer address (RFC 4861 7.2.5)."""
    target = fresh_tb_addr(6)
    fd = _resolve_v6(tb, dut, target, MAC2)
    tb.send(Ether(src=MAC3, dst="33:33:00:00:00:01") / IPv6(src=target, dst="ff02::1", hlim=255)
            / ICMPv6ND_NA(tgt=target, R=0, S=0, O=0) / ICMPv6NDOptDstLLAddr(lladdr=MAC3))
    time.sleep(0.1)
    dut.sendto(fd, b"second", (target, TB_PORT, 0, 0))
    p = _udp_from_dut(tb, 6, target, b"second")
    assert p[Ether].dst == MAC2


@pytest.mark.parametrize("family", [4, 6], ids=["v4", "v6"])
def test_neighbour_learned_from_solicitation(tb, dut, family):
    """A solicitation creates an entry for its sender: the DUT then sends to it without asking."""
    me = fresh_tb_addr(family)
    if family == 4:
        tb.send(Ether(src=MAC2, dst="ff:ff:ff:ff:ff:ff")
                / ARP(op=1, hwsrc=MAC2, psrc=me, pdst=tb.topo.dut_ip4))
        tb.expect(lambda p: ARP in p and p[ARP].op == 2 and p[ARP].pdst == me, desc="ARP reply")
        fd, _ = dut.udp_socket(4)
        dut.sendto(fd, b"direct", (me, TB_PORT))
    else:
        group, gmac = _solicited_node(tb.topo.dut_ip6)
        tb.send(Ether(src=MAC2, dst=gmac) / IPv6(src=me, dst=group, hlim=255)
                / ICMPv6ND_NS(tgt=tb.topo.dut_ip6) / ICMPv6NDOptSrcLLAddr(lladdr=MAC2))
        tb.expect(lambda p: ICMPv6ND_NA in p and p[IPv6].dst == me, desc="NA")
        fd, _ = dut.udp_socket(6)
        dut.sendto(fd, b"direct", (me, TB_PORT, 0, 0))
    p = _udp_from_dut(tb, family, me, b"direct")
    assert p[Ether].dst == MAC2


def test_arp_probe_for_dut_address_answered(tb, dut):
    """An ARP probe (sender IP 0.0.0.0, RFC 5227 2.1.1) for the DUT's address is answered."""
    tb.send(Ether(src=MAC2, dst="ff:ff:ff:ff:ff:ff")
            / ARP(op=1, hwsrc=MAC2, psrc="0.0.0.0", hwdst="00:00:00:00:00:00",
                  pdst=tb.topo.dut_ip4))
    p = tb.expect(lambda p: ARP in p and p[ARP].op == 2 and p[ARP].psrc == tb.topo.dut_ip4,
                  desc="ARP reply defending the address")
    assert p[ARP].hwsrc == tb.topo.dut_mac


def test_ns_for_link_local_answered(tb, dut):
    """A solicitation for the DUT's link-local address (EUI-64 of its MAC) gets an NA."""
    mac = bytes.fromhex(tb.topo.dut_mac.replace(":", ""))
    eui = bytes([mac[0] ^ 2]) + mac[1:3] + b"\xff\xfe" + mac[3:]
    ll = socket.inet_ntop(socket.AF_INET6, b"\xfe\x80" + b"\0" * 6 + eui)
    me = "fe80::4e56:58ff:fe00:22"
    group, gmac = _solicited_node(ll)
    ns = (Ether(src=MAC2, dst=gmac) / IPv6(src=me, dst=group, hlim=255)
          / ICMPv6ND_NS(tgt=ll) / ICMPv6NDOptSrcLLAddr(lladdr=MAC2))
    # A DUT that has just started may still be running DAD on its link-local
    # address (RFC 4862 5.4, about 1 s) and must not answer for it yet: retry.
    for _ in range(6):
        tb.send(ns)
        try:
            p = tb.expect(lambda p: ICMPv6ND_NA in p and p[ICMPv6ND_NA].tgt == ll, 0.5,
                          "NA for link-local")
            break
        except ExpectError:
            continue
    else:
        raise ExpectError(f"no NA for {ll} within 3 s; pcap: {tb.pcap_path}")
    assert p[ICMPv6NDOptDstLLAddr].lladdr == tb.topo.dut_mac and p[ICMPv6ND_NA].S == 1
