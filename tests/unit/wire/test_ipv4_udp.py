"""IPv4 (+options) and UDP: fixed bytes, emit, lying lengths, checksums, scapy both ways."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netvisor.tcpip.errors import MalformedPacket, Truncated
from netvisor.tcpip.wire import checksum as C
from netvisor.tcpip.wire import ipv4
from netvisor.tcpip.wire.checksum import ChecksumMode
from netvisor.tcpip.wire.ipv4 import IPv4Repr, IPv4View
from netvisor.tcpip.wire.udp import UdpRepr, UdpView

from .strategies import ipv4_options, u8, u16, v4

scapy = pytest.importorskip("scapy.all")

A = ipaddress.IPv4Address("192.0.2.1")
B = ipaddress.IPv4Address("198.51.100.7")
A6 = ipaddress.IPv6Address("2001:db8::1")
B6 = ipaddress.IPv6Address("2001:db8::2")

# Version 4, IHL 6, TOS 0xb9, total 28, id 0x1234, DF + offset 0, TTL 17, UDP,
# checksum filled below, a Router Alert option, then 4 bytes of payload.
_HDR = bytearray(bytes.fromhex("46b9001c1234400011110000c0000201c6336407" "94040000") + b"abcd")
struct.pack_into("!H", _HDR, 10, C.checksum(_HDR[:24]))
IPV4_RAW = bytes(_HDR)


def test_ipv4_fixed_bytes_every_field() -> None:
    v = IPv4View.checked(IPV4_RAW + b"\x00" * 6)  # Ethernet padding after the packet
    assert (v.version, v.header_len, v.tos, v.dscp, v.ecn, v.total_len) == (4, 24, 0xB9, 0x2E, 1, 28)
    assert (v.ident, v.dont_fragment, v.more_fragments, v.frag_offset, v.is_fragment) == (
        0x1234, True, False, 0, False)
    assert (v.ttl, v.protocol, v.src, v.dst) == (17, 17, A, B)
    assert bytes(v.options) == b"\x94\x04\x00\x00" and bytes(v.payload) == b"abcd"
    assert v.checksum_ok()
    r = IPv4Repr.parse(v)
    assert r == IPv4Repr(A, B, 17, 4, ttl=17, tos=0xB9, ident=0x1234, dont_fragment=True,
                         options=b"\x94\x04\x00\x00")
    assert ipv4.parse_options(r.options) == [(ipv4.OPT_RA, b"\x00\x00")]


def test_ipv4_fragment_fields() -> None:
    r = IPv4Repr(A, B, 6, 8, more_fragments=True, frag_offset=1480, ident=9)
    v = IPv4View.checked(r.to_bytes(b"x" * 8))
    assert v.more_fragments and not v.dont_fragment and v.frag_offset == 1480 and v.is_fragment
    assert IPv4Repr.parse(v) == r
    with pytest.raises(ValueError):
        IPv4Repr(A, B, 6, 0, frag_offset=3).to_bytes()


def test_ipv4_emit_writes_every_byte() -> None:
    r = IPv4Repr.parse(IPv4View.checked(IPV4_RAW))
    buf = bytearray(b"\xaa" * 30)
    assert r.emit(buf, 3) == 24
    assert buf[3:27] == IPV4_RAW[:24] and buf[:3] == b"\xaa" * 3 and buf[27:] == b"\xaa" * 3


def test_ipv4_bad_checksum_and_version() -> None:
    bad = bytearray(IPV4_RAW)
    bad[10] ^= 1
    with pytest.raises(MalformedPacket):
        IPv4Repr.parse(IPv4View.checked(bad))
    assert IPv4Repr.parse(IPv4View.checked(bad), verify_checksum=False).ttl == 17
    v6 = bytearray(IPV4_RAW)
    v6[0] = 0x66
    with pytest.raises(MalformedPacket):
        IPv4Repr.parse(IPv4View.checked(v6), verify_checksum=False)


def _patched(pos: int, val: bytes) -> bytes:
    raw = bytearray(IPV4_RAW)
    raw[pos:pos + len(val)] = val
    return bytes(raw)


@pytest.mark.parametrize("raw", [
    b"", IPV4_RAW[:19],
    _patched(0, b"\x44"),             # IHL 4 < 5
    _patched(0, b"\x4f"),             # IHL 15: 60 bytes > 28 present
    _patched(2, b"\x00\x1d"),         # total length 29 > 28
    _patched(2, b"\x00\x10"),         # total length 16 < header length
])
def test_ipv4_lying_lengths(raw: bytes) -> None:
    with pytest.raises(Truncated):
        IPv4View.checked(raw)


def test_ipv4_allow_truncated_for_icmp_quotes() -> None:
    v = IPv4View.checked(IPV4_RAW[:26], allow_truncated=True)
    assert v.truncated and bytes(v.payload) == b"ab"


@pytest.mark.parametrize("opts,exc", [
    (b"\x07\x01\x00\x00", MalformedPacket),          # length < 2
    (b"\x07\x08\x00\x00", Truncated),                # past the header
    (b"\x01\x01\x01\x07", Truncated),                # NOPs, then no length byte
])
def test_ipv4_bad_options(opts: bytes, exc: type[Exception]) -> None:
    raw = IPv4Repr(A, B, 17, 0, options=opts).to_bytes()
    with pytest.raises(exc):
        IPv4Repr.parse(IPv4View.checked(raw))


def test_ipv4_options_parse_and_build() -> None:
    raw = ipv4.build_options([(ipv4.OPT_NOP, b""), (ipv4.OPT_RR, b"\x04" + b"\x00" * 8)])
    assert len(raw) % 4 == 0
    assert ipv4.parse_options(raw) == [(ipv4.OPT_RR, b"\x04" + b"\x00" * 8)]
    # EOL ends the list: what follows is not an option.
    assert ipv4.parse_options(b"\x00\x07\x01\x00") == []
    with pytest.raises(ValueError):
        ipv4.build_options([(ipv4.OPT_RR, b"\x00" * 40)])


ipv4_reprs = st.builds(
    IPv4Repr, v4, v4, u8, st.integers(0, 1000), ttl=u8, tos=u8, ident=u16, dont_fragment=st.booleans(),
    more_fragments=st.booleans(), frag_offset=st.integers(0, 0x1FFF).map(lambda x: x * 8),
    options=ipv4_options)


@settings(max_examples=200, deadline=None)
@given(ipv4_reprs)
def test_ipv4_round_trip(r: IPv4Repr) -> None:
    raw = r.to_bytes(b"\x5a" * r.payload_len)
    v = IPv4View.checked(raw)
    assert IPv4Repr.parse(v) == r
    assert bytes(v.payload) == b"\x5a" * r.payload_len


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_ipv4_arbitrary_bytes(raw: bytes) -> None:
    try:
        IPv4Repr.parse(IPv4View.checked(raw), verify_checksum=False)
    except MalformedPacket:
        pass


@settings(max_examples=60, deadline=None)
@given(ipv4_reprs)
def test_ipv4_scapy_dissects_ours(r: IPv4Repr) -> None:
    raw = r.to_bytes(b"\x5a" * r.payload_len)
    p = scapy.IP(raw)
    assert (p.version, p.ihl * 4, p.tos, p.len, p.id, p.ttl, p.proto, p.src, p.dst) == (
        4, r.header_len, r.tos, r.buffer_len, r.ident, r.ttl, r.protocol, str(r.src), str(r.dst))
    assert p.frag * 8 == r.frag_offset
    assert bool(p.flags.DF) == r.dont_fragment and bool(p.flags.MF) == r.more_fragments
    assert b"".join(bytes(o) for o in p.options) == r.options
    # scapy recomputes the checksum of its own rebuild: equal to ours.
    p2 = scapy.IP(raw)
    del p2.chksum
    assert scapy.IP(bytes(p2)).chksum == p.chksum


def test_ipv4_scapy_builds_we_parse() -> None:
    pkt = scapy.IP(src=str(A), dst=str(B), tos=0x10, id=77, ttl=9, flags="MF", frag=10,
                   options=[scapy.IPOption_RR(routers=["1.2.3.4"]),
                            scapy.IPOption_Router_Alert()]) / scapy.Raw(b"hello")
    raw = bytes(pkt)
    r = IPv4Repr.parse(IPv4View.checked(raw))
    assert (r.src, r.dst, r.tos, r.ident, r.ttl, r.more_fragments, r.frag_offset) == (
        A, B, 0x10, 77, 9, True, 80)
    assert r.payload_len == 5 and r.protocol == 0
    opts = ipv4.parse_options(r.options)
    assert opts[0][0] == ipv4.OPT_RR and opts[0][1][1:5] == bytes([1, 2, 3, 4])
    assert opts[1] == (ipv4.OPT_RA, b"\x00\x00")
    # Re-emitting reproduces scapy's header bit for bit (checksum included).
    assert r.to_bytes(b"hello") == raw


# -- UDP ----------------------------------------------------------------------------------

def test_udp_fixed_bytes_every_field() -> None:
    raw = bytes.fromhex("04d2 0035 000d 0000") + b"hello" + b"pad"
    v = UdpView.checked(raw)
    assert (v.src_port, v.dst_port, v.length, v.checksum) == (1234, 53, 13, 0)
    assert bytes(v.payload) == b"hello"   # bounded by the length field, not the buffer
    # Checksum 0 over IPv4: "none"; over IPv6: invalid (RFC 8200 8.1).
    assert UdpRepr.parse(v, src=A, dst=B) == UdpRepr(1234, 53, 5)
    with pytest.raises(MalformedPacket):
        UdpRepr.parse(v, src=A6, dst=B6)


@pytest.mark.parametrize("raw", [b"", b"\x00" * 7, bytes.fromhex("0001000200070000"),
                                 bytes.fromhex("0001000200100000") + b"x" * 7])
def test_udp_lying_lengths(raw: bytes) -> None:
    with pytest.raises(Truncated):
        UdpView.checked(raw)


@pytest.mark.parametrize("src,dst", [(A, B), (A6, B6)])
def test_udp_emit_full_and_verify(src: ipaddress.IPv4Address | ipaddress.IPv6Address,
                                  dst: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    r = UdpRepr(5000, 6000, 3)
    buf = bytearray(b"\xaa" * 13)
    assert r.emit(buf, 1, src=src, dst=dst, payload=b"xyz") == 8
    assert buf[0] == 0xAA and buf[12] == 0xAA and buf[9:12] == b"xyz"
    v = UdpView.checked(buf[1:12])
    assert (v.src_port, v.dst_port, v.length) == (5000, 6000, 11) and v.checksum != 0
    assert UdpRepr.parse(v, src=src, dst=dst) == r
    buf[10] ^= 0x40
    with pytest.raises(MalformedPacket):
        UdpRepr.parse(UdpView.checked(buf[1:12]), src=src, dst=dst)
    assert UdpRepr.parse(UdpView.checked(buf[1:12]), verify_checksum=False) == r


def test_udp_partial_checksum_completes_like_a_nic() -> None:
    r = UdpRepr(1, 2, 4)
    buf = bytearray(12)
    r.emit(buf, src=A6, dst=B6, payload=b"data", checksum=ChecksumMode.PARTIAL)
    pseudo = C.pseudo_header_sum(A6, B6, 17, 12)
    assert struct.unpack_from("!H", buf, 6)[0] == C.fold(pseudo)
    # What the NIC does (virtio NEEDS_CSUM): checksum from csum_start, store at +6.
    struct.pack_into("!H", buf, 6, C.checksum(buf))
    assert buf == r.to_bytes(b"data", src=A6, dst=B6)


def test_udp_zero_checksum_sent_as_ffff() -> None:
    # Find a payload whose checksum computes to 0: set the last two bytes so
    # the total sums to 0xFFFF.
    r = UdpRepr(7, 9, 2)
    base = bytearray(10)
    struct.pack_into("!HHH", base, 0, 7, 9, 10)
    s = C.fold(C.partial_sum(base, C.pseudo_header_sum(A, B, 17, 10)))
    payload = struct.pack("!H", 0xFFFF - s)
    raw = r.to_bytes(payload, src=A, dst=B)
    assert raw[6:8] == b"\xff\xff"
    assert UdpRepr.parse(UdpView.checked(raw), src=A, dst=B) == r
    none = r.to_bytes(payload, src=A, dst=B, checksum=ChecksumMode.NONE)
    assert none[6:8] == b"\x00\x00"
    with pytest.raises(ValueError):
        r.to_bytes(payload, src=A6, dst=B6, checksum=ChecksumMode.NONE)


udp_reprs = st.builds(UdpRepr, u16, u16, st.integers(0, 300))


@settings(max_examples=200, deadline=None)
@given(udp_reprs, st.sampled_from([(A, B), (A6, B6)]), st.data())
def test_udp_round_trip(r: UdpRepr, addrs: tuple, data: st.DataObject) -> None:
    payload = data.draw(st.binary(min_size=r.payload_len, max_size=r.payload_len))
    raw = r.to_bytes(payload, src=addrs[0], dst=addrs[1])
    v = UdpView.checked(raw)
    assert UdpRepr.parse(v, src=addrs[0], dst=addrs[1]) == r
    assert bytes(v.payload) == payload


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40), st.sampled_from([(A, B), (A6, B6)]))
def test_udp_arbitrary_bytes(raw: bytes, addrs: tuple) -> None:
    try:
        UdpRepr.parse(UdpView.checked(raw), src=addrs[0], dst=addrs[1])
    except MalformedPacket:
        pass


@settings(max_examples=60, deadline=None)
@given(udp_reprs, st.sampled_from([(A, B), (A6, B6)]), st.data())
def test_udp_scapy_both_ways(r: UdpRepr, addrs: tuple, data: st.DataObject) -> None:
    src, dst = addrs
    payload = data.draw(st.binary(min_size=r.payload_len, max_size=r.payload_len))
    L3 = scapy.IP if src.version == 4 else scapy.IPv6
    theirs = L3(src=str(src), dst=str(dst)) / scapy.UDP(sport=r.src_port, dport=r.dst_port) / \
        scapy.Raw(payload)
    raw_theirs = bytes(theirs)
    udp_theirs = raw_theirs[20 if src.version == 4 else 40:]
    assert UdpRepr.parse(UdpView.checked(udp_theirs), src=src, dst=dst) == r
    ours = r.to_bytes(payload, src=src, dst=dst)
    assert ours == udp_theirs   # same checksum, bit for bit
    outer = (L3(src=str(src), dst=str(dst), proto=17) if src.version == 4
             else L3(src=str(src), dst=str(dst), nh=17))
    dissected = L3(bytes(outer / scapy.Raw(ours)))
    u = dissected[scapy.UDP]
    assert (u.sport, u.dport, u.len, u.chksum) == (r.src_port, r.dst_port, 8 + r.payload_len,
                                                   struct.unpack_from("!H", ours, 6)[0])
