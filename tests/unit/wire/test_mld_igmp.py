"""MLD (RFC 3810 / 2710) and IGMP (RFC 3376 / 2236): fixed bytes, round trips, scapy both ways."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netvisor.tcpip.errors import MalformedPacket, Truncated
from netvisor.tcpip.wire import checksum as C
from netvisor.tcpip.wire import icmpv6 as I6
from netvisor.tcpip.wire import igmp as G
from netvisor.tcpip.wire import mld as M
from netvisor.tcpip.wire.icmpv6 import Icmpv6View
from netvisor.tcpip.wire.igmp import IgmpView

from .strategies import aligned_bytes, u8, u16, v4, v6

scapy = pytest.importorskip("scapy.all")
igmp_mod = pytest.importorskip("scapy.contrib.igmp")
igmpv3_mod = pytest.importorskip("scapy.contrib.igmpv3")

LL = ipaddress.IPv6Address("fe80::1")
ALL_NODES = ipaddress.IPv6Address("ff02::1")
GROUP6 = ipaddress.IPv6Address("ff02::fb")
SRC6 = ipaddress.IPv6Address("fe80::9")
GROUP4 = ipaddress.IPv4Address("239.1.1.1")


def _icmp6(body: bytes, src: ipaddress.IPv6Address = LL,
           dst: ipaddress.IPv6Address = ALL_NODES) -> bytes:
    buf = bytearray(body)
    I6.fill_checksum(buf, 0, len(buf), src, dst)
    return bytes(buf)


def _mld(raw: bytes, dst: ipaddress.IPv6Address = ALL_NODES) -> M.MldRepr:
    return M.parse_mld(Icmpv6View.checked(raw), src=LL, dst=dst)


def test_mld_codes() -> None:
    assert M.decode_mrc(1000) == 1000
    assert M.decode_mrc(0x8000) == 0x1000 << 3
    assert M.decode_mrc(0xFFFF) == 0x1FFF << 10
    for delay in (0, 1, 0x7FFF, 0x8000, 40000, 1 << 20, 0x1FFF << 10):
        assert M.decode_mrc(M.encode_mrc(delay)) <= delay
        assert M.decode_mrc(M.encode_mrc(delay)) > delay - (delay >> 11) - 1
    assert M.decode_qqic(125) == 125 and M.decode_qqic(0x80) == 0x10 << 3
    assert all(M.decode_qqic(M.encode_qqic(s)) <= s for s in (0, 127, 128, 1000, 31744))


def test_mld_fixed_bytes() -> None:
    q2 = _mld(_icmp6(bytes.fromhex("8200 0000 03e8 0000") + GROUP6.packed
                     + bytes.fromhex("0a 7d 0001") + SRC6.packed))
    assert q2 == M.MldQuery(1000, GROUP6, v2=True, suppress=True, qrv=2, qqic=125,
                            sources=(SRC6,))
    assert q2.max_resp_delay_ms == 1000 and q2.query_interval == 125
    q1 = _mld(_icmp6(bytes.fromhex("8200 0000 2710 0000") + bytes(16)))
    assert q1 == M.MldQuery(10000, ipaddress.IPv6Address("::"), v2=False)
    rep1 = _mld(_icmp6(bytes.fromhex("8300 0000 0000 0000") + GROUP6.packed))
    assert rep1 == M.MldV1Message(I6.MLD_REPORT_V1, GROUP6)
    rep2 = _mld(_icmp6(bytes.fromhex("8f00 0000 0000 0002")
                       + bytes.fromhex("04 00 0000") + GROUP6.packed
                       + bytes.fromhex("01 01 0001") + GROUP6.packed + SRC6.packed + b"auxd"))
    assert rep2 == M.MldV2Report((M.MldRecord(M.CHANGE_TO_EXCLUDE, GROUP6),
                                  M.MldRecord(M.MODE_IS_INCLUDE, GROUP6, (SRC6,), b"auxd")))


def test_mld_emit_writes_every_byte() -> None:
    r = M.MldV2Report((M.MldRecord(M.ALLOW_NEW_SOURCES, GROUP6, (SRC6,)),))
    buf = bytearray(b"\xaa" * (r.buffer_len + 2))
    assert r.emit(buf, 1, src=LL, dst=M.ALL_MLDV2_ROUTERS) == 44
    assert buf[0] == buf[-1] == 0xAA
    assert buf[1:45] == _icmp6(bytes.fromhex("8f00 0000 0000 0001 05 00 0001") + GROUP6.packed
                               + SRC6.packed, dst=M.ALL_MLDV2_ROUTERS)


@pytest.mark.parametrize("body,exc", [
    (bytes.fromhex("8200 0000 03e8 0000") + bytes(16) + b"\x00\x00", MalformedPacket),  # 26 bytes
    (bytes.fromhex("8200 0000 03e8 0000") + bytes(16) + bytes.fromhex("0000 0002") + bytes(16),
     Truncated),                                                               # 2 sources, 1 there
    (bytes.fromhex("8300 0000 0000 0000") + bytes(8), MalformedPacket),        # short v1 report
    (bytes.fromhex("8f00 0000 0000 0001") + bytes(12), Truncated),             # record cut
    (bytes.fromhex("8f00 0000 0000 0001 0401 0000") + bytes(16), Truncated),   # aux past the end
    (bytes.fromhex("8f00 0000"), MalformedPacket),
    (bytes.fromhex("8000 0000 0000 0000"), MalformedPacket),                   # not MLD
])
def test_mld_invalid(body: bytes, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        _mld(_icmp6(body))


def test_mld_bad_checksum() -> None:
    raw = bytearray(M.MldV1Message(I6.MLD_DONE, GROUP6).to_bytes(src=LL, dst=ALL_NODES))
    raw[10] ^= 1
    with pytest.raises(MalformedPacket):
        _mld(bytes(raw))


mld_reprs = st.one_of(
    st.builds(M.MldQuery, u16, v6, st.just(True), st.booleans(), st.integers(0, 7), u8,
              st.lists(v6, max_size=3).map(tuple)),
    st.builds(M.MldQuery, u16, v6, st.just(False)),
    st.builds(M.MldV1Message, st.sampled_from([I6.MLD_REPORT_V1, I6.MLD_DONE]), v6, u16),
    st.builds(M.MldV2Report, st.lists(st.builds(
        M.MldRecord, st.integers(1, 6), v6, st.lists(v6, max_size=2).map(tuple),
        aligned_bytes(4, max_units=2)), max_size=3).map(tuple)),
)


@settings(max_examples=200, deadline=None)
@given(mld_reprs)
def test_mld_round_trip(r: M.MldRepr) -> None:
    raw = r.to_bytes(src=LL, dst=ALL_NODES)
    assert len(raw) == r.buffer_len
    assert _mld(raw) == r


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(M.MLD_TYPES)), st.binary(max_size=80))
def test_mld_arbitrary_bytes(icmp_type: int, tail: bytes) -> None:
    try:
        M.parse_mld(Icmpv6View.checked(bytes([icmp_type]) + tail), verify_checksum=False)
    except MalformedPacket:
        pass


def _scapy6(pkt: object, dst: ipaddress.IPv6Address) -> bytes:
    return bytes(scapy.IPv6(src=str(LL), dst=str(dst)) / pkt)[40:]


def test_mld_scapy_both_ways() -> None:
    q = scapy.ICMPv6MLQuery2(mrd=1000, mladdr=str(GROUP6), S=1, QRV=2, QQIC=125,
                             sources=[str(SRC6)])
    ours_q = M.MldQuery(1000, GROUP6, suppress=True, qrv=2, qqic=125, sources=(SRC6,))
    assert _mld(_scapy6(q, ALL_NODES)) == ours_q
    assert ours_q.to_bytes(src=LL, dst=ALL_NODES) == _scapy6(q, ALL_NODES)
    rep = scapy.ICMPv6MLReport2(records=[
        scapy.ICMPv6MLDMultAddrRec(rtype=4, dst=str(GROUP6)),
        scapy.ICMPv6MLDMultAddrRec(rtype=5, dst="ff05::2", sources=[str(SRC6), "fe80::a"])])
    ours_rep = M.MldV2Report((
        M.MldRecord(M.CHANGE_TO_EXCLUDE, GROUP6),
        M.MldRecord(M.ALLOW_NEW_SOURCES, ipaddress.IPv6Address("ff05::2"),
                    (SRC6, ipaddress.IPv6Address("fe80::a")))))
    dst = M.ALL_MLDV2_ROUTERS
    assert _mld(_scapy6(rep, dst), dst=dst) == ours_rep
    raw = ours_rep.to_bytes(src=LL, dst=dst)
    d = scapy.IPv6(bytes(scapy.IPv6(src=str(LL), dst=str(dst), nh=58) / scapy.Raw(raw)))
    r2 = d[scapy.ICMPv6MLReport2]
    assert r2.records_number == 2
    # scapy 2.8 dissects the second record as the payload of the first: flatten.
    recs = []
    for rec in r2.records:
        while isinstance(rec, scapy.ICMPv6MLDMultAddrRec):
            recs.append(rec)
            rec = rec.payload
    assert [(x.rtype, x.dst, list(x.sources)) for x in recs] == [
        (4, str(GROUP6), []), (5, "ff05::2", [str(SRC6), "fe80::a"])]
    again = scapy.ICMPv6MLReport2(raw)
    del again.cksum
    assert _scapy6(again, dst) == raw
    done = scapy.ICMPv6MLDone(mladdr=str(GROUP6))
    assert _mld(_scapy6(done, ALL_NODES)) == M.MldV1Message(I6.MLD_DONE, GROUP6)
    v1q = scapy.ICMPv6MLQuery(mrd=500, mladdr="::")
    assert _mld(_scapy6(v1q, ALL_NODES)) == M.MldQuery(500, ipaddress.IPv6Address("::"), v2=False)


# -- IGMP ---------------------------------------------------------------------------------

def _igmp(body: bytes) -> bytes:
    buf = bytearray(body)
    struct.pack_into("!H", buf, 2, C.checksum(buf))
    return bytes(buf)


def _parse4(raw: bytes) -> G.IgmpRepr:
    return G.parse_igmp(IgmpView.checked(raw))


def test_igmp_fixed_bytes() -> None:
    assert _parse4(_igmp(bytes.fromhex("1100 0000 00000000"))) == \
        G.IgmpQuery(0, ipaddress.IPv4Address("0.0.0.0"), version=1)
    q2 = _parse4(_igmp(bytes.fromhex("1164 0000 e0000001")))
    assert q2 == G.IgmpQuery(100, G.ALL_SYSTEMS, version=2) and q2.max_resp_time == 10.0
    q3 = _parse4(_igmp(bytes.fromhex("1180 0000 ef010101 0a 7d 0001 0a000001")))
    assert q3 == G.IgmpQuery(0x80, GROUP4, version=3, suppress=True, qrv=2, qqic=125,
                             sources=(ipaddress.IPv4Address("10.0.0.1"),))
    assert q3.max_resp_time == (0x10 << 3) / 10
    assert _parse4(_igmp(bytes.fromhex("1700 0000 ef010101"))) == \
        G.IgmpV2Message(G.V2_LEAVE_GROUP, GROUP4)
    rep = _parse4(_igmp(bytes.fromhex("2200 0000 0000 0001 02 01 0001 ef010101 01020304 61757864")))
    assert rep == G.IgmpV3Report((G.IgmpRecord(G.MODE_IS_EXCLUDE, GROUP4,
                                                (ipaddress.IPv4Address("1.2.3.4"),), b"auxd"),))


def test_igmp_emit_writes_every_byte() -> None:
    r = G.IgmpV3Report((G.IgmpRecord(G.CHANGE_TO_EXCLUDE, GROUP4),))
    buf = bytearray(b"\xaa" * 18)
    assert r.emit(buf, 1) == 16
    assert buf[0] == buf[17] == 0xAA
    assert buf[1:17] == _igmp(bytes.fromhex("2200 0000 0000 0001 04 00 0000 ef010101"))


@pytest.mark.parametrize("raw,exc", [
    (b"\x11\x00\x00", Truncated),
    (_igmp(bytes.fromhex("1164 0000 e0000001 0000")), MalformedPacket),   # 10-byte query
    (_igmp(bytes.fromhex("1164 0000 e0000001 0000 0002 01020304")), Truncated),
    (_igmp(bytes.fromhex("2200 0000 0000 0002 01 00 0000 ef010101")), Truncated),
    (_igmp(bytes.fromhex("2200 0000 0000 0001 01 02 0000 ef010101 0000")), Truncated),
    (_igmp(bytes.fromhex("4200 0000 00000000")), MalformedPacket),        # unknown type
    (bytes.fromhex("1600 0000 ef010101"), MalformedPacket),               # bad checksum
])
def test_igmp_invalid(raw: bytes, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        _parse4(raw)


igmp_reprs = st.one_of(
    st.builds(G.IgmpQuery, u8, v4, st.just(3), st.booleans(), st.integers(0, 7), u8,
              st.lists(v4, max_size=3).map(tuple)),
    st.builds(G.IgmpQuery, st.integers(1, 255), v4, st.just(2)),
    st.builds(G.IgmpQuery, st.just(0), v4, st.just(1)),
    st.builds(G.IgmpV2Message, st.sampled_from([0x12, 0x16, 0x17]), v4, u8),
    st.builds(G.IgmpV3Report, st.lists(st.builds(
        G.IgmpRecord, st.integers(1, 6), v4, st.lists(v4, max_size=3).map(tuple),
        aligned_bytes(4, max_units=2)), max_size=3).map(tuple)),
)


@settings(max_examples=200, deadline=None)
@given(igmp_reprs)
def test_igmp_round_trip(r: G.IgmpRepr) -> None:
    raw = r.to_bytes()
    assert len(raw) == r.buffer_len and _parse4(raw) == r


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([0x11, 0x12, 0x16, 0x17, 0x22]), st.binary(max_size=48))
def test_igmp_arbitrary_bytes(t: int, tail: bytes) -> None:
    try:
        G.parse_igmp(IgmpView.checked(bytes([t]) + tail), verify_checksum=False)
    except MalformedPacket:
        pass


def test_igmp_scapy_both_ways() -> None:
    IGMP = igmp_mod.IGMP
    mq, mr, gr = igmpv3_mod.IGMPv3mq, igmpv3_mod.IGMPv3mr, igmpv3_mod.IGMPv3gr
    cases = [
        (IGMP(type=0x16, gaddr=str(GROUP4)), G.IgmpV2Message(G.V2_MEMBERSHIP_REPORT, GROUP4)),
        (IGMP(type=0x17, gaddr=str(GROUP4)), G.IgmpV2Message(G.V2_LEAVE_GROUP, GROUP4)),
        (IGMP(type=0x11, mrcode=50, gaddr="0.0.0.0"),
         G.IgmpQuery(50, ipaddress.IPv4Address("0.0.0.0"), version=2)),
        (mq(mrcode=100, gaddr=str(GROUP4), s=1, qrv=2, qqic=125, srcaddrs=["10.0.0.1"]),
         G.IgmpQuery(100, GROUP4, version=3, suppress=True, qrv=2, qqic=125,
                     sources=(ipaddress.IPv4Address("10.0.0.1"),))),
        (mr(records=[gr(rtype=4, maddr=str(GROUP4)),
                     gr(rtype=1, maddr="239.2.2.2", srcaddrs=["1.2.3.4", "5.6.7.8"])]),
         G.IgmpV3Report((G.IgmpRecord(4, GROUP4),
                         G.IgmpRecord(1, ipaddress.IPv4Address("239.2.2.2"),
                                      (ipaddress.IPv4Address("1.2.3.4"),
                                       ipaddress.IPv4Address("5.6.7.8")))))),
    ]
    for theirs, ours in cases:
        raw_theirs = bytes(theirs)
        assert _parse4(raw_theirs) == ours
        raw_ours = ours.to_bytes()
        assert raw_ours == raw_theirs     # checksum included
        again = type(theirs)(raw_ours)
        assert again.chksum == struct.unpack_from("!H", raw_ours, 2)[0]
        del again.chksum
        assert bytes(again) == raw_ours   # scapy recomputes our checksum
