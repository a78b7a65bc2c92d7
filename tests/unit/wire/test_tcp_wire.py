"""TCP wire format: fixed bytes, scapy in both directions, hypothesis round trips."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings, strategies as st

from netvisor.tcpip.errors import MalformedPacket, Truncated
from netvisor.tcpip.wire import seq as S
from netvisor.tcpip.wire.tcp import TcpFlags, TcpRepr, TcpView

scapy_all = pytest.importorskip("scapy.all")
IP, IPv6, TCP, Raw = scapy_all.IP, scapy_all.IPv6, scapy_all.TCP, scapy_all.Raw

A4 = ipaddress.IPv4Address("10.0.0.1")
B4 = ipaddress.IPv4Address("10.0.0.2")
A6 = ipaddress.IPv6Address("fd00::1")
B6 = ipaddress.IPv6Address("fd00::2")


def test_fixed_bytes_every_field() -> None:
    raw = bytes.fromhex(
        "1f90" "0050" "00000064" "000000c8" "a0" "12" "ffff" "0000" "0000"
        "020405b4" "0402080a" "00000001" "00000002" "01030307")
    view = TcpView.checked(raw)
    r = TcpRepr.parse(view, verify_checksum=False)
    assert (r.src_port, r.dst_port, r.seq, r.ack) == (8080, 80, 100, 200)
    assert r.flags == TcpFlags.SYN and r.window == 0xFFFF
    assert r.mss == 1460 and r.sack_permitted and r.timestamps == (1, 2) and r.window_scale == 7
    assert r.header_len == 40 and view.payload.nbytes == 0


def test_emit_into_junk_writes_every_byte() -> None:
    r = TcpRepr(1, 2, 3, 4, TcpFlags.PSH | TcpFlags.FIN, 5, 0, sack_blocks=((10, 20),),
                timestamps=(7, 8))
    buf = bytearray(b"\xaa" * (r.header_len + 3))
    r.emit(buf, 0, src=A4, dst=B4, payload=b"xyz")
    r2 = TcpRepr.parse(TcpView.checked(buf), src=A4, dst=B4)
    assert r2 == r
    assert bytes(buf[-3:]) == b"xyz"


@pytest.mark.parametrize("n", [0, 5, 19])
def test_truncated(n: int) -> None:
    with pytest.raises(Truncated):
        TcpView.checked(bytes(n))


def test_data_offset_below_five_and_past_end() -> None:
    raw = bytearray(20)
    raw[12] = 4 << 4
    with pytest.raises(MalformedPacket):
        TcpView.checked(raw)
    raw[12] = 6 << 4
    with pytest.raises(Truncated):
        TcpView.checked(raw)


@pytest.mark.parametrize("opts", [b"\x02\x00\x00\x00", b"\x01\x01\x01\x08", b"\x05\x0c\x00\x00"])
def test_bad_option_lengths(opts: bytes) -> None:
    raw = bytearray(20) + opts
    raw[12] = 6 << 4
    with pytest.raises(MalformedPacket):
        TcpRepr.parse(TcpView.checked(raw), verify_checksum=False)


def test_unknown_options_skipped_and_wrong_known_length_ignored() -> None:
    opts = b"\x1e\x04\xab\xcd" + b"\x02\x03\x05" + b"\x01" + b"\x03\x03\x02\x00"
    raw = bytearray(20) + opts
    raw[12] = (5 + len(opts) // 4) << 4
    r = TcpRepr.parse(TcpView.checked(raw), verify_checksum=False)
    assert r.mss is None and r.window_scale == 2


def test_bad_checksum_raises() -> None:
    raw = TcpRepr(1, 2, 3, None, TcpFlags.SYN).to_bytes(src=A4, dst=B4)
    TcpRepr.parse(TcpView.checked(raw), src=A4, dst=B4)
    raw[16] ^= 1
    with pytest.raises(MalformedPacket):
        TcpRepr.parse(TcpView.checked(raw), src=A4, dst=B4)


@pytest.mark.parametrize("src,dst,ipcls", [(A4, B4, "v4"), (A6, B6, "v6")])
def test_ours_vs_scapy(src, dst, ipcls) -> None:  # type: ignore[no-untyped-def]
    r = TcpRepr(4321, 80, 0xFFFFFFF0, 77, TcpFlags.PSH, 512, 0, mss=1400, window_scale=9,
                sack_permitted=True, timestamps=(123, 456))
    seg = bytes(r.to_bytes(src=src, dst=dst, payload=b"hello"))
    ip = (IP(src=str(src), dst=str(dst), proto=6) if ipcls == "v4"
          else IPv6(src=str(src), dst=str(dst), nh=6))
    parsed = type(ip)(bytes(ip / Raw(seg)))  # scapy computes nothing: checks ours
    t = parsed[TCP]
    assert (t.sport, t.dport, t.seq, t.ack, t.window) == (4321, 80, 0xFFFFFFF0, 77, 512)
    assert str(t.flags) == "PA"
    opts = dict((k, v) for k, v in t.options if k != "NOP")
    assert opts["MSS"] == 1400 and opts["WScale"] == 9 and opts["Timestamp"] == (123, 456)
    assert "SAckOK" in opts and bytes(t.payload) == b"hello"
    # scapy recomputes the checksum when we delete it: must equal ours.
    t2 = TCP(seg)
    del t2.chksum
    rebuilt = type(ip)(bytes(ip / t2))[TCP]
    assert rebuilt.chksum == struct.unpack("!H", seg[16:18])[0]


@pytest.mark.parametrize("src,dst,ipcls", [(A4, B4, "v4"), (A6, B6, "v6")])
def test_scapy_vs_ours(src, dst, ipcls) -> None:  # type: ignore[no-untyped-def]
    ip = IP(src=str(src), dst=str(dst)) if ipcls == "v4" else IPv6(src=str(src), dst=str(dst))
    pkt = ip / TCP(sport=1, dport=2, seq=5, ack=9, flags="SAE", window=1000,
                   options=[("MSS", 536), ("SAck", (100, 200, 300, 400)), ("NOP", None),
                            ("Timestamp", (1, 2)), ("EOL", None)]) / Raw(b"abc")
    seg = bytes(type(ip)(bytes(pkt))[TCP])
    r = TcpRepr.parse(TcpView.checked(seg), src=src, dst=dst)
    assert r.flags == TcpFlags.SYN | TcpFlags.ECE and r.ack == 9
    assert r.mss == 536 and r.sack_blocks == ((100, 200), (300, 400)) and r.timestamps == (1, 2)
    assert bytes(TcpView.checked(seg).payload) == b"abc"


def test_partial_checksum_completes_to_full() -> None:
    r = TcpRepr(1, 2, 3, 4, TcpFlags.PSH, 100)
    full = r.to_bytes(src=A4, dst=B4, payload=b"data!")
    part = r.to_bytes(src=A4, dst=B4, payload=b"data!", checksum="partial")
    from netvisor.tcpip.wire.checksum import checksum
    # The NIC sums the segment starting from the pseudo sum already in the field.
    assert checksum(part) == struct.unpack("!H", full[16:18])[0]


u32 = st.integers(0, 2**32 - 1)
u16 = st.integers(0, 2**16 - 1)
flags_st = st.sampled_from([f for f in TcpFlags if f not in (TcpFlags.ACK, TcpFlags.NONE)])


@st.composite
def reprs(draw: st.DrawFn) -> TcpRepr:
    ts = draw(st.none() | st.tuples(u32, u32))
    mss = draw(st.none() | u16)
    ws = draw(st.none() | st.integers(0, 255))
    sp = draw(st.booleans())
    used = (mss is not None) * 4 + (ts is not None) * 12 + (ws is not None) * 4
    used += 4 if sp and ts is None else 0
    nblocks = draw(st.integers(0, max(0, (40 - used - 4) // 8)))
    fl = TcpFlags.NONE
    for f in draw(st.lists(flags_st, max_size=4)):
        fl |= f
    return TcpRepr(draw(u16), draw(u16), draw(u32), draw(st.none() | u32), fl, draw(u16),
                   draw(u16), mss, ws, sp,
                   tuple(draw(st.lists(st.tuples(u32, u32), min_size=nblocks, max_size=nblocks))),
                   ts)


@settings(max_examples=200, deadline=None)
@given(reprs(), st.binary(max_size=64))
def test_roundtrip(r: TcpRepr, payload: bytes) -> None:
    seg = r.to_bytes(src=A4, dst=B4, payload=payload)
    view = TcpView.checked(seg)
    assert TcpRepr.parse(view, src=A4, dst=B4) == r
    assert bytes(view.payload) == payload


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_arbitrary_bytes_give_repr_or_malformed(data: bytes) -> None:
    try:
        TcpRepr.parse(TcpView.checked(data), verify_checksum=False)
    except MalformedPacket:
        pass


@given(u32, st.integers(-(2**31) + 1, 2**31 - 1))
def test_seq_arithmetic(a: int, n: int) -> None:
    b = S.seq_add(a, n)
    assert S.seq_diff(b, a) == n
    assert S.seq_lt(a, b) == (n > 0) and S.seq_gt(a, b) == (n < 0)
    assert S.seq_le(a, b) == (n >= 0)
    assert S.seq_max(a, b) == (b if n > 0 else a)
    if n >= 0:
        assert S.seq_in(a, a, b) == (n > 0) and not S.seq_in(b, a, b)
        assert S.seq_between(b, a, b) and S.seq_between(a, a, b)


def _outcome(fn):  # type: ignore[no-untyped-def]
    try:
        return fn()
    except (MalformedPacket, Truncated) as exc:
        return type(exc)


@settings(max_examples=300, deadline=None)
@given(reprs(), st.binary(max_size=64), st.booleans())
def test_parse_segment_equals_checked_parse(r: TcpRepr, payload: bytes, corrupt: bool) -> None:
    seg = r.to_bytes(src=A4, dst=B4, payload=payload)
    if corrupt:
        seg[4] ^= 0x40
    mv = memoryview(bytes(seg))
    rep, hl = TcpRepr.parse_segment(mv, src=A4, dst=B4) if not corrupt else (None, 0)
    if corrupt:
        with pytest.raises(MalformedPacket):
            TcpRepr.parse_segment(mv, src=A4, dst=B4)
        return
    assert rep == TcpRepr.parse(TcpView.checked(mv), src=A4, dst=B4) == r
    assert bytes(mv[hl:]) == payload


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_parse_segment_on_arbitrary_bytes_as_checked_parse(data: bytes) -> None:
    mv = memoryview(data)
    fast = _outcome(lambda: TcpRepr.parse_segment(mv, src=A4, dst=B4, verify_checksum=False)[0])
    slow = _outcome(lambda: TcpRepr.parse(TcpView.checked(mv), verify_checksum=False))
    assert fast == slow
