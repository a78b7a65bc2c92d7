"""TCP opening: handshakes, SYN-SENT and SYN-RCVD rules, backlog, simultaneous open.

RFC 9293 3.5 (establishing a connection), 3.10.7.3/3.10.7.4 (SYN-SENT and
SYN-RECEIVED processing), RFC 5961 for RST acceptability.
"""

from __future__ import annotations

import errno
import random
import socket
import time

import pytest

from tests.conformance.testbench import (
    DutError,
    TCPConn,
    seq_add,
    tcp_established,
    tcp_established_active,
)

FAMILIES = pytest.mark.parametrize("family", [4, 6], ids=["v4", "v6"])


@FAMILIES
def test_passive_open_and_data(tb, dut, family):
    """TB connects to a DUT listener; data flows both ways with correct ACKs."""
    conn, afd, _ = tcp_established(tb, dut, family)
    dut.send(afd, b"hello")
    conn.expect("A", payload=b"hello", ack=conn.snd_nxt)
    conn.send("A")
    conn.send("PA", b"world")
    conn.expect("A", ack=conn.snd_nxt)
    assert dut.recv(afd, 100) == b"world"


@FAMILIES
def test_active_open_and_data(tb, dut, family):
    """The DUT connects to the TB; its SYN carries MSS; data flows."""
    conn, fd = tcp_established_active(tb, dut, family)
    dut.send(fd, b"x" * 10)
    conn.expect("A", payload=b"x" * 10)
    peer = dut.getpeername(fd)
    assert peer[0] == tb.topo.tb_ip(family) and peer[1] == conn.sport


def test_syn_carries_mss(tb, dut):
    """A DUT SYN advertises an MSS option that fits the 1500-byte link."""
    fd = dut.socket(socket.AF_INET, socket.SOCK_STREAM)
    conn = TCPConn(tb, 4, dport=0)
    dut.background("connect", fd, list(dut.tb_addr(4, conn.sport)))
    syn = conn.expect("S", timeout=3)
    opts = dict(syn["TCP"].options)
    assert opts.get("MSS") == 1460


@pytest.mark.parametrize("bad", [0, 2, -100], ids=["ack=ISS", "ack=ISS+2", "ack=ISS-100"])
def test_synrcvd_only_iss_plus_1_acceptable(tb, dut, bad):
    """In SYN-RECEIVED an ACK other than ISS+1 gets <SEQ=SEG.ACK><CTL=RST>.

    RFC 9293 3.10.7.4; the half-open connection survives and the right ACK then
    completes it.
    """
    lfd, port = dut.tcp_listener(4)
    conn = TCPConn(tb, 4, dport=port)
    synack = conn.connect(ack=False)
    iss = synack["TCP"].seq
    bad_ack = seq_add(iss, bad)
    conn.send("A", ack=bad_ack)
    conn.expect("R", seq=bad_ack)
    conn.send("A", ack=seq_add(iss, 1))
    dut.setnonblocking(lfd)
    deadline = time.monotonic() + 2
    while True:
        try:
            dut.accept(lfd)
            break
        except DutError as exc:
            assert exc.errno == errno.EAGAIN
            assert time.monotonic() < deadline, "connection not accepted after ACK=ISS+1"
            time.sleep(0.05)


@FAMILIES
def test_rst_in_synsent_refuses(tb, dut, family):
    """RST|ACK acknowledging the SYN aborts connect with ECONNREFUSED (RFC 9293 3.10.7.3)."""
    fd = dut.socket(tb.topo.af(family), socket.SOCK_STREAM)
    conn = TCPConn(tb, family, dport=0)
    fut = dut.background("connect", fd, list(dut.tb_addr(family, conn.sport)))
    syn = conn.expect("S", timeout=3)
    conn.dport = syn["TCP"].sport
    conn.send("RA", seq=0, ack=seq_add(syn["TCP"].seq, 1))
    with pytest.raises(DutError) as ei:
        fut.result(timeout=3)
    assert ei.value.errno == errno.ECONNREFUSED


def test_rst_in_synsent_bad_ack_ignored(tb, dut):
    """In SYN-SENT a RST whose ACK does not acknowledge the SYN is dropped; so is one without ACK."""
    fd = dut.socket(socket.AF_INET, socket.SOCK_STREAM)
    conn = TCPConn(tb, 4, dport=0)
    fut = dut.background("connect", fd, list(dut.tb_addr(4, conn.sport)))
    syn = conn.expect("S", timeout=3)
    conn.dport = syn["TCP"].sport
    iss = syn["TCP"].seq
    # Unacceptable ACK with RST: RFC 9293 says drop the segment (RST would need SEG.ACK in window).
    conn.send("RA", seq=0, ack=seq_add(iss, 1000))
    conn.send("R", seq=0, ack=0)
    time.sleep(0.3)
    assert not fut.done(), "connect ended by an unacceptable RST"
    # The handshake still completes.
    conn.send("SA", options=[("MSS", 1460)], ack=seq_add(iss, 1))
    conn.irs = iss
    conn.rcv_nxt = seq_add(iss, 1)
    conn.expect("A", ack=conn.snd_nxt, timeout=3)
    fut.result(timeout=3)


