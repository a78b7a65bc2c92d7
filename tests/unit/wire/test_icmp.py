"""ICMPv4 and ICMPv6 (echo, errors): fixed bytes, emit, checksums, scapy both ways."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netvisor.tcpip.errors import MalformedPacket, Truncated
from netvisor.tcpip.wire import checksum as C
from netvisor.tcpip.wire import icmpv4 as I4
from netvisor.tcpip.wire import icmpv6 as I6
from netvisor.tcpip.wire.checksum import ChecksumMode
from netvisor.tcpip.wire.icmpv4 import Icmpv4Repr, Icmpv4View
from netvisor.tcpip.wire.icmpv6 import Icmpv6Repr, Icmpv6View
from netvisor.tcpip.wire.ipv4 import IPv4Repr, IPv4View
from netvisor.tcpip.wire.ipv6 import IPv6Repr, IPv6View

from .strategies import u8, u16, u32

scapy = pytest.importorskip("scapy.all")

A4 = ipaddress.IPv4Address("192.0.2.1")
B4 = ipaddress.IPv4Address("192.0.2.2")
A6 = ipaddress.IPv6Address("2001:db8::1")
B6 = ipaddress.IPv6Address("2001:db8::2")

QUOTED4 = IPv4Repr(B4, A4, 17, 8, ttl=1).to_bytes(bytes.fromhex("d431 0035 0008 0000"))
QUOTED6 = IPv6Repr(B6, A6, 17, 8).to_bytes(bytes.fromhex("d431 0035 0008 0000"))


def _with_checksum(raw: bytes) -> bytes:
    buf = bytearray(raw)
    struct.pack_into("!H", buf, 2, C.checksum(buf))
    return bytes(buf)


def test_icmpv4_echo_fixed_bytes() -> None:
    raw = _with_checksum(bytes.fromhex("0800 0000 1234 0005") + b"ping")
    v = Icmpv4View.checked(raw)
    assert (v.type, v.code, v.rest, bytes(v.data)) == (8, 0, 0x12340005, b"ping")
    assert v.checksum_ok()
    r = Icmpv4Repr.parse(v)
    assert (r.type, r.ident, r.seq, r.data) == (I4.ECHO_REQUEST, 0x1234, 5, b"ping")
    assert r == Icmpv4Repr.echo_request(0x1234, 5, b"ping") and not r.is_error


def test_icmpv4_errors_fixed_bytes() -> None:
    frag = Icmpv4Repr.parse(Icmpv4View.checked(
        _with_checksum(bytes.fromhex("0304 0000 0000 05dc") + QUOTED4)))
    assert frag.is_error and frag.code == I4.UNREACH_FRAG_NEEDED and frag.mtu == 1500
    q = IPv4View.checked(frag.data, allow_truncated=True)
    assert (q.src, q.dst, q.protocol) == (B4, A4, 17)
    redir = Icmpv4Repr.parse(Icmpv4View.checked(
        _with_checksum(bytes.fromhex("0501 0000 c0000263") + QUOTED4)))
    assert redir.gateway == ipaddress.IPv4Address("192.0.2.99") and redir.code == I4.REDIRECT_HOST
    pp = Icmpv4Repr.parse(Icmpv4View.checked(
        _with_checksum(bytes.fromhex("0c00 0000 14000000") + QUOTED4)))
    assert pp.pointer == 20 and pp.mtu == 0 and pp.gateway is None
    te = Icmpv4Repr.time_exceeded(I4.TIME_EXCEEDED_TTL, QUOTED4)
    assert Icmpv4Repr.parse(Icmpv4View.checked(te.to_bytes())) == te


def test_icmpv4_emit_writes_every_byte() -> None:
    r = Icmpv4Repr.dest_unreachable(I4.UNREACH_FRAG_NEEDED, QUOTED4[:28], mtu=1400)
    buf = bytearray(b"\xaa" * 40)
    assert r.emit(buf, 2) == 36
    assert buf[:2] == b"\xaa\xaa" and buf[38:] == b"\xaa\xaa"
    assert buf[2:10] == _with_checksum(bytes.fromhex("0304 0000 0000 0578") + QUOTED4[:28])[:8]


def test_icmpv4_bad_inputs() -> None:
    with pytest.raises(Truncated):
        Icmpv4View.checked(b"\x08\x00\x00\x00\x00\x00\x00")
    bad = bytearray(Icmpv4Repr.echo_reply(1, 2, b"x").to_bytes())
    bad[-1] ^= 1
    with pytest.raises(MalformedPacket):
        Icmpv4Repr.parse(Icmpv4View.checked(bad))
    assert Icmpv4Repr.parse(Icmpv4View.checked(bad), verify_checksum=False).seq == 2
    short_quote = Icmpv4Repr(I4.DEST_UNREACHABLE, 3, 0, b"x" * 19).to_bytes()
    with pytest.raises(MalformedPacket):
        Icmpv4Repr.parse(Icmpv4View.checked(short_quote))


icmpv4_reprs = st.one_of(
    st.builds(Icmpv4Repr.echo_request, u16, u16, st.binary(max_size=64)),
    st.builds(Icmpv4Repr.echo_reply, u16, u16, st.binary(max_size=64)),
    st.builds(Icmpv4Repr.dest_unreachable, u8, st.just(QUOTED4), mtu=u16),
    st.builds(Icmpv4Repr.time_exceeded, st.integers(0, 1), st.just(QUOTED4)),
    st.builds(Icmpv4Repr.parameter_problem, u8, st.just(QUOTED4)),
    st.builds(Icmpv4Repr.redirect, st.integers(0, 3),
              st.builds(ipaddress.IPv4Address, u32), st.just(QUOTED4)),
    st.builds(Icmpv4Repr, st.integers(17, 255), u8, u32, st.binary(max_size=16)),
)


@settings(max_examples=200, deadline=None)
@given(icmpv4_reprs)
def test_icmpv4_round_trip(r: Icmpv4Repr) -> None:
    assert Icmpv4Repr.parse(Icmpv4View.checked(r.to_bytes())) == r


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=48))
def test_icmpv4_arbitrary_bytes(raw: bytes) -> None:
    for verify in (True, False):
        try:
            Icmpv4Repr.parse(Icmpv4View.checked(raw), verify_checksum=verify)
        except MalformedPacket:
            pass


def test_icmpv4_scapy_both_ways() -> None:
    cases = [
        (scapy.ICMP(type=8, id=7, seq=9) / b"abc", Icmpv4Repr.echo_request(7, 9, b"abc")),
        (scapy.ICMP(type=0, id=1, seq=65535), Icmpv4Repr.echo_reply(1, 65535)),
        (scapy.ICMP(type=3, code=4, nexthopmtu=1280) / QUOTED4,
         Icmpv4Repr.dest_unreachable(4, QUOTED4, mtu=1280)),
        (scapy.ICMP(type=11, code=1) / QUOTED4, Icmpv4Repr.time_exceeded(1, QUOTED4)),
        (scapy.ICMP(type=12, ptr=3) / QUOTED4, Icmpv4Repr.parameter_problem(3, QUOTED4)),
        (scapy.ICMP(type=5, code=1, gw="10.9.8.7") / QUOTED4,
         Icmpv4Repr.redirect(1, ipaddress.IPv4Address("10.9.8.7"), QUOTED4)),
    ]
    for theirs, ours in cases:
        raw_theirs = bytes(theirs)
        assert Icmpv4Repr.parse(Icmpv4View.checked(raw_theirs)) == ours
        raw_ours = ours.to_bytes()
        assert raw_ours == raw_theirs
        d = scapy.ICMP(raw_ours)
        assert (d.type, d.code, d.chksum) == (ours.type, ours.code,
                                              struct.unpack_from("!H", raw_ours, 2)[0])
        del d.chksum
        assert scapy.ICMP(bytes(d)).chksum == struct.unpack_from("!H", raw_ours, 2)[0]


# -- ICMPv6 -------------------------------------------------------------------------------

def test_icmpv6_echo_fixed_bytes_and_checksum() -> None:
    raw = bytearray(bytes.fromhex("8000 0000 abcd 0001") + b"ping")
    I6.fill_checksum(raw, 0, len(raw), A6, B6)
    v = Icmpv6View.checked(raw)
    assert (v.type, v.code, v.rest, bytes(v.data)) == (128, 0, 0xABCD0001, b"ping")
    assert v.checksum_ok(A6, B6) and not v.checksum_ok(B6, B6)
    r = Icmpv6Repr.parse(v, src=A6, dst=B6)
    assert r == Icmpv6Repr.echo_request(0xABCD, 1, b"ping")
    assert (r.ident, r.seq, r.is_error) == (0xABCD, 1, False)
    with pytest.raises(MalformedPacket):
        Icmpv6Repr.parse(v, src=A6, dst=A6)


def test_icmpv6_errors_fixed_fields() -> None:
    ptb = Icmpv6Repr.packet_too_big(1280, QUOTED6)
    raw = ptb.to_bytes(src=A6, dst=B6)
    assert raw[:8] == raw[:4] + bytes.fromhex("00000500") and raw[0] == 2
    r = Icmpv6Repr.parse(Icmpv6View.checked(raw), src=A6, dst=B6)
    assert r.mtu == 1280 and r.is_error and r.pointer == 0
    q = IPv6View.checked(r.data, allow_truncated=True)
    assert (q.src, q.dst, q.next_header) == (B6, A6, 17)
    pp = Icmpv6Repr.parameter_problem(I6.PARAMPROB_NEXT_HEADER, 40, QUOTED6)
    assert Icmpv6Repr.parse(Icmpv6View.checked(pp.to_bytes(src=A6, dst=B6)),
                            src=A6, dst=B6).pointer == 40


def test_icmpv6_emit_writes_every_byte_and_partial() -> None:
    r = Icmpv6Repr.dest_unreachable(I6.UNREACH_PORT, b"q" * 4)
    buf = bytearray(b"\xaa" * 14)
    assert r.emit(buf, 1, src=A6, dst=B6) == 12
    assert buf[0] == buf[13] == 0xAA
    assert buf[1:13] == r.to_bytes(src=A6, dst=B6)
    assert bytes(buf[1:3]) + bytes(buf[5:13]) == bytes.fromhex("0104 00000000") + b"qqqq"
    part = bytearray(12)
    r.emit(part, src=A6, dst=B6, checksum=ChecksumMode.PARTIAL)
    struct.pack_into("!H", part, 2, C.checksum(part))   # the NIC's half
    assert part == buf[1:13]
    with pytest.raises(ValueError):
        r.to_bytes(src=A6, dst=B6, checksum=ChecksumMode.NONE)


def test_icmpv6_error_quoting_less_than_a_header() -> None:
    raw = Icmpv6Repr.dest_unreachable(I6.UNREACH_PORT, QUOTED6[:39]).to_bytes(src=A6, dst=B6)
    with pytest.raises(MalformedPacket):
        Icmpv6Repr.parse(Icmpv6View.checked(raw), src=A6, dst=B6)
    ok = Icmpv6Repr.dest_unreachable(I6.UNREACH_PORT, QUOTED6[:40]).to_bytes(src=A6, dst=B6)
    assert Icmpv6Repr.parse(Icmpv6View.checked(ok), src=A6, dst=B6).code == I6.UNREACH_PORT


def test_icmpv6_short_messages() -> None:
    with pytest.raises(Truncated):
        Icmpv6View.checked(b"\x80\x00\x00")
    raw = bytearray(b"\x80\x00\x00\x00\x00\x00")
    I6.fill_checksum(raw, 0, 6, A6, B6)
    with pytest.raises(MalformedPacket):
        Icmpv6Repr.parse(Icmpv6View.checked(raw), src=A6, dst=B6)


icmpv6_reprs = st.one_of(
    st.builds(Icmpv6Repr.echo_request, u16, u16, st.binary(max_size=64)),
    st.builds(Icmpv6Repr.echo_reply, u16, u16, st.binary(max_size=64)),
    st.builds(Icmpv6Repr.dest_unreachable, st.integers(0, 6), st.just(QUOTED6)),
    st.builds(Icmpv6Repr.packet_too_big, u32, st.just(QUOTED6)),
    st.builds(Icmpv6Repr.time_exceeded, st.integers(0, 1), st.just(QUOTED6)),
    st.builds(Icmpv6Repr.parameter_problem, st.integers(0, 3), u32, st.just(QUOTED6)),
    st.builds(Icmpv6Repr, u8.filter(lambda t: not 1 <= t <= 4), u8, u32, st.binary(max_size=16)),
)


@settings(max_examples=200, deadline=None)
@given(icmpv6_reprs)
def test_icmpv6_round_trip(r: Icmpv6Repr) -> None:
    raw = r.to_bytes(src=A6, dst=B6)
    assert Icmpv6Repr.parse(Icmpv6View.checked(raw), src=A6, dst=B6) == r


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=48))
def test_icmpv6_arbitrary_bytes(raw: bytes) -> None:
    try:
        Icmpv6Repr.parse(Icmpv6View.checked(raw), src=A6, dst=B6)
    except MalformedPacket:
        pass
    try:
        Icmpv6Repr.parse(Icmpv6View.checked(raw), verify_checksum=False)
    except MalformedPacket:
        pass


def _icmp6_of(pkt: object) -> bytes:
    return bytes(scapy.IPv6(src=str(A6), dst=str(B6)) / pkt)[40:]


def test_icmpv6_scapy_both_ways() -> None:
    cases = [
        (scapy.ICMPv6EchoRequest(id=3, seq=4, data=b"abc"), Icmpv6Repr.echo_request(3, 4, b"abc")),
        (scapy.ICMPv6EchoReply(id=65535, seq=0), Icmpv6Repr.echo_reply(65535, 0)),
        (scapy.ICMPv6DestUnreach(code=4) / QUOTED6, Icmpv6Repr.dest_unreachable(4, QUOTED6)),
        (scapy.ICMPv6PacketTooBig(mtu=1400) / QUOTED6, Icmpv6Repr.packet_too_big(1400, QUOTED6)),
        (scapy.ICMPv6TimeExceeded(code=1) / QUOTED6, Icmpv6Repr.time_exceeded(1, QUOTED6)),
        (scapy.ICMPv6ParamProblem(code=2, ptr=42) / QUOTED6,
         Icmpv6Repr.parameter_problem(2, 42, QUOTED6)),
    ]
    for theirs, ours in cases:
        raw_theirs = _icmp6_of(theirs)
        assert Icmpv6Repr.parse(Icmpv6View.checked(raw_theirs), src=A6, dst=B6) == ours
        raw_ours = ours.to_bytes(src=A6, dst=B6)
        assert raw_ours == raw_theirs   # same checksum too
        pkt = scapy.IPv6(bytes(scapy.IPv6(src=str(A6), dst=str(B6), nh=58) / scapy.Raw(raw_ours)))
        layer = pkt.getlayer(1)
        assert (layer.type, layer.code, layer.cksum) == (
            ours.type, ours.code, struct.unpack_from("!H", raw_ours, 2)[0])
