"""TCP closing: FIN_WAIT_2 timeout, TIME_WAIT, CLOSING, SO_LINGER, RST on close.

RFC 9293 3.6 (closing), RFC 1337 (TIME-WAIT assassination), RFC 2525 2.17
(close with unread data sends RST), Linux TCP_LINGER2 and SO_LINGER.
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
    tcp_established,
    tcp_established_active,
)

TCP_LINGER2 = 8
TCP_USER_TIMEOUT = 18


@pytest.mark.parametrize("linger2", [True, False], ids=["linger2", "default"])
def test_fin_wait2_timeout(tb, dut, linger2):
    """With TCP_LINGER2=1s an orphaned FIN_WAIT_2 connection is gone after ~1 s.

    A segment then gets RST; with the default (60 s) it is still there and a
    bare ACK is silently accepted.
    """
    conn, afd, _ = tcp_established(tb, dut, 4)
    if linger2:
        dut.setsockopt(afd, socket.IPPROTO_TCP, TCP_LINGER2, 1)
    dut.close(afd)
    conn.expect("FA", ack=conn.snd_nxt)
    conn.send("A")  # -> FIN_WAIT_2
    conn.expect_none(timeout=0.2)
    time.sleep(1.8)
    conn.send("A")
    if linger2:
        conn.expect("R", seq=conn.rcv_nxt)
    else:
        conn.expect_none("R", timeout=0.5)


def _to_time_wait(tb, dut):
    conn, fd = tcp_established_active(tb, dut, 4)
    dut.shutdown(fd, socket.SHUT_WR)
    conn.expect("FA")
    conn.send("FA")
    conn.expect("A", ack=conn.snd_nxt)
    return conn, fd


def test_time_wait_bare_ack_ignored(tb, dut):
    """In TIME_WAIT a bare in-window ACK is absorbed (no reply)."""
    conn, _ = _to_time_wait(tb, dut)
    conn.send("A")
    conn.expect_nothing(timeout=0.5)


def test_time_wait_retransmitted_fin_reacked(tb, dut):
    """In TIME_WAIT a retransmitted FIN is ACKed again (RFC 9293 3.10.7.4, TIME-WAIT)."""
    conn, _ = _to_time_wait(tb, dut)
    conn.send("FA", seq=conn.snd_nxt - 1)
    conn.expect("A", ack=conn.snd_nxt)


def test_rst_in_time_wait(tb, dut):
    """A RST in TIME_WAIT ends it (Linux default, RFC 1337 not applied).

    Afterwards the connection is unknown, so an ACK gets RST.
    """
    conn, _ = _to_time_wait(tb, dut)
    conn.send("R", ack=0)
    conn.expect_none("R", timeout=0.3)
    conn.send("A")
    conn.expect("R", seq=conn.rcv_nxt)


def test_fin_retransmitted_in_closing(tb, dut):
    """Simultaneous close: in CLOSING the DUT ACKs our FIN and retransmits its own FIN."""
    conn, afd, _ = tcp_established(tb, dut, 4)
    dut.shutdown(afd, socket.SHUT_WR)
    fin = conn.expect("FA", update=False)
    # Our FIN crosses theirs: it does not acknowledge their FIN.
    conn.send("FA", ack=fin["TCP"].seq)
    conn.expect("A", ack=conn.snd_nxt, seq=fin["TCP"].seq + 1)
    again = conn.expect("FA", seq=fin["TCP"].seq, timeout=3)
    assert again["TCP"].ack == conn.snd_nxt


def test_close_listener_with_unaccepted_connection_sends_rst(tb, dut):
    """Closing a listener resets connections still in its accept queue."""
    lfd, port = dut.tcp_listener(4)
    conn = TCPConn(tb, 4, dport=port)
    conn.connect()
    time.sleep(0.1)
    dut.close(lfd)
    conn.expect(RST, seq=conn.rcv_nxt)


def test_close_with_unread_data_sends_rst(tb, dut):
    """close() with unread received data sends RST, not FIN (RFC 2525 2.17, Linux)."""
    conn, afd, _ = tcp_established(tb, dut, 4)
    conn.send("PA", b"unread")
    conn.expect("A", ack=conn.snd_nxt)
    dut.close(afd)
    conn.expect(RST, seq=conn.rcv_nxt)


def test_linger_off_sends_fin(tb, dut):
    """SO_LINGER off: close() returns at once and the FIN follows."""
    conn, afd, _ = tcp_established(tb, dut, 4)
    dut.linger(afd, 0, 0)
    dut.close(afd)
    conn.expect("FA")


def test_linger_zero_sends_rst(tb, dut):
    """SO_LINGER {1, 0}: close() aborts the connection with RST."""
    conn, afd, _ = tcp_established(tb, dut, 4)
    dut.linger(afd, 1, 0)
    dut.close(afd)
    conn.expect(RST, seq=conn.rcv_nxt)


def test_linger_zero_after_shutdown_sends_rst(tb, dut):
    """shutdown(SHUT_RDWR) sends FIN; a later close() with linger {1, 0} still resets."""
    conn, afd, _ = tcp_established(tb, dut, 4)
    dut.shutdown(afd, socket.SHUT_RDWR)
    conn.expect("FA")
    dut.linger(afd, 1, 0)
    dut.close(afd)
    conn.expect(RST)


@pytest.mark.xfail_on("netvisor", "SO_LINGER with a timeout: close() returns at once")
def test_linger_nonzero_waits_for_ack(tb, dut):
    """SO_LINGER {1, 5}: close() blocks until data and FIN are acknowledged."""
    conn, afd, _ = tcp_established(tb, dut, 4)
    dut.linger(afd, 1, 5)
    dut.send(afd, b"linger data")
    conn.expect("A", payload=b"linger data")
    fut = dut.background("close", afd)
    conn.expect("FA")
    time.sleep(0.3)
    assert not fut.done(), "close() returned before its FIN was acknowledged"
    conn.send("A")
    assert fut.result(timeout=2) == 0


@pytest.mark.xfail_on("netvisor", "SO_LINGER with a timeout: close() returns at once")
def test_linger_nonzero_times_out(tb, dut):
    """SO_LINGER {1, 1} with nothing acknowledged: close() returns after ~1 s."""
    conn, afd, _ = tcp_established(tb, dut, 4)
    dut.linger(afd, 1, 1)
    dut.send(afd, b"never acked")
    conn.expect("A", payload=b"never acked")
    t0 = time.monotonic()
    fut = dut.background("close", afd)
    try:
        fut.result(timeout=4)
    except DutError as exc:  # Linux returns 0 here; EWOULDBLOCK is also allowed by POSIX
        assert exc.errno in (errno.EWOULDBLOCK,)
    elapsed = time.monotonic() - t0
    assert 0.7 <= elapsed <= 3.0, f"close() took {elapsed:.2f}s with a 1 s linger"


def test_passive_close(tb, dut):
    """TB FIN -> DUT ACKs, recv() gives EOF; DUT close -> FIN; last ACK closes."""
    conn, afd, _ = tcp_established(tb, dut, 4)
    conn.send("FA")
    conn.expect("A", ack=conn.snd_nxt)
    assert dut.recv(afd, 10) == b""
    dut.close(afd)
    conn.expect("FA", ack=conn.snd_nxt)
    conn.send("A")
    conn.expect_nothing(timeout=0.3)


@pytest.mark.parametrize("after", ["data", "fin"])
def test_user_timeout(tb, dut, after):
    """TCP_USER_TIMEOUT=1000 ms: unacknowledged data (or FIN) kills the connection.

    Afterwards the connection is gone: SO_ERROR is ETIMEDOUT and a segment
    gets RST.
    """
    conn, afd, _ = tcp_established(tb, dut, 4)
    dut.setsockopt(afd, socket.IPPROTO_TCP, TCP_USER_TIMEOUT, 1000)
    if after == "data":
        dut.send(afd, b"unacked")
        conn.expect("A", payload=b"unacked")
    else:
        dut.shutdown(afd, socket.SHUT_WR)
        conn.expect("FA")
    time.sleep(2.0)
    assert dut.getsockopt(afd, socket.SOL_SOCKET, socket.SO_ERROR) == errno.ETIMEDOUT
    tb.drain()
    conn.send("A", ack=conn.rcv_nxt - 1 if after == "fin" else None)
    conn.expect("R")
