"""TCP segment acceptability: out-of-window SEQ/ACK, RFC 5961, PAWS, urgent data.

RFC 9293 3.10.7.4 (first check the sequence number: an unacceptable segment
is answered with <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> unless it is a RST),
RFC 5961 3-5 (challenge ACKs for in-window RST and SYN, ACK range check),
RFC 7323 5 (PAWS), RFC 6093 (urgent data).
"""

from __future__ import annotations

import errno
import socket
import time

import pytest

from tests.conformance.testbench import (
    DutError,
    seq_add,
    tcp_established,
)

WINDOW_OFFSETS = pytest.mark.parametrize(
    "where", ["before-window", "after-window"], ids=["seq-before", "seq-after"])


def _seq(conn, where: str) -> int:
    # Far outside any plausible receive window on either side.
    return seq_add(conn.rcv_nxt_tb(), -70000 if where == "before-window" else 1 << 30)


def _established(tb, dut, family=4, **kw):
    conn, afd, lfd = tcp_established(tb, dut, family, **kw)
    conn.rcv_nxt_tb = lambda: conn.snd_nxt  # what the DUT expects from us
    return conn, afd


@WINDOW_OFFSETS
@pytest.mark.parametrize("payload", [b"", b"data"], ids=["ack", "data"])
def test_out_of_window_segment_gets_ack(tb, dut, where, payload):
    """An out-of-window segment is dropped and answered with an ACK (RFC 9293 3.10.7.4)."""
    conn, afd = _established(tb, dut)
    conn.send("PA" if payload else "A", payload, seq=_seq(conn, where))
    conn.expect("A", seq=conn.rcv_nxt, ack=conn.snd_nxt)
    dut.setnonblocking(afd)
    with pytest.raises(DutError) as ei:
        dut.recv(afd, 100)
    assert ei.value.errno == errno.EAGAIN


STATE_CASES = [("established", "seq"), ("close-wait", "seq"), ("fin-wait-2", "seq"),
               ("closing", "seq"), ("close-wait", "ack"), ("fin-wait-2", "ack"), ("closing", "ack")]


@pytest.mark.parametrize("state,kind", STATE_CASES, ids=[f"{s}-{k}" for s, k in STATE_CASES])
def test_unacceptable_seq_or_ack_in_state(tb, dut, state, kind):
    """Out-of-window data, or an ACK of unsent data, is answered with an ACK.

    Checked in ESTABLISHED and the closing states (packetimpact
    tcp_unacc_seq_ack and tcp_outside_the_window_closing; RFC 9293 3.10.7.4:
    "If the ACK acks something not yet sent (SEG.ACK > SND.NXT) then send an
    ACK, drop the segment"). In ESTABLISHED Linux drops such an ACK silently,
    so that combination is not part of the table.
    """
    conn, afd = _established(tb, dut)
    if state == "close-wait":  # passive close: we sent FIN
        conn.send("FA")
        conn.expect("A", ack=conn.snd_nxt)
    elif state == "fin-wait-2":  # active close: DUT FIN acknowledged
        dut.shutdown(afd, socket.SHUT_WR)
        conn.expect("FA")
        conn.send("A")
    elif state == "closing":  # simultaneous close: FINs crossed
        dut.shutdown(afd, socket.SHUT_WR)
        fin = conn.expect("FA", update=False)
        conn.send("FA", ack=fin["TCP"].seq)
        conn.expect("A", ack=conn.snd_nxt)
        conn.rcv_nxt = seq_add(fin["TCP"].seq, 1)
    time.sleep(0.6)  # Linux rate-limits ACKs to invalid segments per socket (500 ms)
    if kind == "seq":
        conn.send("PA", b"oow", seq=seq_add(conn.snd_nxt, 1 << 30))
        reply = conn.expect("A", ack=conn.snd_nxt, timeout=1, update=False)
    else:
        conn.send("A", ack=seq_add(conn.rcv_nxt, 1000))
        reply = conn.expect("A", ack=conn.snd_nxt, timeout=1, update=False)
    assert reply["TCP"].seq in (conn.rcv_nxt, seq_add(conn.rcv_nxt, -1))


@pytest.mark.parametrize("ack_off", [1, 1000], ids=["SND.NXT+1", "SND.NXT+1000"])
def test_ack_of_unsent_data_ignored(tb, dut, ack_off):
    """A segment acknowledging data never sent is dropped (RFC 9293 3.10.7.4).

    Its data is not delivered; the connection carries on.
    """
    conn, afd = _established(tb, dut)
    dut.send(afd, b"abc")
    conn.expect("A", payload=b"abc")
    conn.send("PA", b"bogus", ack=seq_add(conn.rcv_nxt, ack_off))
    time.sleep(0.3)
    dut.setnonblocking(afd)
    with pytest.raises(DutError) as ei:
        dut.recv(afd, 100)
    assert ei.value.errno == errno.EAGAIN
    conn.snd_nxt = seq_add(conn.snd_nxt, -5)
    conn.send("PA", b"good")
    conn.expect("A", ack=conn.snd_nxt, timeout=1)
    dut.setnonblocking(afd, False)  # the ACK may precede the data's arrival at the socket
    assert dut.recv(afd, 100) == b"good"


