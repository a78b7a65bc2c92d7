"""TCP data transfer: reassembly, duplicates, data in handshake segments, FIN with data.

RFC 9293 3.10.7.4 (segments are processed in sequence order; out-of-order
data is held and acknowledged with duplicate ACKs, RFC 5681 4.2 asks for an
immediate ACK then), 3.10.7.3 (data in a SYN is queued only after the
connection is synchronized; Linux without TFO drops it and ACKs only the
SYN), 3.10.7.4 eighth step (FIN processing).
"""

from __future__ import annotations

import errno
import socket
import time

import pytest

from tests.conformance.testbench import (
    RST,
    DutError,
    TCPConn,
    seq_add,
    tcp_established,
)


def _read(dut, fd, n, timeout=2.0):
    got = b""
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        chunk = dut.recv(fd, n - len(got))
        if not chunk:
            break
        got += chunk
    return got


@pytest.mark.parametrize("family", [4, 6], ids=["v4", "v6"])
def test_out_of_order_reassembled(tb, dut, family):
    """Segments arriving out of order are delivered in order; the hole gets an immediate dup ACK."""
    conn, afd, _ = tcp_established(tb, dut, family)
    base = conn.snd_nxt
    conn.send("PA", b"world", seq=seq_add(base, 5))
    conn.expect("A", ack=base, timeout=0.5)  # duplicate ACK for the hole
    conn.send("PA", b"hello", seq=base)
    conn.expect("A", ack=seq_add(base, 10))
    conn.snd_nxt = seq_add(base, 10)
    assert _read(dut, afd, 10) == b"helloworld"


def test_duplicate_segment_acked_once_delivered_once(tb, dut):
    """A retransmitted (duplicate) segment is ACKed again but its data is delivered once."""
    conn, afd, _ = tcp_established(tb, dut, 4)
    base = conn.snd_nxt
    conn.send("PA", b"once")
    conn.expect("A", ack=conn.snd_nxt)
    conn.send("PA", b"once", seq=base)
    conn.expect("A", ack=conn.snd_nxt, timeout=1)
    conn.send("PA", b"twice")
    conn.expect("A", ack=conn.snd_nxt)
    assert _read(dut, afd, 9) == b"oncetwice"


def test_partially_old_segment_trimmed(tb, dut):
    """A segment overlapping already-received data delivers only its new bytes."""
    conn, afd, _ = tcp_established(tb, dut, 4)
    base = conn.snd_nxt
    conn.send("PA", b"abcdef")
    conn.expect("A", ack=conn.snd_nxt)
    conn.send("PA", b"defghi", seq=seq_add(base, 3))
    conn.snd_nxt = seq_add(base, 9)
    conn.expect("A", ack=conn.snd_nxt)
    assert _read(dut, afd, 9) == b"abcdefghi"


def test_data_on_handshake_ack_accepted(tb, dut):
    """Data carried on the ACK that completes the handshake is accepted."""
    lfd, port = dut.tcp_listener(4)
    conn = TCPConn(tb, 4, dport=port)
    conn.connect(ack=False)
    conn.send("PA", b"early")
    conn.expect("A", ack=conn.snd_nxt)
    afd, _ = dut.accept(lfd)
    assert _read(dut, afd, 5) == b"early"


def test_syn_data_not_acknowledged_without_tfo(tb, dut):
    """Data in a SYN (no TCP Fast Open) is not acknowledged; the SYN-ACK acks the SYN only."""
    lfd, port = dut.tcp_listener(4)
    conn = TCPConn(tb, 4, dport=port)
    iss = conn.snd_nxt
    conn.send("S", b"syndata", options=[("MSS", 1460)])
    conn.expect("SA", ack=seq_add(iss, 1))
    conn.snd_nxt = seq_add(iss, 1)
    conn.send("A")
    conn.send("PA", b"real")
    conn.expect("A", ack=conn.snd_nxt)
    afd, _ = dut.accept(lfd)
    assert _read(dut, afd, 4) == b"real"


def test_fin_with_data(tb, dut):
    """A FIN carrying data: data delivered, then EOF; the ACK covers data and FIN."""
    conn, afd, _ = tcp_established(tb, dut, 4)
    conn.send("FPA", b"last words")
    conn.expect("A", ack=conn.snd_nxt)
    assert _read(dut, afd, 10) == b"last words"
    assert dut.recv(afd, 10) == b""


def test_data_after_close_gets_rst(tb, dut):
    """Data arriving for a socket the application closed is answered with RST (Linux tcp_rcv_state_process)."""
    conn, afd, _ = tcp_established(tb, dut, 4)
    dut.close(afd)
    conn.expect("FA")
    conn.send("A")
    conn.send("PA", b"too late")
    conn.expect(RST)


def test_data_after_shutdown_rd_still_acked(tb, dut):
    """After shutdown(SHUT_RD) the connection stays open; recv returns EOF at once."""
    conn, afd, _ = tcp_established(tb, dut, 4)
    dut.shutdown(afd, socket.SHUT_RD)
    assert dut.recv(afd, 10) == b""
    dut.send(afd, b"still writing")
    conn.expect("A", payload=b"still writing")


def test_send_after_peer_rst_fails(tb, dut):
    """After a RST, send() fails with EPIPE or ECONNRESET."""
    conn, afd, _ = tcp_established(tb, dut, 4)
    conn.send("R", ack=0)
    time.sleep(0.1)
    with pytest.raises(DutError) as ei:
        for _ in range(3):
            dut.send(afd, b"x", socket.MSG_NOSIGNAL)
            time.sleep(0.05)
    assert ei.value.errno in (errno.EPIPE, errno.ECONNRESET)


def test_large_transfer_from_dut(tb, dut):
    """64 KiB from the DUT arrive complete and in order with MSS-sized segments."""
    conn, afd, _ = tcp_established(tb, dut, 4, options=[("MSS", 1000)])
    data = bytes(i % 256 for i in range(65536))
    fut = dut.background("sendall", afd, data)
    got = conn.receive_data(len(data), timeout=8, ack_each=True)
    assert got == data
    fut.result(timeout=3)
