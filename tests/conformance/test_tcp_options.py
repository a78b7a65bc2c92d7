"""TCP option negotiation: MSS, window scale, SACK-permitted, timestamps.

RFC 9293 3.7.1 (MSS; 536 default for IPv4 when absent, RFC 8200 gives 1220 for
IPv6), RFC 7323 2.2/3.2 (WS and TS only when the SYN had them; TSecr echoes),
RFC 2018 (SACK only when permitted).
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import TCP

from tests.conformance.testbench import TCPConn, seq_add, tcp_established

OPTS = {
    "MSS": ("MSS", 1400),
    "WS": ("WScale", 7),
    "SACK": ("SAckOK", b""),
    "TS": ("Timestamp", (12345, 0)),
}
COMBOS = [(), ("MSS",), ("WS",), ("SACK",), ("TS",), ("MSS", "WS", "SACK", "TS")]


@pytest.mark.parametrize("family", [4, 6], ids=["v4", "v6"])
@pytest.mark.parametrize("present", COMBOS, ids=["-".join(c) or "none" for c in COMBOS])
def test_synack_options_follow_syn(tb, dut, present, family):
    """The SYN-ACK has MSS always, and WS/SACK-permitted/TS only if the SYN had them."""
    lfd, port = dut.tcp_listener(family)
    conn = TCPConn(tb, family, dport=port)
    synack = conn.connect(options=[OPTS[k] for k in present], ack=False)
    opts = dict(synack[TCP].options)
    assert "MSS" in opts
    assert ("WScale" in opts) == ("WS" in present)
    assert ("SAckOK" in opts) == ("SACK" in present)
    assert ("Timestamp" in opts) == ("TS" in present)
    if "TS" in present:
        assert opts["Timestamp"][1] == 12345
    if "WS" not in present:
        assert synack[TCP].window <= 65535


@pytest.mark.parametrize("family,default", [(4, 536), (6, 1220)], ids=["v4", "v6"])
def test_mss_default_without_option(tb, dut, family, default):
    """Without an MSS option the DUT sends at most 536 (IPv4) / 1220 (IPv6) bytes per segment."""
    conn, afd, _ = tcp_established(tb, dut, family, options=[])
    dut.send(afd, b"m" * 3000)
    first = conn.expect("A", timeout=1)
    assert len(first[TCP].payload) == default


def test_mss_option_respected(tb, dut):
    """The DUT's segments never exceed the MSS the TB announced."""
    conn, afd, _ = tcp_established(tb, dut, 4, options=[("MSS", 300)])
    dut.send(afd, b"m" * 1000)
    sizes = []
    while sum(sizes) < 1000:
        sizes.append(len(conn.expect("A", seq=conn.rcv_nxt, timeout=1)[TCP].payload))
        conn.send("A")
    assert max(sizes) == 300 and sizes[0] == 300


def test_window_scale_applied_to_tb_window(tb, dut):
    """With WS=7 negotiated, a window field of 4 means 512 bytes; the DUT sends exactly that."""
    conn, afd, _ = tcp_established(tb, dut, 4, options=[("MSS", 1000), ("WScale", 7)], window=4)
    conn.send("A", window=4)
    dut.send(afd, b"w" * 2000)
    got = 0
    while got < 512:
        got += len(conn.expect("A", seq=conn.rcv_nxt, timeout=1)[TCP].payload)
    assert got == 512
    conn.expect_none(seq=conn.rcv_nxt, timeout=0.3)


def test_window_scale_used_by_dut(tb, dut):
    """The DUT's window fields after the handshake are scaled by its announced shift."""
    lfd, port = dut.tcp_listener(4)
    conn = TCPConn(tb, 4, dport=port)
    synack = conn.connect(options=[("MSS", 1460), ("WScale", 7)])
    shift = dict(synack[TCP].options)["WScale"]
    dut.accept(lfd)
    conn.send("PA", b"hello")
    ack = conn.expect("A", ack=conn.snd_nxt)
    assert shift > 0
    # The SYN-ACK window is never scaled (RFC 7323 2.2); later ones are, so the
    # scaled-back value must be of the same order as the SYN-ACK's window.
    scaled = ack[TCP].window << shift
    assert synack[TCP].window / 4 <= scaled <= synack[TCP].window * 64, (
        f"window field {ack[TCP].window} << {shift} vs SYN-ACK window {synack[TCP].window}")


def test_timestamps_echoed(tb, dut):
    """With timestamps negotiated, the DUT's segments echo our latest TSval (RFC 7323 4.3)."""
    opts = [("MSS", 1460), ("NOP", None), ("NOP", None), ("Timestamp", (777, 0))]
    conn, afd, _ = tcp_established(tb, dut, 4, options=opts)
    conn.use_ts = True
    conn.ts_val = 900
    conn.send("PA", b"ts")
    ack = conn.expect("A", ack=conn.snd_nxt)
    ts = dict(ack[TCP].options).get("Timestamp")
    assert ts is not None and ts[1] == 900


def test_sack_blocks_for_out_of_order_data(tb, dut):
    """With SACK permitted, out-of-order data is reported in a SACK block (RFC 2018 4)."""
    conn, afd, _ = tcp_established(tb, dut, 4, options=[("MSS", 1460), ("SAckOK", b"")])
    hole = conn.snd_nxt
    conn.send("PA", b"later", seq=seq_add(hole, 10))
    dup = conn.expect("A", ack=hole)
    sack = dict(dup[TCP].options).get("SAck")
    assert sack == (seq_add(hole, 10), seq_add(hole, 15))
    conn.send("PA", b"0123456789", seq=hole)
    conn.expect("A", ack=seq_add(hole, 15))
    assert dut.recv(afd, 100) == b"0123456789later"


def test_no_sack_blocks_without_permission(tb, dut):
    """Without SACK-permitted in the SYN, duplicate ACKs carry no SACK option."""
    conn, afd, _ = tcp_established(tb, dut, 4, options=[("MSS", 1460)])
    hole = conn.snd_nxt
    conn.send("PA", b"later", seq=seq_add(hole, 10))
    dup = conn.expect("A", ack=hole)
    assert "SAck" not in dict(dup[TCP].options)


def test_tcp_maxseg_lowers_announced_mss(tb, dut):
    """TCP_MAXSEG set on a listener lowers the MSS its SYN-ACK announces."""
    lfd, port = dut.tcp_listener(4, opts=[(6, 2, 800)])  # IPPROTO_TCP, TCP_MAXSEG
    conn = TCPConn(tb, 4, dport=port)
    synack = conn.connect()
    assert dict(synack[TCP].options)["MSS"] == 800
