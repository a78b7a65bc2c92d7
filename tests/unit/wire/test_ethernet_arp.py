"""Ethernet II (802.1Q tolerated) and ARP: fixed bytes, emit, truncation, scapy both ways."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netvisor.tcpip.errors import MalformedPacket, Truncated
from netvisor.tcpip.wire import arp, ethernet
from netvisor.tcpip.wire.arp import ArpRepr, ArpView
from netvisor.tcpip.wire.ethernet import EthernetRepr, EthernetView

from .strategies import macs, u16, v4

scapy = pytest.importorskip("scapy.all")

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def test_ethernet_fixed_bytes() -> None:
    raw = MAC_B + MAC_A + b"\x08\x00" + b"payload"
    v = EthernetView.checked(raw)
    assert (v.dst, v.src, v.ethertype, v.header_len, v.vlan_tags) == (
        MAC_B, MAC_A, ethernet.ETHERTYPE_IPV4, 14, ())
    assert bytes(v.payload) == b"payload"
    assert EthernetRepr.parse(v) == EthernetRepr(MAC_B, MAC_A, 0x0800)


def test_ethernet_vlan_tags_stripped() -> None:
    raw = MAC_B + MAC_A + b"\x88\xa8\x00\x64" + b"\x81\x00\x20\x0a" + b"\x86\xdd" + b"x"
    v = EthernetView.checked(raw)
    assert v.ethertype == ethernet.ETHERTYPE_IPV6
    assert v.header_len == 22
    assert v.vlan_tags == ((0x88A8, 100), (0x8100, 0x200A))
    assert bytes(v.payload) == b"x"
    r = EthernetRepr.parse(v)
    assert r.to_bytes(b"x") == raw


def test_ethernet_emit_writes_every_byte() -> None:
    r = EthernetRepr(MAC_B, MAC_A, 0x0806, ((0x8100, 5),))
    buf = bytearray(b"\xaa" * 20)
    assert r.emit(buf, 1) == 18
    assert buf == b"\xaa" + MAC_B + MAC_A + b"\x81\x00\x00\x05\x08\x06" + b"\xaa"


@pytest.mark.parametrize("raw", [
    b"", b"\x01" * 13,
    MAC_B + MAC_A + b"\x81\x00",              # tag announced, missing
    MAC_B + MAC_A + b"\x81\x00\x00\x01\x08",  # tag, then half an EtherType
])
def test_ethernet_truncated(raw: bytes) -> None:
    with pytest.raises(Truncated):
        EthernetView.checked(raw)


def test_ethernet_three_tags_refused() -> None:
    raw = MAC_B + MAC_A + b"\x81\x00\x00\x01" * 3 + b"\x08\x00"
    with pytest.raises(MalformedPacket):
        EthernetView.checked(raw)


def test_mac_helpers() -> None:
    assert ethernet.mac_from_str("02:00:00:00:00:01") == MAC_A
    assert ethernet.mac_to_str(MAC_A) == "02:00:00:00:00:01"
    with pytest.raises(ValueError):
        ethernet.mac_from_str("02:00")
    assert ethernet.ipv4_multicast_mac(ipaddress.IPv4Address("239.129.2.3")) == \
        bytes.fromhex("01005e010203")
    assert ethernet.ipv6_multicast_mac(ipaddress.IPv6Address("ff02::1:ff00:2")) == \
        bytes.fromhex("3333ff000002")
    assert ethernet.is_multicast_mac(ethernet.BROADCAST) and not ethernet.is_multicast_mac(MAC_A)


ether_reprs = st.builds(
    EthernetRepr, macs, macs, st.integers(0x0600, 0xFFFF).filter(lambda t: t not in (0x8100, 0x88A8)),
    st.lists(st.tuples(st.sampled_from([0x8100, 0x88A8]), u16), max_size=2).map(tuple))


@settings(max_examples=200, deadline=None)
@given(ether_reprs, st.binary(max_size=20))
def test_ethernet_round_trip(r: EthernetRepr, payload: bytes) -> None:
    raw = r.to_bytes(payload)
    v = EthernetView.checked(raw)
    assert EthernetRepr.parse(v) == r
    assert bytes(v.payload) == payload


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_ethernet_arbitrary_bytes(raw: bytes) -> None:
    try:
        EthernetRepr.parse(EthernetView.checked(raw))
    except MalformedPacket:
        pass


def test_ethernet_scapy_both_ways() -> None:
    pkt = scapy.Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01") / \
        scapy.Dot1Q(vlan=7, prio=3) / scapy.IP()
    r = EthernetRepr.parse(EthernetView.checked(bytes(pkt)))
    assert r.dst == MAC_B and r.src == MAC_A and r.ethertype == 0x0800
    assert r.vlan_tags == ((0x8100, (3 << 13) | 7),)
    ours = scapy.Ether(EthernetRepr(MAC_B, MAC_A, 0x86DD).to_bytes(bytes(scapy.IPv6())))
    assert ours.dst == "02:00:00:00:00:02" and ours.src == "02:00:00:00:00:01"
    assert ours.type == 0x86DD and ours.haslayer(scapy.IPv6)
    tagged = scapy.Ether(EthernetRepr(MAC_B, MAC_A, 0x0806, ((0x8100, (5 << 13) | 42),))
                         .to_bytes(bytes(scapy.ARP())))
    dot1q = tagged[scapy.Dot1Q]
    assert (tagged.type, dot1q.prio, dot1q.vlan, dot1q.type) == (0x8100, 5, 42, 0x0806)
    assert tagged.haslayer(scapy.ARP)


# -- ARP ----------------------------------------------------------------------------------

ARP_RAW = bytes.fromhex("0001 0800 06 04 0001") + MAC_A + bytes([10, 0, 0, 1]) + \
    b"\x00" * 6 + bytes([10, 0, 0, 2])


def test_arp_fixed_bytes() -> None:
    v = ArpView.checked(ARP_RAW)
    assert (v.htype, v.ptype, v.hlen, v.plen, v.operation) == (1, 0x0800, 6, 4, 1)
    r = ArpRepr.parse(v)
    assert r == ArpRepr(arp.OP_REQUEST, MAC_A, ipaddress.IPv4Address("10.0.0.1"),
                        b"\x00" * 6, ipaddress.IPv4Address("10.0.0.2"))


def test_arp_emit_writes_every_byte() -> None:
    r = ArpRepr.parse(ArpView.checked(ARP_RAW))
    buf = bytearray(b"\xaa" * 30)
    assert r.emit(buf, 2) == 28
    assert buf == b"\xaa\xaa" + ARP_RAW


@pytest.mark.parametrize("raw", [b"", ARP_RAW[:7], ARP_RAW[:27],
                                 bytes.fromhex("0001 0800 ff ff 0001") + b"\x00" * 20])
def test_arp_truncated(raw: bytes) -> None:
    with pytest.raises(Truncated):
        ArpView.checked(raw)


@pytest.mark.parametrize("patch", [(0, b"\x00\x06"), (2, b"\x86\xdd"), (4, b"\x08\x04")])
def test_arp_unsupported_types(patch: tuple[int, bytes]) -> None:
    pos, val = patch
    raw = bytearray(ARP_RAW + b"\x00" * 40)
    raw[pos:pos + len(val)] = val
    with pytest.raises(MalformedPacket):
        ArpRepr.parse(ArpView.checked(raw))


arp_reprs = st.builds(ArpRepr, u16, macs, v4, macs, v4)


@settings(max_examples=200, deadline=None)
@given(arp_reprs)
def test_arp_round_trip(r: ArpRepr) -> None:
    assert ArpRepr.parse(ArpView.checked(r.to_bytes())) == r


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_arp_arbitrary_bytes(raw: bytes) -> None:
    try:
        ArpRepr.parse(ArpView.checked(raw))
    except MalformedPacket:
        pass


@settings(max_examples=50, deadline=None)
@given(arp_reprs)
def test_arp_scapy_both_ways(r: ArpRepr) -> None:
    theirs = scapy.ARP(r.to_bytes())
    assert (theirs.op, theirs.hwsrc, theirs.psrc, theirs.hwdst, theirs.pdst) == (
        r.operation, ethernet.mac_to_str(r.sender_mac), str(r.sender_ip),
        ethernet.mac_to_str(r.target_mac), str(r.target_ip))
    built = scapy.ARP(op=r.operation, hwsrc=ethernet.mac_to_str(r.sender_mac),
                      psrc=str(r.sender_ip), hwdst=ethernet.mac_to_str(r.target_mac),
                      pdst=str(r.target_ip))
    assert ArpRepr.parse(ArpView.checked(bytes(built))) == r
