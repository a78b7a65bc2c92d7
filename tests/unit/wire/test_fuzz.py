"""Arbitrary bytes through every parser: a repr or MalformedPacket, nothing else.

Besides each module's own arbitrary-bytes test, this walks whole frames the
way the network layer does (Ethernet -> ARP/IPv4/IPv6 -> extension headers
-> ICMP/NDP/MLD/IGMP/UDP), starting from valid frames with bytes flipped, so
the deeper parsers see plausible input rather than noise.
"""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from netvisor.tcpip.errors import MalformedPacket
from netvisor.tcpip.wire import (
    arp,
    ethernet,
    icmpv4,
    icmpv6,
    igmp,
    ipv4,
    ipv6,
    ipv6ext,
    mld,
    ndp,
    udp,
)
from netvisor.tcpip.wire.ip import IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_IGMP, IPPROTO_UDP

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
A4, B4 = ipaddress.IPv4Address("10.0.0.1"), ipaddress.IPv4Address("10.0.0.2")
A6, B6 = ipaddress.IPv6Address("fe80::1"), ipaddress.IPv6Address("ff02::1:ff00:2")


def dissect(frame: bytes, ck: bool = True) -> list[object]:
    """Parse as deep as the headers go; ``ck``: verify checksums. Returns the reprs."""
    out: list[object] = []
    eth = ethernet.EthernetView.checked(frame)
    out.append(ethernet.EthernetRepr.parse(eth))
    if eth.ethertype == ethernet.ETHERTYPE_ARP:
        out.append(arp.ArpRepr.parse(arp.ArpView.checked(eth.payload)))
    elif eth.ethertype == ethernet.ETHERTYPE_IPV4:
        v4 = ipv4.IPv4View.checked(eth.payload)
        r4 = ipv4.IPv4Repr.parse(v4, verify_checksum=ck)
        out.append(r4)
        if r4.options:
            out.append(ipv4.parse_options(r4.options))
        if r4.protocol == IPPROTO_UDP:
            out.append(udp.UdpRepr.parse(udp.UdpView.checked(v4.payload), src=r4.src, dst=r4.dst,
                                        verify_checksum=ck))
        elif r4.protocol == IPPROTO_ICMP:
            out.append(icmpv4.Icmpv4Repr.parse(icmpv4.Icmpv4View.checked(v4.payload),
                                                verify_checksum=ck))
        elif r4.protocol == IPPROTO_IGMP:
            out.append(igmp.parse_igmp(igmp.IgmpView.checked(v4.payload), verify_checksum=ck))
    elif eth.ethertype == ethernet.ETHERTYPE_IPV6:
        v6 = ipv6.IPv6View.checked(eth.payload)
        r6 = ipv6.IPv6Repr.parse(v6)
        out.append(r6)
        chain = ipv6ext.parse_chain(r6.next_header, v6.payload)
        out.append(chain)
        upper = v6.payload[chain.upper_offset:]
        if chain.fragment is None and chain.upper_protocol == IPPROTO_UDP:
            out.append(udp.UdpRepr.parse(udp.UdpView.checked(upper), src=r6.src, dst=r6.dst,
                                        verify_checksum=ck))
        elif chain.fragment is None and chain.upper_protocol == IPPROTO_ICMPV6:
            view = icmpv6.Icmpv6View.checked(upper)
            if view.type in ndp.NDP_TYPES:
                out.append(ndp.parse_ndp(view, src=r6.src, dst=r6.dst, verify_checksum=ck))
            elif view.type in mld.MLD_TYPES:
                out.append(mld.parse_mld(view, src=r6.src, dst=r6.dst, verify_checksum=ck))
            else:
                out.append(icmpv6.Icmpv6Repr.parse(view, src=r6.src, dst=r6.dst,
                                                        verify_checksum=ck))
    return out


def _eth(ethertype: int, payload: bytes) -> bytes:
    return ethernet.EthernetRepr(MAC_B, MAC_A, ethertype).to_bytes(payload)


def _v4(proto: int, body: bytes, options: bytes = b"") -> bytes:
    return _eth(0x0800, ipv4.IPv4Repr(A4, B4, proto, len(body), options=options).to_bytes(body))


def _v6(nh: int, body: bytes) -> bytes:
    return _eth(0x86DD, ipv6.IPv6Repr(A6, B6, nh, len(body), hop_limit=255).to_bytes(body))


SEEDS = [
    _eth(0x0806, arp.ArpRepr(1, MAC_A, A4, bytes(6), B4).to_bytes()),
    _v4(IPPROTO_UDP, udp.UdpRepr(1, 2, 3).to_bytes(b"abc", src=A4, dst=B4),
        options=ipv4.build_options([(ipv4.OPT_RA, b"\x00\x00")])),
    _v4(IPPROTO_ICMP, icmpv4.Icmpv4Repr.echo_request(1, 2, b"ping").to_bytes()),
    _v4(IPPROTO_IGMP, igmp.IgmpV3Report((igmp.IgmpRecord(4, ipaddress.IPv4Address("239.1.1.1"),
                                                         (A4,)),)).to_bytes()),
    _v6(IPPROTO_ICMPV6, ndp.NeighborSolicit(ipaddress.IPv6Address("fe80::2"), ndp.NdpOptions(
        source_ll=MAC_A, unknown=(ndp.NdpOption(14, b"\x01" * 6),))).to_bytes(src=A6, dst=B6)),
    _v6(IPPROTO_ICMPV6, ndp.RouterAdvert(64, options=ndp.NdpOptions(
        mtu=1500, prefixes=(ndp.NdpPrefixInfo(ipaddress.IPv6Address("2001:db8::"), 64, True, True,
                                              100, 50),))).to_bytes(src=A6, dst=B6)),
    _v6(0, ipv6ext.HopByHopRepr(IPPROTO_ICMPV6, (ipv6ext.Ipv6Option(5, b"\x00\x00"),)).to_bytes()
        + mld.MldV2Report((mld.MldRecord(4, ipaddress.IPv6Address("ff02::fb"), (A6,)),)).to_bytes(
            src=A6, dst=B6)),
    _v6(60, ipv6ext.DestOptsRepr(44, (ipv6ext.Ipv6Option(0x9E, b"xy"),)).to_bytes()
        + ipv6ext.FragmentRepr(17, 0, True, 7).to_bytes() + b"\x00" * 16),
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)),
                                        max_size=4), st.just(0) | st.integers(1, 40))
def test_mutated_frames(seed: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    frame = bytearray(seed)
    for pos, val in flips:
        if pos < len(frame):
            frame[pos] = val
    del frame[len(frame) - min(cut, len(frame)):]   # cut the tail: lengths now lie
    for ck in (True, False):   # without checksums the deeper parsers see the damage
        try:
            dissect(bytes(frame), ck)
        except MalformedPacket:
            pass


def test_seeds_dissect_fully() -> None:
    for seed in SEEDS:
        layers = dissect(seed)
        assert len(layers) >= 2, layers


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=48))
def test_option_parsers(raw: bytes) -> None:
    for parse in (ipv4.parse_options, ipv6ext.parse_options, ndp.NdpOptions.parse):
        try:
            parse(raw)
        except MalformedPacket:
            pass
