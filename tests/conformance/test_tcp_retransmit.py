"""TCP loss recovery: RTO backoff, TCP_INFO, IPv4 ID on retransmit, fast retransmit, TLP, RACK.

RFC 6298 (RTO computation, 5.5 doubling on expiry), RFC 5681 3.2 (fast
retransmit on three duplicate ACKs), RFC 2018/6675 (SACK recovery), RFC 8985
(RACK-TLP: tail loss probe retransmits the last segment, RACK detects lost
retransmissions), RFC 6864 4.1 (a new IPv4 ID for each datagram that may be
fragmented, i.e. DF clear).
"""

from __future__ import annotations

import socket
import time

import pytest
from scapy.layers.inet import IP

from tests.conformance.testbench import (
    seq_add,
    tcp_established,
    tcp_info,
)

IP_MTU_DISCOVER = 10
IP_PMTUDISC_DONT = 0
SACK_OPTS = [("MSS", 100), ("SAckOK", b"")]


def test_rto_backoff_matches_tcp_info(tb, dut):
    """Each retransmission comes one RTO (as TCP_INFO reports it) after the last, doubling."""
    conn, afd, _ = tcp_established(tb, dut, 4)
    dut.send(afd, b"retransmit me")
    first = conn.expect("A", payload=b"retransmit me", update=False)
    prev = first.time
    gaps, rtos = [], []
    for _ in range(3):
        rto = tcp_info(dut, afd)["rto"] / 1e6
        p = conn.expect("A", payload=b"retransmit me", seq=first["TCP"].seq, timeout=rto * 2 + 1,
                        update=False)
        gaps.append(p.time - prev)
        rtos.append(rto)
        prev = p.time
    for gap, rto in zip(gaps, rtos):
        assert 0.75 * rto <= gap <= 1.35 * rto + 0.05, f"gaps {gaps} vs TCP_INFO rto {rtos}"
    for g0, g1 in zip(gaps, gaps[1:]):
        assert 1.6 <= g1 / g0 <= 2.5, f"retransmission gaps {gaps} not doubling"


def test_tcp_info_after_rto(tb, dut):
    """After an RTO, TCP_INFO shows the retransmission and backoff; an ACK clears them."""
    conn, afd, _ = tcp_established(tb, dut, 4)
    before = tcp_info(dut, afd)
    assert before["state"] == 1  # TCP_ESTABLISHED
    assert before["snd_mss"] == 1460 and before["total_retrans"] == 0
    dut.send(afd, b"lost")
    conn.expect("A", payload=b"lost", update=False)
    conn.expect("A", payload=b"lost", timeout=2, update=False)
    info = tcp_info(dut, afd)
    assert info["retransmits"] >= 1 and info["total_retrans"] >= 1 and info["backoff"] >= 1
    assert info["rto"] >= 2 * before["rto"] * 0.9
    assert info["unacked"] == 1
    conn.rcv_nxt = seq_add(conn.rcv_nxt, 4)
    conn.send("A")
    time.sleep(0.1)
    after = tcp_info(dut, afd)
    assert after["unacked"] == 0 and after["retransmits"] == 0 and after["total_retrans"] >= 1


def test_ipv4_id_changes_on_retransmit_without_df(tb, dut):
    """With DF clear, a retransmitted segment carries a new IPv4 ID (RFC 6864 4.1)."""
    conn, afd, _ = tcp_established(tb, dut, 4)
    dut.setsockopt(afd, socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
    dut.send(afd, b"id check")
    a = conn.expect("A", payload=b"id check", update=False)
    b = conn.expect("A", payload=b"id check", timeout=2, update=False)
    assert not a[IP].flags.DF and not b[IP].flags.DF
    assert a[IP].id != b[IP].id


def test_fast_retransmit_on_three_dupacks(tb, dut):
    """Three duplicate ACKs trigger retransmission of the first unacked segment before the RTO."""
    conn, afd, _ = tcp_established(tb, dut, 4, options=[("MSS", 100)])
    start = conn.rcv_nxt
    dut.send(afd, bytes(range(250)) * 2)  # 500 bytes = 5 segments
    segs = [conn.expect("A", plen=100, update=False) for _ in range(5)]
    assert segs[0]["TCP"].seq == start
    conn.send("A", ack=seq_add(start, 100))
    for _ in range(3):
        conn.send("A", ack=seq_add(start, 100))
    t0 = time.monotonic()
    rtx = conn.expect("A", seq=seq_add(start, 100), plen=100, timeout=1, update=False)
    rto = tcp_info(dut, afd)["rto"] / 1e6
    assert rtx.time - t0 < max(rto, 0.2) * 0.75, "retransmission waited for the RTO"


def test_sack_hole_retransmitted(tb, dut):
    """A SACK above a hole makes the DUT retransmit the hole at once (RFC 6675 / RACK)."""
    conn, afd, _ = tcp_established(tb, dut, 4, options=SACK_OPTS)
    start = conn.rcv_nxt
    dut.send(afd, b"s" * 500)
    for _ in range(5):
        conn.expect("A", plen=100, update=False)
    t0 = time.monotonic()
    block = (seq_add(start, 200), seq_add(start, 500))
    conn.send("A", ack=seq_add(start, 100), options=[("NOP", None), ("NOP", None), ("SAck", block)])
    rtx = conn.expect("A", seq=seq_add(start, 100), plen=100, timeout=1, update=False)
    rto = tcp_info(dut, afd)["rto"] / 1e6
    assert rtx.time - t0 < max(rto, 0.2) * 0.75, "hole only retransmitted by the RTO"


def test_tail_loss_probe(tb, dut):
    """With SACK, an unacknowledged tail is probed by resending the last segment (RFC 8985 7).

    The probe comes before the RTO would fire, and it is the last segment,
    not the first one an RTO would retransmit.
    """
    conn, afd, _ = tcp_established(tb, dut, 4, options=SACK_OPTS)
    start = conn.rcv_nxt
    dut.send(afd, b"t" * 300)
    sent = [conn.expect("A", plen=100, update=False) for _ in range(3)]
    rto = tcp_info(dut, afd)["rto"] / 1e6
    probe = conn.expect("A", timeout=2, update=False)
    assert probe["TCP"].seq == seq_add(start, 200), "first retransmission is not of the tail"
    assert probe.time - sent[-1].time < rto


def test_rack_detects_lost_retransmission(tb, dut):
    """A retransmission that is itself lost is detected by RACK when later data is SACKed."""
    conn, afd, _ = tcp_established(tb, dut, 4, options=SACK_OPTS)
    start = conn.rcv_nxt

    def sack(*blocks):
        return [("NOP", None), ("NOP", None), ("SAck", tuple(seq_add(start, b) for b in blocks))]

    dut.send(afd, b"r" * 500)
    for _ in range(5):
        conn.expect("A", plen=100, update=False)
    conn.send("A", ack=seq_add(start, 100), options=sack(200, 500))
    conn.expect("A", seq=seq_add(start, 100), plen=100, timeout=1, update=False)
    # The retransmission is "lost"; new data sent after it gets SACKed.
    dut.send(afd, b"n" * 100)
    conn.expect("A", seq=seq_add(start, 500), plen=100, timeout=1, update=False)
    time.sleep(0.02)
    t0 = time.monotonic()
    conn.send("A", ack=seq_add(start, 100), options=sack(200, 600))
    again = conn.expect("A", seq=seq_add(start, 100), plen=100, timeout=1, update=False)
    rto = tcp_info(dut, afd)["rto"] / 1e6
    assert again.time - t0 < rto * 0.75, "lost retransmission only recovered by the RTO"