def test_rst_in_synrcvd(tb, dut):
    """An in-window RST in SYN-RECEIVED removes the half-open connection.

    Afterwards the final ACK of the handshake finds no connection and gets RST.
    """
    lfd, port = dut.tcp_listener(4)
    conn = TCPConn(tb, 4, dport=port)
    conn.connect(ack=False)
    conn.send("R", ack=0)
    conn.expect_none("R")  # no reply to a RST
    conn.send("A")
    conn.expect("R", seq=conn.rcv_nxt)
    dut.setnonblocking(lfd)
    with pytest.raises(DutError) as ei:
        dut.accept(lfd)
    assert ei.value.errno == errno.EAGAIN


def test_simultaneous_open(tb, dut):
    """A SYN answering the DUT's SYN moves it to SYN-RECEIVED; it answers SYN-ACK (RFC 9293 fig. 7)."""
    fd = dut.socket(socket.AF_INET, socket.SOCK_STREAM)
    conn = TCPConn(tb, 4, dport=0)
    fut = dut.background("connect", fd, list(dut.tb_addr(4, conn.sport)))
    syn = conn.expect("S", timeout=3)
    conn.dport = syn["TCP"].sport
    conn.irs = syn["TCP"].seq
    conn.rcv_nxt = seq_add(conn.irs, 1)
    conn.send("S", options=[("MSS", 1460)], ack=0)
    conn.expect("SA", seq=conn.irs, ack=conn.snd_nxt)
    conn.send("A")
    fut.result(timeout=3)
    dut.send(fd, b"simopen")
    conn.expect("A", payload=b"simopen")


def test_syn_window_zero_then_ack_window(tb, dut):
    """The send window comes from the handshake's ACK, not the SYN's window 0."""
    lfd, port = dut.tcp_listener(4)
    conn = TCPConn(tb, 4, dport=port)
    conn.send("S", window=0, options=[("MSS", 1460)])
    conn.expect("SA", ack=conn.snd_nxt)
    conn.send("A", window=65535)
    afd, _ = dut.accept(lfd)
    dut.send(afd, b"data now")
    conn.expect("A", payload=b"data now", timeout=0.5)


def test_send_queued_in_synsent(tb, dut):
    """A blocking send issued during SYN-SENT waits and goes out after the handshake."""
    fd = dut.socket(socket.AF_INET, socket.SOCK_STREAM)
    dut.setnonblocking(fd)
    conn = TCPConn(tb, 4, dport=0)
    with pytest.raises(DutError) as ei:
        dut.connect(fd, dut.tb_addr(4, conn.sport))
    assert ei.value.errno == errno.EINPROGRESS
    syn = conn.expect("S", timeout=3)
    dut.setnonblocking(fd, False)
    fut = dut.background("send", fd, b"queued!")
    time.sleep(0.2)
    assert not fut.done(), "send returned in SYN-SENT"
    conn.dport = syn["TCP"].sport
    conn.irs = syn["TCP"].seq
    conn.rcv_nxt = seq_add(conn.irs, 1)
    conn.send("SA", options=[("MSS", 1460)])
    conn.expect("A", payload=b"queued!", timeout=2)
    assert fut.result(timeout=2) == 7


def test_recv_queued_in_synsent(tb, dut):
    """A blocking recv issued during SYN-SENT returns data sent after the handshake."""
    fd = dut.socket(socket.AF_INET, socket.SOCK_STREAM)
    dut.setnonblocking(fd)
    conn = TCPConn(tb, 4, dport=0)
    with pytest.raises(DutError):
        dut.connect(fd, dut.tb_addr(4, conn.sport))
    syn = conn.expect("S", timeout=3)
    dut.setnonblocking(fd, False)
    fut = dut.background("recv", fd, 100)
    time.sleep(0.2)
    assert not fut.done()
    conn.dport = syn["TCP"].sport
    conn.irs = syn["TCP"].seq
    conn.rcv_nxt = seq_add(conn.irs, 1)
    conn.send("SA", options=[("MSS", 1460)])
    conn.expect("A", ack=conn.snd_nxt)
    conn.send("PA", b"early data")
    assert fut.result(timeout=2) == b"early data"


def test_listen_backlog(tb, dut):
    """A full accept queue drops new SYNs; accepting one makes room again.

    Linux queues backlog+1 connections; the check here is only that a full
    queue silently drops (no RST) and recovers, which RFC 9293 leaves to the
    implementation.
    """
    backlog = 1
    lfd, port = dut.tcp_listener(4, backlog=backlog)
    conns = []
    # Fill the queue until a SYN goes unanswered (at most backlog + 3 tries).
    for _ in range(backlog + 3):
        c = TCPConn(tb, 4, dport=port)
        c.send("S", options=[("MSS", 1460)])
        try:
            c.expect("SA", ack=c.snd_nxt, timeout=0.5)
        except AssertionError:
            c.expect_none("R", timeout=0.1)
            break
        c.send("A")
        conns.append(c)
        time.sleep(0.05)
    else:
        pytest.fail(f"listen({backlog}) accepted {len(conns)} connections")
    assert backlog <= len(conns) <= backlog + 1
    dut.accept(lfd)
    late = TCPConn(tb, 4, dport=port)
    late.connect()
    dut.accept(lfd)


