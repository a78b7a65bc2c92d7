"""Arbitrary input never escapes handle_frame and never hits an internal error."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP  # type: ignore[import-untyped]
from scapy.layers.inet6 import (  # type: ignore[import-untyped]
    ICMPv6DestUnreach,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    IPv6,
    IPv6ExtHdrFragment,
)
from scapy.layers.l2 import ARP, Ether  # type: ignore[import-untyped]
from scapy.packet import fuzz  # type: ignore[import-untyped]

from netvisor.frame import Frame
from netvisor.tcpip.counters import DropReason

from .helpers import OUR4, OUR6, OUR_MAC, PEER_MAC, make_stack

HDR = bytes.fromhex(OUR_MAC.replace(":", "")) + bytes.fromhex(PEER_MAC.replace(":", ""))


@settings(max_examples=300, deadline=None)
@given(ethertype=st.sampled_from([0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8]),
       body=st.binary(max_size=300), csum_valid=st.booleans())
def test_random_bytes_are_counted_never_raised(ethertype: int, body: bytes,
                                               csum_valid: bool) -> None:
    s, nic = make_stack()
    s.handle_frame(nic, Frame(HDR + ethertype.to_bytes(2, "big") + body, csum_valid=csum_valid),
                   0.0)
    s.handle_timer(0.0)
    assert DropReason.INTERNAL_ERROR not in s.counters.drops


def test_scapy_fuzz_templates() -> None:
    s, nic = make_stack()
    E = Ether(dst=OUR_MAC, src=PEER_MAC)
    templates = [
        E / fuzz(IP(dst=OUR4) / ICMP()), E / fuzz(IP(dst=OUR4) / UDP()),
        E / fuzz(IP(dst=OUR4) / TCP()), E / IP(dst=OUR4) / fuzz(ICMP(type=3) / IP() / UDP()),
        E / fuzz(ARP(pdst=OUR4)), E / fuzz(IPv6(dst=OUR6) / UDP()),
        E / IPv6(dst=OUR6, hlim=255) / fuzz(ICMPv6ND_NS(tgt=OUR6)),
        E / IPv6(dst=OUR6, hlim=255) / fuzz(ICMPv6ND_NA()),
        E / IPv6(src="fe80::1", dst="ff02::1", hlim=255) / fuzz(ICMPv6ND_RA()),
        E / IPv6(dst=OUR6) / fuzz(IPv6ExtHdrFragment() / UDP()),
        E / IPv6(dst=OUR6) / fuzz(ICMPv6DestUnreach() / IPv6(src=OUR6) / UDP()),
    ]
    for i in range(40):
        for t in templates:
            s.handle_frame(nic, Frame(bytes(t)), i * 0.5)
        s.handle_timer(i * 0.5)
    s.handle_timer(100.0)
    assert DropReason.INTERNAL_ERROR not in s.counters.drops
    assert s.counters.total_drops > 100
