"""TCP flow control: zero windows and their probes, window-sized segments, TCP_CORK.

RFC 9293 3.8.6 (managing the window; zero-window probing, 3.8.6.1), RFC 1122
4.2.2.17 (probing zero windows, exponential backoff), RFC 9293 3.8.6.2
(silly window avoidance), Linux TCP_CORK and TCP_USER_TIMEOUT.
"""

from __future__ import annotations

import errno
import socket
import time

import pytest

from tests.conformance.testbench import (
    RST,
    ExpectError,
    TCPConn,
    seq_add,
    tcp_established,
)

TCP_USER_TIMEOUT = 18
TCP_CORK = 3


def _zero_window(tb, dut, family=4):
    """An established connection whose TB has acknowledged everything with window 0."""
    conn, afd, lfd = tcp_established(tb, dut, family)
    dut.send(afd, b"first")
    conn.expect("A", payload=b"first")
    conn.send("A", window=0)
    return conn, afd


@pytest.mark.parametrize("family", [4, 6], ids=["v4", "v6"])
def test_zero_window_probe(tb, dut, family):
    """Data blocked by a zero window is probed with SEQ=SND.NXT-1 and no data.

    When the window opens the data goes out (RFC 9293 3.8.6.1; Linux
    tcp_xmit_probe_skb uses SND.UNA-1, which equals SND.NXT-1 here).
    """
    conn, afd = _zero_window(tb, dut, family)
    snd_nxt = conn.rcv_nxt
    dut.send(afd, b"blocked")
    probe = conn.expect("A", seq=snd_nxt - 1, timeout=3, update=False)
    assert len(probe["TCP"].payload) <= 1
    conn.send("A", window=65535)
    conn.expect("A", payload=b"blocked", seq=snd_nxt, timeout=2)


def test_window_shrink_probe(tb, dut):
    """A window reduced to zero after data was in flight is probed at SND.NXT-1.

    (packetimpact tcp_window_shrink: the TB closes the window the DUT just used.)
    """
    conn, afd, _ = tcp_established(tb, dut, 4, window=10)
    dut.send(afd, b"0123456789")
    conn.expect("A", payload=b"0123456789")
    conn.send("A", window=0)
    dut.send(afd, b"more")
    conn.expect("A", seq=conn.rcv_nxt - 1, timeout=3, update=False)


def test_zero_window_probe_backoff(tb, dut):
    """Unanswered zero-window probes back off exponentially (RFC 1122 4.2.2.17)."""
    conn, afd = _zero_window(tb, dut)
    dut.send(afd, b"blocked")
    times = []
    for _ in range(4):
        p = conn.expect("A", seq=conn.rcv_nxt - 1, timeout=4, update=False)
        times.append(p.time)
    gaps = [b - a for a, b in zip(times, times[1:])]
    for g0, g1 in zip(gaps, gaps[1:]):
        assert 1.5 <= g1 / g0 <= 2.6, f"probe intervals {gaps} are not doubling"


def test_zero_window_probe_answered_keeps_connection(tb, dut):
    """Probes answered with window 0 keep the connection alive, and data flows when it opens."""
    conn, afd = _zero_window(tb, dut)
    snd_nxt = conn.rcv_nxt
    dut.send(afd, b"patience")
    for _ in range(3):
        conn.expect("A", seq=snd_nxt - 1, timeout=4, update=False)
        conn.send("A", window=0)
    conn.send("A", window=65535)
    conn.expect("A", payload=b"patience", seq=snd_nxt, timeout=2)


def test_zero_window_probe_user_timeout(tb, dut):
    """TCP_USER_TIMEOUT also limits unanswered zero-window probing.

    After it, the connection is dropped: SO_ERROR is ETIMEDOUT, probing
    stops, and a segment gets RST.
    """
    conn, afd = _zero_window(tb, dut)
    dut.setsockopt(afd, socket.IPPROTO_TCP, TCP_USER_TIMEOUT, 1000)
    dut.send(afd, b"blocked")
    conn.expect("A", seq=conn.rcv_nxt - 1, timeout=2, update=False)
    time.sleep(2.2)
    assert dut.getsockopt(afd, socket.SOL_SOCKET, socket.SO_ERROR) == errno.ETIMEDOUT
    tb.drain()
    conn.expect_nothing(timeout=0.8)
    conn.send("A")
    conn.expect(RST)


def test_send_window_sized_segments_and_piggyback(tb, dut):
    """Segments never exceed the send window; replies piggyback the ACK on data."""
    conn, afd, _ = tcp_established(tb, dut, 4, window=10)
    dut.send(afd, b"A" * 25)
    first = conn.expect("A", plen=10, update=True)
    assert bytes(first["TCP"].payload) == b"A" * 10
    # Window full: no new data until an ACK (a retransmission would be allowed).
    conn.expect_none(seq=conn.rcv_nxt, timeout=0.3)
    # Our ACK carries data; the DUT's next data segment acknowledges it.
    conn.send("PA", b"xyz", window=10)
    second = conn.expect("A", seq=conn.rcv_nxt, plen=10, timeout=1)
    assert second["TCP"].ack == conn.snd_nxt
    conn.send("A", window=10)
    conn.expect("A", seq=conn.rcv_nxt, plen=5, timeout=1)