def test_ack_to_listener_without_syn_gets_rst(tb, dut):
    """A stray ACK at a listener (a failed SYN-cookie check) gets RST with SEQ=SEG.ACK."""
    lfd, port = dut.tcp_listener(4)
    conn = TCPConn(tb, 4, dport=port)
    stray_ack = random.randint(0, 0xFFFFFFFF)
    conn.send("A", ack=stray_ack)
    conn.expect("R", seq=stray_ack)
    dut.setnonblocking(lfd)
    with pytest.raises(DutError) as ei:
        dut.accept(lfd)
    assert ei.value.errno == errno.EAGAIN


def test_syn_to_closed_port_gets_rst_ack(tb, dut):
    """A SYN to a port with no listener gets RST|ACK acknowledging it (RFC 9293 3.10.7.1)."""
    fd, port = dut.udp_socket(4)  # reserve a port number nobody listens on for TCP
    conn = TCPConn(tb, 4, dport=port)
    conn.send("S", options=[("MSS", 1460)])
    conn.expect("RA", seq=0, ack=conn.snd_nxt)


def test_syn_queue_overflow_handshake_completes(tb, dut):
    """With the SYN queue full (listen backlog 2, five half-open SYNs), SYNs are still answered.

    Linux answers the overflow with SYN cookies (tcp_syncookies=1, RFC 4987
    3.6): the final ACK of any of them completes a connection, and an ACK
    that fails the check gets RST (SEQ=SEG.ACK).
    """
    lfd, port = dut.tcp_listener(4, backlog=2)
    conns, synacks = [], []
    for _ in range(5):
        c = TCPConn(tb, 4, dport=port)
        c.send("S", options=[("MSS", 1460)])
        synacks.append(c.expect("SA", ack=c.snd_nxt, timeout=1))
        conns.append(c)
    # A wrong ACK for the last one is refused ...
    bad = conns[-1]
    bad.send("A", ack=seq_add(bad.rcv_nxt, 5))
    bad.expect("R", seq=seq_add(bad.rcv_nxt, 5))
    # ... and the right one completes it.
    bad.send("A")
    fd, addr = dut.accept(lfd)
    assert addr[1] == bad.sport
    dut.send(fd, b"cookie ok")
    bad.expect("A", payload=b"cookie ok")


def test_syn_retransmission_backoff(tb, dut):
    """An unanswered SYN is retransmitted after the initial RTO of 1 s (RFC 6298 2.1).

    The next gap may be 1 s again (Linux >= 6.5: tcp_syn_linear_timeouts=4
    linear retries first) or 2 s (RFC 6298 5.5 doubling); both are accepted.
    """
    fd = dut.socket(socket.AF_INET, socket.SOCK_STREAM)
    conn = TCPConn(tb, 4, dport=0)
    dut.background("connect", fd, list(dut.tb_addr(4, conn.sport)))
    first = conn.expect("S", timeout=3, update=False)
    conn.dport = first["TCP"].sport
    second = conn.expect("S", seq=first["TCP"].seq, timeout=2, update=False)
    third = conn.expect("S", seq=first["TCP"].seq, timeout=3, update=False)
    g1, g2 = second.time - first.time, third.time - second.time
    assert 0.8 <= g1 <= 1.3, f"first SYN retransmission after {g1:.2f}s"
    assert 0.8 * g1 <= g2 <= 2.5 * g1, f"SYN retransmission gaps {g1:.2f}s, {g2:.2f}s"


def test_synack_retransmitted_when_ack_lost(tb, dut):
    """A SYN-ACK whose ACK never comes is retransmitted (same ISS) after about 1 s."""
    lfd, port = dut.tcp_listener(4)
    conn = TCPConn(tb, 4, dport=port)
    synack = conn.connect(ack=False)
    again = conn.expect("SA", seq=synack["TCP"].seq, ack=conn.snd_nxt, timeout=2, update=False)
    assert 0.8 <= again.time - synack.time <= 1.5
    conn.send("A")
    dut.accept(lfd)


def test_half_close_keeps_receiving(tb, dut):
    """After the DUT's shutdown(SHUT_WR) it still receives and acknowledges data."""
    conn, afd, _ = tcp_established(tb, dut, 4)
    dut.shutdown(afd, socket.SHUT_WR)
    conn.expect("FA")
    conn.send("PA", b"after your fin")
    conn.expect("A", ack=conn.snd_nxt)
    assert dut.recv(afd, 100) == b"after your fin"
