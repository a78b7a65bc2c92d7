"""IPv6 fixed header and extension headers: fixed bytes, emit, lying lengths, scapy both ways."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netvisor.tcpip.errors import MalformedPacket, Truncated
from netvisor.tcpip.wire import ipv6ext as X
from netvisor.tcpip.wire.ip import (
    IPPROTO_DSTOPTS,
    IPPROTO_FRAGMENT,
    IPPROTO_HOPOPTS,
    IPPROTO_ICMPV6,
    IPPROTO_NONE,
    IPPROTO_ROUTING,
    IPPROTO_TCP,
    IPPROTO_UDP,
)
from netvisor.tcpip.wire.ipv6 import IPv6Repr, IPv6View

from .strategies import aligned_bytes, ipv6_options, u8, v6

scapy = pytest.importorskip("scapy.all")

A = ipaddress.IPv6Address("2001:db8::1")
B = ipaddress.IPv6Address("ff02::1")

IPV6_RAW = bytes.fromhex("6ab12345 0004 11 40") + A.packed + B.packed + b"abcd"


def test_ipv6_fixed_bytes_every_field() -> None:
    v = IPv6View.checked(IPV6_RAW + b"\x00" * 8)  # padding after the payload length is ignored
    assert (v.version, v.traffic_class, v.flow_label, v.payload_len, v.next_header,
            v.hop_limit, v.src, v.dst) == (6, 0xAB, 0x12345, 4, 17, 64, A, B)
    assert bytes(v.payload) == b"abcd"
    assert IPv6Repr.parse(v) == IPv6Repr(A, B, 17, 4, 64, 0xAB, 0x12345)


def test_ipv6_emit_writes_every_byte() -> None:
    r = IPv6Repr.parse(IPv6View.checked(IPV6_RAW))
    buf = bytearray(b"\xaa" * 42)
    assert r.emit(buf, 1) == 40
    assert buf[1:41] == IPV6_RAW[:40] and buf[0] == buf[41] == 0xAA


@pytest.mark.parametrize("raw", [b"", IPV6_RAW[:39], IPV6_RAW[:43]])
def test_ipv6_lying_lengths(raw: bytes) -> None:
    with pytest.raises(Truncated):
        IPv6View.checked(raw)


def test_ipv6_truncated_quote_allowed_and_bad_version() -> None:
    v = IPv6View.checked(IPV6_RAW[:42], allow_truncated=True)
    assert v.truncated and bytes(v.payload) == b"ab"
    bad = bytearray(IPV6_RAW)
    bad[0] = 0x4A
    with pytest.raises(MalformedPacket):
        IPv6Repr.parse(IPv6View.checked(bad))


ipv6_reprs = st.builds(IPv6Repr, v6, v6, u8, st.integers(0, 300), u8, u8,
                       st.integers(0, 0xFFFFF))


@settings(max_examples=200, deadline=None)
@given(ipv6_reprs)
def test_ipv6_round_trip(r: IPv6Repr) -> None:
    assert IPv6Repr.parse(IPv6View.checked(r.to_bytes(b"z" * r.payload_len))) == r


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60))
def test_ipv6_arbitrary_bytes(raw: bytes) -> None:
    try:
        IPv6Repr.parse(IPv6View.checked(raw))
    except MalformedPacket:
        pass


@settings(max_examples=50, deadline=None)
@given(ipv6_reprs)
def test_ipv6_scapy_both_ways(r: IPv6Repr) -> None:
    p = scapy.IPv6(r.to_bytes(b"z" * r.payload_len))
    assert (p.version, p.tc, p.fl, p.plen, p.nh, p.hlim) == (
        6, r.traffic_class, r.flow_label, r.payload_len, r.next_header, r.hop_limit)
    assert (ipaddress.IPv6Address(p.src), ipaddress.IPv6Address(p.dst)) == (r.src, r.dst)
    built = scapy.IPv6(src=str(r.src), dst=str(r.dst), nh=r.next_header, hlim=r.hop_limit,
                       tc=r.traffic_class, fl=r.flow_label) / scapy.Raw(b"z" * r.payload_len)
    assert IPv6Repr.parse(IPv6View.checked(bytes(built))) == r


# -- options and extension headers ----------------------------------------------------------

def test_options_fixed_bytes_with_padding_and_actions() -> None:
    # HBH: next=UDP, len 1 (16 bytes): Pad1, Router Alert, PadN(1), unknown 0x9e (action 2)
    # with 2 bytes, PadN(0).
    raw = bytes.fromhex("1101" "00" "05020000" "0101" "00" "9e02abcd" "0100")
    v = X.ExtHeaderView.checked(raw + b"rest")
    assert (v.next_header, v.header_len) == (17, 16)
    assert bytes(v.payload) == b"rest"
    r = X.HopByHopRepr.parse(v)
    assert r.next_header == 17
    assert r.options == (X.Ipv6Option(5, b"\x00\x00"), X.Ipv6Option(0x9E, b"\xab\xcd"))
    assert [o.offset for o in r.options] == [3, 10]
    unknown = r.options[1]
    assert unknown.action == X.ACTION_DISCARD_ICMP and not unknown.may_change
    assert X.Ipv6Option(0x3E).action == X.ACTION_SKIP and X.Ipv6Option(0x3E).may_change
    assert X.Ipv6Option(0x7E).action == X.ACTION_DISCARD
    assert X.Ipv6Option(0xC9).action == X.ACTION_DISCARD_ICMP_UNICAST
    assert r.unrecognized({X.OPT_ROUTER_ALERT}) == unknown
    assert r.unrecognized({X.OPT_ROUTER_ALERT, 0x9E}) is None


def test_options_emit_pads_to_eight() -> None:
    r = X.DestOptsRepr(IPPROTO_TCP, (X.Ipv6Option(0x1E, b"\x01"),))
    buf = bytearray(b"\xaa" * 10)
    assert r.emit(buf, 1) == 8
    # next header, length 0, option(3 bytes), PadN with 1 byte of zeros = 8 bytes.
    assert buf == b"\xaa" + bytes.fromhex("0600 1e01 01 0101 00") + b"\xaa"
    r2 = X.HopByHopRepr(IPPROTO_UDP, (X.Ipv6Option(5, b"\x00\x00"), X.Ipv6Option(7, b"")))
    assert r2.to_bytes() == bytes.fromhex("1100 05020000 0700")
    r3 = X.HopByHopRepr(IPPROTO_UDP, (X.Ipv6Option(5, b"\x00\x00"), X.Ipv6Option(7, b"\x01")))
    assert r3.to_bytes() == bytes.fromhex("1101 05020000 070101 0105 0000000000")
    assert X.HopByHopRepr(IPPROTO_NONE).to_bytes() == bytes.fromhex("3b00 0104 00000000")


@pytest.mark.parametrize("raw", [
    b"", b"\x11\x00\x00",                          # shorter than 8
    bytes.fromhex("1101") + b"\x00" * 6,           # says 16 bytes, has 8
])
def test_ext_header_lying_lengths(raw: bytes) -> None:
    with pytest.raises(Truncated):
        X.ExtHeaderView.checked(raw)


@pytest.mark.parametrize("raw", [
    bytes.fromhex("1100 0505 00000000"),      # option length 5 runs past the header
    bytes.fromhex("1100 00000000 0001"),      # option type with no room for its data? (PadN 1)
    bytes.fromhex("1100 0000000000 05"),      # option type, no length byte
])
def test_option_lengths_past_header(raw: bytes) -> None:
    with pytest.raises(Truncated):
        X.HopByHopRepr.parse(X.ExtHeaderView.checked(raw))


def test_routing_fixed_bytes() -> None:
    addr = ipaddress.IPv6Address("2001:db8::99")
    raw = bytes.fromhex("3a02 0201 00000000") + addr.packed
    v = X.ExtHeaderView.checked(raw)
    r = X.RoutingRepr.parse(v)
    assert (r.next_header, r.routing_type, r.segments_left) == (58, 2, 1)
    assert r.addresses == (addr,) and r.header_len == 24
    buf = bytearray(b"\xaa" * 25)
    assert r.emit(buf, 0) == 24 and buf[:24] == raw and buf[24] == 0xAA
    with pytest.raises(ValueError):
        X.RoutingRepr(6, 4, 0, b"\x00").to_bytes()


def test_fragment_fixed_bytes() -> None:
    raw = bytes.fromhex("11ff 05a9 deadbeef")  # reserved byte 0xff ignored; offset 181*8, M
    v = X.FragmentView.checked(raw + b"data")
    r = X.FragmentRepr.parse(v)
    assert r == X.FragmentRepr(17, 1448, True, 0xDEADBEEF)
    assert not r.is_atomic and bytes(v.payload) == b"data"
    buf = bytearray(b"\xaa" * 9)
    assert r.emit(buf) == 8
    assert buf == bytes.fromhex("1100 05a9 deadbeef aa")   # reserved written as 0
    with pytest.raises(Truncated):
        X.FragmentView.checked(raw[:7])
    with pytest.raises(ValueError):
        X.FragmentRepr(17, 7, False, 1).to_bytes()


def test_parse_chain() -> None:
    hbh = X.HopByHopRepr(IPPROTO_DSTOPTS, (X.Ipv6Option(5, b"\x00\x00"),)).to_bytes()
    dst = X.DestOptsRepr(IPPROTO_ROUTING).to_bytes()
    rt = X.RoutingRepr(IPPROTO_FRAGMENT, 0, 0, b"\x00" * 4).to_bytes()
    frag = X.FragmentRepr(IPPROTO_UDP, 8, False, 5).to_bytes()
    buf = hbh + dst + rt + frag + b"upper"
    chain = X.parse_chain(IPPROTO_HOPOPTS, buf)
    assert [h.protocol for h in chain.headers] == [IPPROTO_HOPOPTS, IPPROTO_DSTOPTS,
                                                   IPPROTO_ROUTING, IPPROTO_FRAGMENT]
    assert [h.offset for h in chain.headers] == [0, 8, 16, 24]
    assert chain.upper_protocol == IPPROTO_UDP and chain.upper_offset == 32
    assert chain.upper_protocol_pointer == 24
    assert chain.fragment == X.FragmentRepr(IPPROTO_UDP, 8, False, 5)
    assert chain.find(IPPROTO_ROUTING) is chain.headers[2]
    assert buf[chain.upper_offset:] == b"upper"
    # No extension headers at all.
    plain = X.parse_chain(IPPROTO_ICMPV6, b"xx")
    assert (plain.headers, plain.upper_protocol, plain.upper_offset,
            plain.upper_protocol_pointer) == ((), IPPROTO_ICMPV6, 0, -1)


def test_parse_chain_hop_by_hop_not_first() -> None:
    buf = X.DestOptsRepr(IPPROTO_HOPOPTS).to_bytes() + X.HopByHopRepr(IPPROTO_NONE).to_bytes()
    with pytest.raises(X.ParameterProblem) as info:
        X.parse_chain(IPPROTO_DSTOPTS, buf)
    assert info.value.code == 1 and info.value.pointer == 0


def test_parse_chain_truncated() -> None:
    buf = X.DestOptsRepr(IPPROTO_DSTOPTS).to_bytes() + b"\x11\x05"
    with pytest.raises(Truncated):
        X.parse_chain(IPPROTO_DSTOPTS, buf)


ext_reprs = st.one_of(
    st.builds(X.HopByHopRepr, u8, ipv6_options),
    st.builds(X.DestOptsRepr, u8, ipv6_options),
    st.builds(X.RoutingRepr, u8, u8, u8, aligned_bytes(8, fixed=4)),
    st.builds(X.FragmentRepr, u8, st.integers(0, 0x1FFF).map(lambda x: x * 8), st.booleans(),
              st.integers(0, 2**32 - 1)),
)


@settings(max_examples=200, deadline=None)
@given(ext_reprs)
def test_ext_round_trip(r: X.ExtHeaderRepr) -> None:
    raw = r.to_bytes()
    assert len(raw) == r.header_len and len(raw) % 8 == 0
    if isinstance(r, X.FragmentRepr):
        parsed: X.ExtHeaderRepr = X.FragmentRepr.parse(X.FragmentView.checked(raw))
    else:
        parsed = type(r).parse(X.ExtHeaderView.checked(raw))
    assert parsed == r


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(X.EXTENSION_PROTOCOLS)), st.binary(max_size=64))
def test_chain_arbitrary_bytes(first: int, raw: bytes) -> None:
    try:
        X.parse_chain(first, raw)
    except MalformedPacket:
        pass


def _udp6(*ext: object) -> bytes:
    pkt = scapy.IPv6(src=str(A), dst="2001:db8::2")
    for e in ext:
        pkt = pkt / e
    return bytes(pkt / scapy.UDP(sport=1, dport=2) / scapy.Raw(b"hi"))


def test_scapy_builds_extension_headers_we_parse() -> None:
    raw = _udp6(scapy.IPv6ExtHdrHopByHop(options=[scapy.RouterAlert(),
                                                  scapy.HBHOptUnknown(otype=0x9E, optdata=b"xyz")]),
                scapy.IPv6ExtHdrDestOpt(options=[scapy.HBHOptUnknown(otype=0x1F, optdata=b"\x07")]),
                scapy.IPv6ExtHdrRouting(addresses=["2001:db8::a", "2001:db8::b"], segleft=0),
                scapy.IPv6ExtHdrFragment(offset=0, m=1, id=0x1234))
    v = IPv6View.checked(raw)
    chain = X.parse_chain(v.next_header, v.payload)
    hbh, dst, rt, frag = (h.repr for h in chain.headers)
    assert isinstance(hbh, X.HopByHopRepr)
    assert [(o.type, o.data) for o in hbh.options] == [(5, b"\x00\x00"), (0x9E, b"xyz")]
    assert [(o.type, o.data) for o in dst.options] == [(0x1F, b"\x07")]  # type: ignore[union-attr]
    assert isinstance(rt, X.RoutingRepr) and rt.routing_type == 0 and rt.segments_left == 0
    assert rt.addresses == (ipaddress.IPv6Address("2001:db8::a"),
                            ipaddress.IPv6Address("2001:db8::b"))
    assert frag == X.FragmentRepr(IPPROTO_UDP, 0, True, 0x1234)
    assert bytes(v.payload[chain.upper_offset:chain.upper_offset + 4]) == b"\x00\x01\x00\x02"


def test_we_emit_extension_headers_scapy_dissects() -> None:
    udp = bytes(scapy.UDP(sport=1, dport=2, chksum=0) / scapy.Raw(b"hi"))
    hbh = X.HopByHopRepr(IPPROTO_DSTOPTS, (X.Ipv6Option(5, b"\x00\x00"),
                                           X.Ipv6Option(0x9E, b"xyz")))
    dst = X.DestOptsRepr(IPPROTO_ROUTING, (X.Ipv6Option(0x1F, b"\x07"),))
    rt = X.RoutingRepr(IPPROTO_FRAGMENT, 0, 0,
                       b"\x00" * 4 + ipaddress.IPv6Address("2001:db8::a").packed)
    frag = X.FragmentRepr(IPPROTO_UDP, 16, False, 99)
    payload = hbh.to_bytes() + dst.to_bytes() + rt.to_bytes() + frag.to_bytes() + udp
    raw = IPv6Repr(A, B, IPPROTO_HOPOPTS, len(payload)).to_bytes(payload)
    p = scapy.IPv6(raw)
    h = p[scapy.IPv6ExtHdrHopByHop]
    assert h.nh == IPPROTO_DSTOPTS and h.len == 1
    real = [o for o in h.options if o.otype not in (0, 1)]   # without Pad1/PadN
    assert [o.otype for o in real] == [5, 0x9E] and bytes(real[1].optdata) == b"xyz"
    d = p[scapy.IPv6ExtHdrDestOpt]
    assert d.nh == IPPROTO_ROUTING and [o.otype for o in d.options if o.otype > 1] == [0x1F]
    r = p[scapy.IPv6ExtHdrRouting]
    assert r.nh == IPPROTO_FRAGMENT and r.type == 0 and r.segleft == 0
    assert r.addresses == ["2001:db8::a"]
    f = p[scapy.IPv6ExtHdrFragment]
    assert (f.nh, f.offset, f.m, f.id) == (IPPROTO_UDP, 2, 0, 99)