def test_rst_exact_seq_resets(tb, dut):
    """A RST with SEQ=RCV.NXT resets the connection: recv gives ECONNRESET."""
    conn, afd = _established(tb, dut)
    conn.send("R", ack=0)
    conn.expect_none(timeout=0.3)
    with pytest.raises(DutError) as ei:
        dut.recv(afd, 10)
    assert ei.value.errno == errno.ECONNRESET


def test_rst_in_window_gets_challenge_ack(tb, dut):
    """RFC 5961 3.2: an in-window RST with SEQ != RCV.NXT gets a challenge ACK and is dropped."""
    conn, afd = _established(tb, dut)
    conn.send("R", seq=seq_add(conn.snd_nxt, 100), ack=0)
    conn.expect("A", seq=conn.rcv_nxt, ack=conn.snd_nxt)
    conn.send("PA", b"alive")
    conn.expect("A", ack=conn.snd_nxt)
    assert dut.recv(afd, 10) == b"alive"


def test_rst_out_of_window_ignored(tb, dut):
    """RFC 5961 3.2: a RST outside the window is silently dropped."""
    conn, afd = _established(tb, dut)
    conn.send("R", seq=seq_add(conn.snd_nxt, 1 << 30), ack=0)
    conn.expect_nothing(timeout=0.3)
    conn.send("PA", b"alive")
    conn.expect("A", ack=conn.snd_nxt)
    assert dut.recv(afd, 10) == b"alive"


@pytest.mark.parametrize("family", [4, 6], ids=["v4", "v6"])
def test_syn_in_established_gets_challenge_ack(tb, dut, family):
    """RFC 5961 4.2: a SYN in ESTABLISHED gets a challenge ACK; the connection survives."""
    conn, afd = _established(tb, dut, family)
    conn.send("S", seq=seq_add(conn.snd_nxt, 5), ack=0, options=[("MSS", 1460)])
    conn.expect("A", seq=conn.rcv_nxt, ack=conn.snd_nxt)
    conn.send("PA", b"alive")
    conn.expect("A", ack=conn.snd_nxt)
    assert dut.recv(afd, 10) == b"alive"


def test_old_ack_beyond_max_window_gets_challenge(tb, dut):
    """RFC 5961 5.2: an ACK below SND.UNA - MAX.SND.WND gets a challenge ACK.

    A pure ACK is used: Linux's header-prediction path queues in-order data
    before it looks at the ACK field, so only the ACK's treatment is checked.
    """
    conn, afd = _established(tb, dut, window=1000)
    dut.send(afd, b"abc")
    conn.expect("A", payload=b"abc")
    conn.send("A", window=1000)
    conn.expect_nothing(timeout=0.2)
    conn.send("A", ack=seq_add(conn.rcv_nxt, -(1 << 20)), window=1000)
    conn.expect("A", seq=conn.rcv_nxt, ack=conn.snd_nxt)


def test_paws_rejects_old_timestamp(tb, dut):
    """RFC 7323 5.3: a segment whose TSval is older than TS.Recent is dropped with an ACK."""
    opts = [("MSS", 1460), ("NOP", None), ("NOP", None), ("Timestamp", (1000, 0))]
    conn, afd = _established(tb, dut, options=opts)
    conn.use_ts = True
    conn.ts_val = 5000
    conn.send("PA", b"new")
    conn.expect("A", ack=conn.snd_nxt)
    # An old timestamp: rejected even though the sequence number is right.
    conn.ts_val = 100
    conn.send("PA", b"stale")
    dupack = conn.expect("A", timeout=1)
    assert dupack["TCP"].ack == seq_add(conn.snd_nxt, -5)
    conn.snd_nxt = seq_add(conn.snd_nxt, -5)
    conn.ts_val = 6000
    conn.send("PA", b"fresh")
    conn.expect("A", ack=conn.snd_nxt)
    assert dut.recv(afd, 100) == b"newfresh"


def test_urgent_data_tolerated(tb, dut):
    """Segments with URG are accepted; with SO_OOBINLINE all bytes arrive in order."""
    conn, afd = _established(tb, dut)
    dut.setsockopt(afd, socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
    conn.send("PAU", b"urgent!", urgptr=7)
    conn.expect("A", ack=conn.snd_nxt)
    conn.send("PA", b"normal")
    conn.expect("A", ack=conn.snd_nxt)
    got = b""
    deadline = time.monotonic() + 2
    while len(got) < 13 and time.monotonic() < deadline:
        got += dut.recv(afd, 100)
    assert got == b"urgent!normal"
