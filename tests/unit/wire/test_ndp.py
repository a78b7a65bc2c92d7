"""NDP (RFC 4861): fixed bytes, options, validity checks, round trips, scapy both ways."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netvisor.tcpip.errors import MalformedPacket, Truncated
from netvisor.tcpip.wire import icmpv6 as I6
from netvisor.tcpip.wire import ndp as N
from netvisor.tcpip.wire.icmpv6 import Icmpv6View

from .strategies import aligned_bytes, macs, u8, u16, u32, v6, v6_unicast

scapy = pytest.importorskip("scapy.all")

LL_A = ipaddress.IPv6Address("fe80::1")
LL_B = ipaddress.IPv6Address("fe80::2")
ALL_NODES = ipaddress.IPv6Address("ff02::1")
SOLICITED = ipaddress.IPv6Address("ff02::1:ff00:2")
MAC = bytes.fromhex("020000000001")
PREFIX = ipaddress.IPv6Address("2001:db8:1::")


def _parse(raw: bytes, src: ipaddress.IPv6Address = LL_A,
           dst: ipaddress.IPv6Address = ALL_NODES) -> N.NdpRepr:
    return N.parse_ndp(Icmpv6View.checked(raw), src=src, dst=dst)


def _msg(body: bytes, src: ipaddress.IPv6Address = LL_A,
         dst: ipaddress.IPv6Address = ALL_NODES) -> bytes:
    buf = bytearray(body)
    I6.fill_checksum(buf, 0, len(buf), src, dst)
    return bytes(buf)


def test_router_advert_fixed_bytes() -> None:
    body = (bytes.fromhex("8600 0000 40 c8 0708 00007530 000003e8")      # M, O, prf bits 0x08
            + bytes.fromhex("0101") + MAC                                  # source LL
            + bytes.fromhex("0501 0000 000005dc")                          # MTU 1500
            + bytes.fromhex("0304 40 c0 00278d00 00093a80 00000000") + PREFIX.packed
            + bytes.fromhex("1903 0000 00000e10") + LL_B.packed)           # RDNSS (unknown)
    r = _parse(_msg(body))
    assert isinstance(r, N.RouterAdvert)
    assert (r.cur_hop_limit, r.managed, r.other, r.flags, r.router_lifetime, r.reachable_time,
            r.retrans_timer) == (64, True, True, 0x08, 1800, 30000, 1000)
    o = r.options
    assert o.source_ll == MAC and o.target_ll is None and o.mtu == 1500
    assert o.prefixes == (N.NdpPrefixInfo(PREFIX, 64, True, True, 2592000, 604800),)
    assert o.unknown == (N.NdpOption(N.OPT_RDNSS, bytes.fromhex("0000 00000e10") + LL_B.packed),)
    # Emitting gives back the same bytes (our option order is the one used above).
    assert r.to_bytes(src=LL_A, dst=ALL_NODES) == _msg(body)


def test_neighbor_messages_fixed_bytes() -> None:
    ns = _parse(_msg(bytes.fromhex("8700 0000 00000000") + LL_B.packed
                     + bytes.fromhex("0101") + MAC, dst=SOLICITED), dst=SOLICITED)
    assert ns == N.NeighborSolicit(LL_B, N.NdpOptions(source_ll=MAC))
    na = _parse(_msg(bytes.fromhex("8800 0000 e0000000") + LL_B.packed
                     + bytes.fromhex("0201") + MAC, dst=LL_A), dst=LL_A)
    assert na == N.NeighborAdvert(LL_B, router=True, solicited=True, override=True,
                                  options=N.NdpOptions(target_ll=MAC))
    rs = _parse(_msg(bytes.fromhex("8500 0000 00000000")))
    assert rs == N.RouterSolicit()
    dest = ipaddress.IPv6Address("2001:db8::77")
    quoted = b"\x60" + b"\x00" * 47
    red = _parse(_msg(bytes.fromhex("8900 0000 00000000") + LL_B.packed + dest.packed
                      + bytes.fromhex("0407 000000000000") + quoted))
    assert red == N.Redirect(LL_B, dest, N.NdpOptions(redirected=quoted))


def test_emit_writes_every_byte() -> None:
    na = N.NeighborAdvert(LL_B, solicited=True, options=N.NdpOptions(target_ll=MAC))
    buf = bytearray(b"\xaa" * 36)
    assert na.emit(buf, 2, src=LL_B, dst=LL_A) == 32
    assert buf[:2] == b"\xaa\xaa" and buf[34:] == b"\xaa\xaa"
    assert buf[2:34] == _msg(bytes.fromhex("8800 0000 40000000") + LL_B.packed
                             + bytes.fromhex("0201") + MAC, src=LL_B, dst=LL_A)


@pytest.mark.parametrize("body,exc", [
    (bytes.fromhex("8701 0000 00000000") + LL_B.packed, MalformedPacket),       # code 1
    (bytes.fromhex("8700 0000 00000000") + LL_B.packed[:8], MalformedPacket),   # too short
    (bytes.fromhex("8700 0000 00000000") + SOLICITED.packed, MalformedPacket),  # multicast target
    (bytes.fromhex("8700 0000 00000000") + LL_B.packed + bytes.fromhex("0100") + MAC,
     MalformedPacket),                                                          # option length 0
    (bytes.fromhex("8700 0000 00000000") + LL_B.packed + bytes.fromhex("0102") + MAC,
     Truncated),                                                                # option past end
    (bytes.fromhex("8700 0000 00000000") + LL_B.packed + b"\x01", Truncated),
    (bytes.fromhex("8000 0000 00000000"), MalformedPacket),                     # not ND
])
def test_invalid_messages(body: bytes, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        _parse(_msg(body))


def test_known_option_of_wrong_length_is_kept_as_unknown() -> None:
    # A 2-unit prefix option: Linux ignores the option (addrconf_prefix_rcv), not the RA.
    bad_prefix = bytes.fromhex("0302") + b"\x00" * 14
    bad_mtu = bytes.fromhex("0502") + b"\x00" * 14
    r = _parse(_msg(bytes.fromhex("8600 0000 4000 0000 00000000 00000000") + bad_prefix + bad_mtu))
    assert isinstance(r, N.RouterAdvert)
    assert r.options.prefixes == () and r.options.mtu is None
    assert r.options.unknown == (N.NdpOption(3, b"\x00" * 14), N.NdpOption(5, b"\x00" * 14))


def test_address_based_checks() -> None:
    unspec = ipaddress.IPv6Address("::")
    ns = N.NeighborSolicit(LL_B, N.NdpOptions(source_ll=MAC)).to_bytes(src=unspec, dst=SOLICITED)
    with pytest.raises(MalformedPacket):   # RFC 4861 7.1.1: no SLLA from ::
        _parse(ns, src=unspec, dst=SOLICITED)
    dad = N.NeighborSolicit(LL_B).to_bytes(src=unspec, dst=SOLICITED)
    assert _parse(dad, src=unspec, dst=SOLICITED) == N.NeighborSolicit(LL_B)
    dad_wrong_dst = N.NeighborSolicit(LL_B).to_bytes(src=unspec, dst=ALL_NODES)
    with pytest.raises(MalformedPacket):   # RFC 4861 7.1.1: DAD goes to solicited-node
        _parse(dad_wrong_dst, src=unspec, dst=ALL_NODES)
    glob = ipaddress.IPv6Address("2001:db8::1")
    red = N.Redirect(glob, ipaddress.IPv6Address("2001:db8::2")).to_bytes(src=LL_A, dst=LL_B)
    with pytest.raises(MalformedPacket):   # RFC 4861 8.1: target link-local or = destination
        _parse(red, dst=LL_B)
    on_link = N.Redirect(glob, glob)
    assert _parse(on_link.to_bytes(src=LL_A, dst=LL_B), dst=LL_B) == on_link
    na = N.NeighborAdvert(LL_B, solicited=True).to_bytes(src=LL_B, dst=ALL_NODES)
    with pytest.raises(MalformedPacket):   # RFC 4861 7.1.2: solicited NA to multicast
        _parse(na, src=LL_B, dst=ALL_NODES)
    bad = bytearray(N.RouterSolicit().to_bytes(src=LL_A, dst=ALL_NODES))
    bad[4] ^= 1
    with pytest.raises(MalformedPacket):
        _parse(bytes(bad))
    assert N.parse_ndp(Icmpv6View.checked(bad), verify_checksum=False) == N.RouterSolicit()


opts = st.builds(
    N.NdpOptions,
    source_ll=st.none() | macs, target_ll=st.none() | macs, mtu=st.none() | u32,
    prefixes=st.lists(st.builds(N.NdpPrefixInfo, v6, st.integers(0, 128), st.booleans(),
                                st.booleans(), u32, u32, st.integers(0, 63)),
                      max_size=2).map(tuple),
    redirected=st.none() | aligned_bytes(8, max_units=4),
    unknown=st.lists(st.builds(N.NdpOption, st.integers(6, 255).filter(lambda t: t != 14),
                               aligned_bytes(8, fixed=2, max_units=3).filter(len)),
                     max_size=2).map(tuple),
)
ndp_reprs = st.one_of(
    st.builds(N.RouterSolicit, opts),
    st.builds(N.RouterAdvert, u8, st.booleans(), st.booleans(), u16, u32, u32, opts,
              st.integers(0, 63)),
    st.builds(N.NeighborSolicit, v6_unicast, opts),
    st.builds(N.NeighborAdvert, v6_unicast, st.booleans(), st.booleans(), st.booleans(), opts),
    st.builds(N.Redirect, st.builds(ipaddress.IPv6Address, st.integers(0, 2**64 - 1).map(
        lambda x: (0xFE80 << 112) | x)), v6_unicast, opts),
    v6_unicast.flatmap(lambda a: st.builds(N.Redirect, st.just(a), st.just(a), opts)),
)


@settings(max_examples=200, deadline=None)
@given(ndp_reprs)
def test_round_trip(r: N.NdpRepr) -> None:
    raw = r.to_bytes(src=LL_A, dst=LL_B)
    assert len(raw) == r.buffer_len
    assert N.parse_ndp(Icmpv6View.checked(raw), src=LL_A, dst=LL_B) == r


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(N.NDP_TYPES)), st.binary(max_size=80))
def test_arbitrary_bytes(icmp_type: int, tail: bytes) -> None:
    raw = bytes([icmp_type]) + tail
    try:
        N.parse_ndp(Icmpv6View.checked(raw), src=LL_A, dst=LL_B, verify_checksum=False)
    except MalformedPacket:
        pass


def _icmp6(pkt: object, src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address) -> bytes:
    return bytes(scapy.IPv6(src=str(src), dst=str(dst)) / pkt)[40:]


def _dissect(raw: bytes, src: ipaddress.IPv6Address, dst: ipaddress.IPv6Address) -> object:
    return scapy.IPv6(bytes(scapy.IPv6(src=str(src), dst=str(dst), nh=58) / scapy.Raw(raw)))


def test_scapy_builds_we_parse() -> None:
    ra = (scapy.ICMPv6ND_RA(chlim=64, M=1, O=0, routerlifetime=600, reachabletime=5, retranstimer=6)
          / scapy.ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")
          / scapy.ICMPv6NDOptMTU(mtu=9000)
          / scapy.ICMPv6NDOptPrefixInfo(prefix=str(PREFIX), prefixlen=48, L=1, A=0,
                                        validlifetime=100, preferredlifetime=50)
          / scapy.ICMPv6NDOptRDNSS(dns=["2001:db8::53"], lifetime=99))
    r = _parse(_icmp6(ra, LL_A, ALL_NODES))
    assert isinstance(r, N.RouterAdvert)
    assert (r.cur_hop_limit, r.managed, r.other, r.router_lifetime, r.reachable_time,
            r.retrans_timer) == (64, True, False, 600, 5, 6)
    assert r.options.source_ll == MAC and r.options.mtu == 9000
    assert r.options.prefixes == (N.NdpPrefixInfo(PREFIX, 48, True, False, 100, 50),)
    assert [u.type for u in r.options.unknown] == [N.OPT_RDNSS]
    # The unknown option survives our re-emission byte for byte.
    assert r.to_bytes(src=LL_A, dst=ALL_NODES) == _icmp6(ra, LL_A, ALL_NODES)

    ns = scapy.ICMPv6ND_NS(tgt=str(LL_B)) / scapy.ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")
    assert _parse(_icmp6(ns, LL_A, SOLICITED), dst=SOLICITED) == \
        N.NeighborSolicit(LL_B, N.NdpOptions(source_ll=MAC))
    na = scapy.ICMPv6ND_NA(tgt=str(LL_B), R=0, S=1, O=1) / \
        scapy.ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:01")
    assert _parse(_icmp6(na, LL_B, LL_A), src=LL_B, dst=LL_A) == \
        N.NeighborAdvert(LL_B, solicited=True, override=True, options=N.NdpOptions(target_ll=MAC))
    rs = scapy.ICMPv6ND_RS() / scapy.ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01")
    assert _parse(_icmp6(rs, LL_A, ALL_NODES)) == N.RouterSolicit(N.NdpOptions(source_ll=MAC))
    red = scapy.ICMPv6ND_Redirect(tgt=str(LL_B), dst="2001:db8::9") / \
        scapy.ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:01")
    assert _parse(_icmp6(red, LL_A, LL_B), dst=LL_B) == N.Redirect(
        LL_B, ipaddress.IPv6Address("2001:db8::9"), N.NdpOptions(target_ll=MAC))


def test_we_emit_scapy_dissects() -> None:
    ra = N.RouterAdvert(cur_hop_limit=255, other=True, router_lifetime=9000, reachable_time=1,
                        retrans_timer=2, options=N.NdpOptions(
                            source_ll=MAC, mtu=1280,
                            prefixes=(N.NdpPrefixInfo(PREFIX, 64, False, True, 7, 3),)))
    raw = ra.to_bytes(src=LL_A, dst=ALL_NODES)
    p = _dissect(raw, LL_A, ALL_NODES)
    d = p[scapy.ICMPv6ND_RA]
    assert (d.chlim, d.M, d.O, d.routerlifetime, d.reachabletime, d.retranstimer) == (
        255, 0, 1, 9000, 1, 2)
    assert p[scapy.ICMPv6NDOptSrcLLAddr].lladdr == "02:00:00:00:00:01"
    assert p[scapy.ICMPv6NDOptMTU].mtu == 1280
    pi = p[scapy.ICMPv6NDOptPrefixInfo]
    assert (pi.prefix, pi.prefixlen, pi.L, pi.A, pi.validlifetime, pi.preferredlifetime) == (
        str(PREFIX), 64, 0, 1, 7, 3)
    # scapy recomputes the checksum of the same message: equal to ours.
    rebuilt = scapy.ICMPv6ND_RA(raw)
    del rebuilt.cksum
    assert _icmp6(rebuilt, LL_A, ALL_NODES) == raw

    for ours, layer, fields in [
        (N.NeighborSolicit(LL_B, N.NdpOptions(source_ll=MAC)), scapy.ICMPv6ND_NS, {"tgt": str(LL_B)}),
        (N.NeighborAdvert(LL_B, router=True, override=True, options=N.NdpOptions(target_ll=MAC)),
         scapy.ICMPv6ND_NA, {"tgt": str(LL_B), "R": 1, "S": 0, "O": 1}),
        (N.RouterSolicit(N.NdpOptions(source_ll=MAC)), scapy.ICMPv6ND_RS, {}),
        (N.Redirect(LL_B, ipaddress.IPv6Address("2001:db8::9")), scapy.ICMPv6ND_Redirect,
         {"tgt": str(LL_B), "dst": "2001:db8::9"}),
    ]:
        raw = ours.to_bytes(src=LL_A, dst=LL_B)
        d = _dissect(raw, LL_A, LL_B)[layer]
        for name, value in fields.items():
            assert getattr(d, name) == value, (layer, name)
        again = layer(raw)
        del again.cksum
        assert _icmp6(again, LL_A, LL_B) == raw   # scapy computes our checksum