def test_zero_receive_window_and_reopen(tb, dut):
    """A DUT whose receive buffer fills advertises window 0; reading reopens it."""
    lfd, port = dut.tcp_listener(4, opts=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)])
    conn = TCPConn(tb, 4, dport=port)
    conn.connect()
    afd, _ = dut.accept(lfd)
    window = 500
    total = 0
    for _ in range(100):
        # Send what the window allows (a receiver never shrinks its right edge,
        # so the window reaches 0 only when filled exactly).
        n = min(500, window)
        conn.send("A", b"z" * n)
        tcp = conn.expect("A", ack=conn.snd_nxt, timeout=1)["TCP"]
        total += n
        window = tcp.window
        if window == 0:
            break
    else:
        pytest.fail("the DUT never advertised a zero window")
    assert total > 0
    # Data beyond the (full) receive buffer is dropped and answered with an
    # ACK that does not cover it (RFC 9293 3.10.7.4, segment not acceptable).
    conn.send("PA", b"y" * 300)
    rej = conn.expect("A", timeout=1)["TCP"]
    assert rej.ack == conn.snd_nxt - 300 and rej.window == 0
    conn.snd_nxt -= 300
    got = b""
    while len(got) < total:
        got += dut.recv(afd, 65536)
    update = conn.expect("A", timeout=1)
    assert update["TCP"].window > 0 and update["TCP"].ack == conn.snd_nxt


def test_receive_window_nonzero_while_reading(tb, dut):
    """While the application keeps reading, the advertised window never hits zero."""
    conn, afd, _ = tcp_established(tb, dut, 4)
    for i in range(30):
        conn.send("PA", bytes([65 + i % 26]) * 1000)
        ack = conn.expect("A", ack=conn.snd_nxt, timeout=1)
        assert ack["TCP"].window > 0, f"zero window after segment {i}"
        assert len(dut.recv(afd, 2000)) == 1000


@pytest.mark.parametrize("family", [4, 6], ids=["v4", "v6"])
def test_cork_coalesces_to_mss(tb, dut, family):
    """With TCP_CORK, small writes leave as full-MSS segments."""
    mss = 100
    conn, afd, _ = tcp_established(tb, dut, family, options=[("MSS", mss)])
    dut.setsockopt(afd, socket.IPPROTO_TCP, TCP_CORK, 1)
    for _ in range(5):
        dut.send(afd, b"c" * 30)  # 150 bytes in five writes
    first = conn.expect("A", timeout=1)
    assert len(first["TCP"].payload) == mss, f"corked segment of {len(first['TCP'].payload)} bytes"
    try:
        conn.expect("A", plen=50, timeout=0.1)
        pytest.fail("partial segment sent while corked")
    except ExpectError:
        pass
    dut.setsockopt(afd, socket.IPPROTO_TCP, TCP_CORK, 0)
    conn.expect("A", plen=50, seq=seq_add(first["TCP"].seq, mss), timeout=1)


def test_nagle_holds_small_segment_until_ack(tb, dut):
    """Nagle (RFC 9293 3.7.4): a second small write waits while data is unacknowledged."""
    conn, afd, _ = tcp_established(tb, dut, 4)
    dut.send(afd, b"one")
    conn.expect("A", payload=b"one")
    dut.send(afd, b"two")
    conn.expect_none(seq=conn.rcv_nxt, timeout=0.1)
    conn.send("A")
    conn.expect("A", payload=b"two", timeout=1)


def test_nodelay_sends_small_segments_at_once(tb, dut):
    """With TCP_NODELAY small writes go out immediately despite unacknowledged data."""
    conn, afd, _ = tcp_established(tb, dut, 4)
    dut.setsockopt(afd, socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    dut.send(afd, b"one")
    conn.expect("A", payload=b"one")
    dut.send(afd, b"two")
    conn.expect("A", payload=b"two", timeout=0.1)


def test_keepalive_probe(tb, dut):
    """SO_KEEPALIVE with TCP_KEEPIDLE=1 s sends a probe with SEQ=SND.NXT-1 (RFC 1122 4.2.3.6).

    An answered probe keeps the connection; unanswered ones (TCP_KEEPCNT=2,
    TCP_KEEPINTVL=1 s) end it with ETIMEDOUT.
    """
    conn, afd, _ = tcp_established(tb, dut, 4)
    for name, value in ((socket.TCP_KEEPIDLE, 1), (socket.TCP_KEEPINTVL, 1),
                        (socket.TCP_KEEPCNT, 2)):
        dut.setsockopt(afd, socket.IPPROTO_TCP, name, value)
    dut.setsockopt(afd, socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    probe = conn.expect("A", seq=conn.rcv_nxt - 1, timeout=2.5, update=False)
    assert len(probe["TCP"].payload) <= 1
    conn.send("A")
    t0 = time.monotonic()
    conn.expect("A", seq=conn.rcv_nxt - 1, timeout=2.5, update=False)
    assert time.monotonic() - t0 >= 0.7, "answered probe did not restart the idle timer"
    conn.expect("A", seq=conn.rcv_nxt - 1, timeout=2.0, update=False)
    time.sleep(1.3)
    assert dut.getsockopt(afd, socket.SOL_SOCKET, socket.SO_ERROR) == errno.ETIMEDOUT
