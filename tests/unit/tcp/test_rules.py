"""One rule per test, sans-IO with a fake clock; each names the RFC section it checks."""

from __future__ import annotations

import errno
import struct

import pytest

from netvisor.tcpip.api import IcmpError
from netvisor.tcpip.errors import NetError
from netvisor.tcpip.tcp import TcpConfig
from netvisor.tcpip.tcp import constants as C
from netvisor.tcpip.tcp.constants import AF_INET, State
from netvisor.tcpip.wire.tcp import TcpFlags as F
from netvisor.tcpip.wire.tcp import TcpRepr
from tests.unit.tcp.harness import IP, Net, Raw

ACKF = F.NONE


def errno_of(fn, *a):  # type: ignore[no-untyped-def]
    with pytest.raises(NetError) as ei:
        fn(*a)
    return ei.value.errno


# --------------------------------------------------------------------------- opening

def test_rfc6298_2_1_syn_retransmitted_at_exactly_1s_then_backoff() -> None:
    raw = Raw()
    s = raw.tcp.socket(AF_INET)
    assert errno_of(s.connect, ("10.0.0.1", 80)) == errno.EINPROGRESS
    (syn, _), = raw.out()
    assert syn.flags == F.SYN and syn.ack is None
    # RFC 7323 / 2018 / 6691 options in the SYN, Linux values.
    assert syn.mss == 1460 and syn.window_scale == 7 and syn.sack_permitted and syn.timestamps
    raw.advance(0.99)
    assert raw.out() == []
    raw.advance(1.0)
    (again, _), = raw.out()
    assert again.flags == F.SYN and again.seq == syn.seq
    raw.advance(2.99)
    assert raw.out() == []
    raw.advance(3.0)  # RFC 6298 5.5: doubled
    assert len(raw.out()) == 1
    assert errno_of(s.connect, ("10.0.0.1", 80)) == errno.EALREADY


def test_syn_retries_exhausted_gives_etimedout() -> None:
    raw = Raw(TcpConfig(syn_retries=2))
    s = raw.tcp.socket(AF_INET)
    errno_of(s.connect, ("10.0.0.1", 80))
    raw.advance(1.0 + 2.0 + 4.0 + 0.01)
    assert len(raw.out()) == 3
    assert s.poll() & C.POLLERR
    assert errno_of(s.connect, ("10.0.0.1", 80)) == errno.ETIMEDOUT


def test_rfc9293_3_10_7_3_connect_sequence_of_errnos() -> None:
    raw = Raw()
    s, syn = raw.client()
    assert s.conn.state == State.ESTABLISHED
    # The second connect() after completion returned success; now EISCONN.
    assert errno_of(s.connect, ("10.0.0.1", 40000)) == errno.EISCONN
    assert s.conn.snd_wscale == 7 and s.conn.rcv_wscale == 7 and s.conn.sack_ok


def test_rfc9293_3_10_7_3_syn_sent_bad_ack_gets_rst_and_rst_without_ack_ignored() -> None:
    raw = Raw()
    s = raw.tcp.socket(AF_INET)
    errno_of(s.connect, ("10.0.0.1", 40000))
    (syn, _), = raw.out()
    raw.local_port = syn.src_port
    bad = TcpRepr(40000, syn.src_port, 5, (syn.seq + 100) & 0xFFFFFFFF, F.SYN, 1000)
    raw.inject(bad)
    (rst, _), = raw.out()
    assert rst.flags == F.RST and rst.seq == (syn.seq + 100) & 0xFFFFFFFF
    raw.inject(TcpRepr(40000, syn.src_port, 5, None, F.RST, 0))  # RFC 5961 3.2
    assert s.conn.state == State.SYN_SENT
    raw.inject(TcpRepr(40000, syn.src_port, 0, (syn.seq + 1) & 0xFFFFFFFF, F.RST, 0))
    assert errno_of(s.connect, ("10.0.0.1", 40000)) == errno.ECONNREFUSED
    assert s.poll() == C.POLLOUT | C.POLLWRNORM | C.POLLHUP | C.POLLIN | C.POLLRDNORM | C.POLLRDHUP


def test_rfc9293_3_10_7_2_passive_open_mirrors_options_and_accepts() -> None:
    raw = Raw()
    ls = raw.tcp.socket(AF_INET)
    ls.bind(("10.0.0.2", 80))
    ls.listen(4)
    assert ls.poll() == 0
    syn = TcpRepr(40000, 80, 1000, None, F.SYN, 65535, 0, 1400, None, True, (), (77, 0))
    raw.inject(syn)
    (sa, _), = raw.out()
    assert sa.flags == F.SYN and sa.ack == 1001 and sa.mss == 1460
    assert sa.window_scale is None  # the peer offered none (RFC 7323 2.2)
    assert sa.sack_permitted and sa.timestamps and sa.timestamps[1] == 77
    assert errno_of(ls.accept) == errno.EAGAIN
    raw.inject(TcpRepr(40000, 80, 1001, (sa.seq + 1) & 0xFFFFFFFF, F.NONE, 500,
                       timestamps=(78, sa.timestamps[0])))
    assert ls.poll() & C.POLLIN
    child, addr = ls.accept()
    assert addr == ("10.0.0.1", 40000)
    assert child.conn.state == State.ESTABLISHED and child.conn.snd_mss == 1400 - 12
    assert child.conn.snd_wnd == 500  # no scaling negotiated


def test_synack_retransmitted_then_half_open_dropped() -> None:
    raw = Raw(TcpConfig(synack_retries=1))
    ls = raw.tcp.socket(AF_INET)
    ls.bind(("10.0.0.2", 80))
    ls.listen(4)
    raw.inject(TcpRepr(40000, 80, 1000, None, F.SYN, 65535))
    assert len(raw.out()) == 1
    raw.advance(1.0)
    assert len(raw.out()) == 1
    raw.advance(3.01)
    assert raw.out() == [] and not raw.tcp.conns


def test_simultaneous_open_rfc9293_figure_7() -> None:
    net = Net(seed=3)
    a = net.add("10.0.0.1")
    b = net.add("10.0.0.2")
    sa, sb = a.tcp.socket(AF_INET), b.tcp.socket(AF_INET)
    sa.bind(("10.0.0.1", 7000))
    sb.bind(("10.0.0.2", 7001))
    errno_of(sa.connect, ("10.0.0.2", 7001))
    errno_of(sb.connect, ("10.0.0.1", 7000))
    net.run(0.003)
    assert sa.conn.state == State.SYN_SENT  # both SYNs in flight
    net.run(2.0)
    assert sa.conn.state == State.ESTABLISHED and sb.conn.state == State.ESTABLISHED
    sa.connect(("10.0.0.2", 7001))
    sa.send(b"x")
    net.run(3.0)
    assert sb.recv(5) == b"x"


def test_simultaneous_close_closing_then_time_wait() -> None:
    net = Net(seed=3)
    a = net.add("10.0.0.1", TcpConfig(time_wait_timeout=5))
    b = net.add("10.0.0.2", TcpConfig(time_wait_timeout=5))
    ls = b.tcp.socket(AF_INET)
    ls.bind(("10.0.0.2", 80))
    ls.listen(1)
    c = a.tcp.socket(AF_INET)
    errno_of(c.connect, ("10.0.0.2", 80))
    net.run(1)
    s, _ = ls.accept()
    c.close()
    s.close()
    seen: set[State] = set()
    net.run(2, lambda: seen.update({c.conn.state, s.conn.state}))
    assert State.CLOSING in seen  # each side got the other's FIN before its ACK
    assert c.conn.state == State.TIME_WAIT and s.conn.state == State.TIME_WAIT
    net.run(8)
    assert not a.tcp.conns and not b.tcp.conns


# --------------------------------------------------------------------------- RST / SYN / ACK checks

def test_rfc5961_3_2_in_window_rst_gets_challenge_ack_exact_rst_resets() -> None:
    raw = Raw()
    s, _ = raw.client()
    raw.inject(raw.seg(100, F.RST, ack=None))
    (ca, _), = raw.out()
    assert ca.flags == F.NONE and ca.ack == (raw.peer_iss + 1) & 0xFFFFFFFF
    assert s.conn.state == State.ESTABLISHED
    raw.inject(raw.seg(10_000_000, F.RST, ack=None))  # out of window: silently dropped
    assert raw.out() == []
    raw.inject(raw.seg(0, F.RST, ack=None))
    assert s.conn.state == State.CLOSED
    assert s.poll() & C.POLLERR and s.poll() & C.POLLHUP
    assert errno_of(s.recv, 10) == errno.ECONNRESET
    assert s.recv(10) == b""
    assert errno_of(s.send, b"x") == errno.EPIPE


def test_rfc5961_4_2_syn_in_established_gets_challenge_ack() -> None:
    raw = Raw()
    s, _ = raw.client()
    raw.inject(raw.seg(5, F.SYN, ack=None))
    (ca, _), = raw.out()
    assert ca.flags == F.NONE and s.conn.state == State.ESTABLISHED


def test_rfc9293_3_10_7_4_unacceptable_segment_is_acked_and_dropped() -> None:
    raw = Raw()
    s, _ = raw.client()
    raw.inject(raw.seg(-5000, ack=raw.ack_for(0)), b"old")
    (a, _), = raw.out()
    assert a.ack == (raw.peer_iss + 1) & 0xFFFFFFFF
    assert errno_of(s.recv, 10) == errno.EAGAIN


def test_rfc5961_5_2_ack_of_unsent_data_is_acked_and_dropped() -> None:
    raw = Raw()
    s, _ = raw.client()
    raw.inject(raw.seg(0, ack=raw.ack_for(5000)), b"data")
    (a, _), = raw.out()
    assert a.ack == (raw.peer_iss + 1) & 0xFFFFFFFF  # the data was not taken
    assert errno_of(s.recv, 10) == errno.EAGAIN


def test_rfc9293_3_10_7_1_closed_port_gets_rst() -> None:
    raw = Raw()
    raw.inject(TcpRepr(40000, 81, 1000, None, F.SYN, 100), b"")
    (r, _), = raw.out()
    assert r.flags == F.RST and r.ack == 1001 and r.seq == 0
    raw.inject(TcpRepr(40000, 81, 1000, 777, F.NONE, 100), b"abc")
    (r, _), = raw.out()
    assert r.flags == F.RST and r.seq == 777 and r.ack is None
    raw.inject(TcpRepr(40000, 81, 1000, 777, F.RST, 100))
    assert raw.out() == []


def test_rfc7323_5_3_paws_drops_old_timestamp() -> None:
    raw = Raw()
    s, _ = raw.client()
    raw.inject(raw.seg(0, ack=raw.ack_for(0)), b"new")
    raw.out()
    old = TcpRepr(raw.peer_port, raw.local_port, (raw.peer_iss + 4) & 0xFFFFFFFF, raw.ack_for(0),
                  F.NONE, 65535, timestamps=(raw.peer_ts - 100, 0))
    raw.inject(old, b"stale")
    (a, _), = raw.out()
    assert a.ack == (raw.peer_iss + 4) & 0xFFFFFFFF
    assert s.recv(100) == b"new"


# --------------------------------------------------------------------------- timers and data

def test_rfc6298_retransmission_at_rto_and_karn() -> None:
    raw = Raw()
    s, _ = raw.client(ts=False)
    # Handshake RTT 0 -> SRTT ~0, RTO = max(4*RTTVAR, 200 ms) + SRTT = 200 ms (Linux floor).
    assert abs(s.conn.rtt.rto - 0.2) < 1e-3
    raw.advance(10.0)
    s.send(b"a" * 100)
    (d, p), = raw.out()
    assert p == b"a" * 100
    t_rto = 10.0 + s.conn.rtt.rto
    raw.advance(t_rto - 0.001)
    assert raw.out() == []
    raw.advance(t_rto)
    (r, p2), = raw.out()
    assert r.seq == d.seq and p2 == p
    srtt = s.conn.rtt.srtt
    raw.advance(t_rto + 0.1)
    raw.inject(raw.seg(0, ack=raw.ack_for(100)))
    assert s.conn.rtt.srtt == srtt  # Karn: no sample from a retransmitted segment
    assert s.conn.rtx_at is None and s.conn.rtt.backoff == 0


def test_rfc1122_4_2_3_2_delayed_ack_every_second_segment_and_40ms_timer() -> None:
    raw = Raw()
    s, _ = raw.client()
    s.conn.quickack = 0  # past Linux's quick-ack start
    ack0 = raw.ack_for(0)
    raw.inject(raw.seg(0, ack=ack0), b"x" * 536)
    assert raw.out() == []
    raw.inject(raw.seg(536, ack=ack0), b"x" * 536)
    (a, _), = raw.out()
    assert a.ack == (raw.peer_iss + 1 + 1072) & 0xFFFFFFFF
    t = raw.ctx.now
    raw.inject(raw.seg(1072, ack=ack0), b"y" * 10)
    raw.advance(t + 0.0399)
    assert raw.out() == []
    raw.advance(t + 0.04)
    (a2, _), = raw.out()
    assert a2.ack == (raw.peer_iss + 1 + 1082) & 0xFFFFFFFF


def test_rfc5681_4_2_out_of_order_gets_immediate_dup_ack_with_sack() -> None:
    raw = Raw()
    s, _ = raw.client()
    s.conn.quickack = 0
    raw.inject(raw.seg(1000, ack=raw.ack_for(0)), b"z" * 100)
    (a, _), = raw.out()
    assert a.ack == (raw.peer_iss + 1) & 0xFFFFFFFF
    base = raw.peer_iss + 1
    assert a.sack_blocks == (((base + 1000) & 0xFFFFFFFF, (base + 1100) & 0xFFFFFFFF),)
    raw.inject(raw.seg(0, ack=raw.ack_for(0)), b"q" * 1000)
    (a2, _), = raw.out()  # filling the hole: ACK at once, no blocks left
    assert a2.ack == (base + 1100) & 0xFFFFFFFF and a2.sack_blocks == ()
    assert s.recv(5000) == b"q" * 1000 + b"z" * 100


def test_rfc2883_dsack_for_duplicate() -> None:
    raw = Raw()
    s, _ = raw.client()
    raw.inject(raw.seg(0, ack=raw.ack_for(0)), b"abc")
    raw.out()
    raw.inject(raw.seg(0, ack=raw.ack_for(0)), b"abc")
    (a, _), = raw.out()
    base = raw.peer_iss + 1
    assert a.sack_blocks[0] == (base & 0xFFFFFFFF, (base + 3) & 0xFFFFFFFF)


def test_rfc896_nagle_nodelay_and_cork() -> None:
    raw = Raw()
    s, _ = raw.client()
    s.send(b"a")
    assert len(raw.out()) == 1
    s.send(b"b")  # small segment with unacked data in flight: held (Nagle)
    assert raw.out() == []
    s.setsockopt(C.IPPROTO_TCP, C.TCP_NODELAY, struct.pack("i", 1))
    (seg, p), = raw.out()
    assert p == b"b"
    s.setsockopt(C.IPPROTO_TCP, C.TCP_CORK, struct.pack("i", 1))
    raw.inject(raw.seg(0, ack=raw.ack_for(2)))
    raw.out()
    s.send(b"c")
    assert raw.out() == []  # corked: partial segments wait even with nothing in flight
    s.setsockopt(C.IPPROTO_TCP, C.TCP_CORK, struct.pack("i", 0))
    (seg, p), = raw.out()
    assert p == b"c"


def test_rfc9293_3_8_6_1_zero_window_probe_with_backoff() -> None:
    raw = Raw()
    s, _ = raw.client(window=0, ws=None, ts=False)
    s.send(b"data")
    assert raw.out() == []
    rto = s.conn.rtt.base_rto
    t0 = raw.ctx.now
    raw.advance(t0 + rto - 0.001)
    assert raw.out() == []
    raw.advance(t0 + rto)
    (p1, d1), = raw.out()
    assert d1 == b"" and p1.seq == raw.ack_for(-1)  # Linux: SND.UNA - 1, no data
    raw.advance(t0 + rto + 2 * rto - 0.001)
    assert raw.out() == []
    raw.advance(t0 + 3 * rto)
    assert len(raw.out()) == 1
    raw.inject(raw.seg(0, ack=raw.ack_for(0), window=1000, ts=False))
    (d, p), = raw.out()
    assert p == b"data"


def test_receiver_silly_window_avoidance_rfc1122_4_2_3_3() -> None:
    raw = Raw()
    s, _ = raw.client(ts=False, setup=lambda s: s.setsockopt(
        C.SOL_SOCKET, C.SO_RCVBUF, struct.pack("i", 4000)))  # 8000 -> 4000 window
    assert s.conn.window_space() == 4000 and s.conn.rcv_wscale == 7
    ack0 = raw.ack_for(0)
    raw.inject(raw.seg(0, ack=ack0, ts=False), b"x" * 2000)
    raw.inject(raw.seg(2000, ack=ack0, ts=False), b"x" * 2000)
    a = raw.out()[-1][0]
    assert a.window <= 1  # full: only the rounded-up edge already promised remains
    s.recv(10)  # 10 bytes freed: no window update (less than MSS and half the buffer)
    assert raw.out() == []
    s.recv(100_000)
    (upd, _), = raw.out()
    assert upd.window > 0


def test_window_scaling_rfc7323_2_big_window_advertised() -> None:
    raw = Raw()
    s, _ = raw.client()
    raw.inject(raw.seg(0, ack=raw.ack_for(0)), b"x")
    raw.advance(raw.ctx.now + 1)
    (a, _), = raw.out()
    assert (a.window << 7) == s.conn.rcv_adv - s.conn.rcv_nxt
    assert a.window << 7 > 60000


def test_egress_backpressure_keeps_data_in_send_buffer() -> None:
    raw = Raw()
    s, _ = raw.client()
    raw.ctx.room = False
    assert s.send(b"q" * 3000) == 3000
    assert raw.out() == []
    raw.ctx.room = True
    raw.inject(raw.seg(0, ack=raw.ack_for(0), window=65535))
    data = b"".join(p for _, p in raw.out())
    # Minshall's Nagle (Linux): the 104-byte tail goes too, no small segment is in flight.
    assert data == b"q" * 3000


# --------------------------------------------------------------------------- closing

def test_close_with_unread_data_sends_rst_rfc2525_2_17() -> None:
    raw = Raw()
    s, _ = raw.client()
    raw.inject(raw.seg(0, ack=raw.ack_for(0)), b"unread")
    raw.out()
    s.close()
    (r, _), = raw.out()
    assert r.flags & F.RST
    assert not raw.tcp.conns


def test_so_linger_zero_sends_rst() -> None:
    raw = Raw()
    s, _ = raw.client()
    s.setsockopt(C.SOL_SOCKET, C.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    (r, _), = raw.out()
    assert r.flags & F.RST


def test_so_linger_nonzero_exposes_waiting_state() -> None:
    raw = Raw()
    s, _ = raw.client()
    s.setsockopt(C.SOL_SOCKET, C.SO_LINGER, struct.pack("ii", 1, 5))
    s.send(b"x")
    s.close()
    assert s.lingering
    fin = raw.out()[-1][0]
    assert fin.flags & F.FIN
    raw.inject(raw.seg(0, ack=raw.ack_for(2)))
    assert not s.lingering and s.conn.state == State.FIN_WAIT_2


def test_time_wait_length_and_fin_wait_2_timeout_tcp_linger2() -> None:
    raw = Raw(TcpConfig(time_wait_timeout=7.0, fin_timeout=3.0))
    s, _ = raw.client()
    s.close()
    raw.out()
    raw.inject(raw.seg(0, ack=raw.ack_for(1)))
    assert s.conn.state == State.FIN_WAIT_2
    t = raw.ctx.now
    raw.advance(t + 2.99)
    assert s.conn.state == State.FIN_WAIT_2
    raw.advance(t + 3.0)
    assert s.conn.state == State.CLOSED
    raw2 = Raw(TcpConfig(time_wait_timeout=7.0))
    s2, _ = raw2.client()
    s2.shutdown(C.SHUT_WR)
    raw2.out()
    raw2.inject(raw2.seg(0, F.FIN, ack=raw2.ack_for(1)))
    assert s2.conn.state == State.TIME_WAIT
    t = raw2.ctx.now
    raw2.advance(t + 6.99)
    assert s2.conn.state == State.TIME_WAIT
    raw2.inject(raw2.seg(0, F.FIN, ack=raw2.ack_for(1)))  # retransmitted FIN: re-ACK, restart
    assert raw2.out()[-1][0].ack == (raw2.peer_iss + 2) & 0xFFFFFFFF
    raw2.advance(t + 6.99 + 7.0)
    assert s2.conn.state == State.CLOSED


def test_half_close_peer_can_keep_sending_rfc9293_3_6() -> None:
    raw = Raw()
    s, _ = raw.client()
    s.shutdown(C.SHUT_WR)
    (fin, _), = raw.out()
    assert fin.flags & F.FIN and s.conn.state == State.FIN_WAIT_1
    assert errno_of(s.send, b"x") == errno.EPIPE
    raw.inject(raw.seg(0, ack=raw.ack_for(1)), b"more")
    assert s.recv(10) == b"more" and s.conn.state == State.FIN_WAIT_2
    raw.inject(raw.seg(4, F.FIN, ack=raw.ack_for(1)))
    assert s.recv(10) == b"" and s.conn.state == State.TIME_WAIT


def test_peer_fin_gives_eof_and_poll_bits() -> None:
    raw = Raw()
    s, _ = raw.client()
    assert s.poll() == C.POLLOUT | C.POLLWRNORM
    raw.inject(raw.seg(0, F.FIN, ack=raw.ack_for(0)), b"end")
    assert s.conn.state == State.CLOSE_WAIT
    assert s.poll() == (C.POLLIN | C.POLLRDNORM | C.POLLRDHUP | C.POLLOUT | C.POLLWRNORM)
    assert s.recv(10) == b"end" and s.recv(10) == b""
    s.close()
    (lastack, _), = raw.out()[-1:]
    assert lastack.flags & F.FIN and s.conn.state == State.LAST_ACK
    raw.inject(raw.seg(4, ack=raw.ack_for(1)))
    assert s.conn.state == State.CLOSED and not raw.tcp.conns


def test_data_after_close_gets_rst_linux_abort_on_data() -> None:
    raw = Raw()
    s, _ = raw.client()
    s.close()
    raw.out()
    raw.inject(raw.seg(0, ack=raw.ack_for(1)), b"late")
    assert any(r.flags & F.RST for r, _ in raw.out())


# --------------------------------------------------------------------------- keepalive, timeouts

def test_keepalive_probes_then_etimedout() -> None:
    raw = Raw()
    s, _ = raw.client()
    s.setsockopt(C.SOL_SOCKET, C.SO_KEEPALIVE, struct.pack("i", 1))
    s.setsockopt(C.IPPROTO_TCP, C.TCP_KEEPIDLE, struct.pack("i", 10))
    s.setsockopt(C.IPPROTO_TCP, C.TCP_KEEPINTVL, struct.pack("i", 2))
    s.setsockopt(C.IPPROTO_TCP, C.TCP_KEEPCNT, struct.pack("i", 3))
    t0 = s.conn.last_rcv_at
    raw.advance(t0 + 9.99)
    assert raw.out() == []
    raw.advance(t0 + 10)
    (p, d), = raw.out()
    assert p.seq == raw.ack_for(-1) and d == b""
    raw.advance(t0 + 14)
    assert len(raw.out()) == 2
    raw.advance(t0 + 16)
    (r, _), = raw.out()
    assert r.flags & F.RST
    assert errno_of(s.recv, 1) == errno.ETIMEDOUT


def test_keepalive_answered_keeps_connection() -> None:
    raw = Raw()
    s, _ = raw.client()
    s.setsockopt(C.SOL_SOCKET, C.SO_KEEPALIVE, struct.pack("i", 1))
    s.setsockopt(C.IPPROTO_TCP, C.TCP_KEEPIDLE, struct.pack("i", 10))
    s.setsockopt(C.IPPROTO_TCP, C.TCP_KEEPCNT, struct.pack("i", 1))
    t0 = s.conn.last_rcv_at
    raw.advance(t0 + 10)
    raw.out()
    raw.inject(raw.seg(0, ack=raw.ack_for(0)))
    raw.advance(t0 + 19.9)
    assert s.conn.state == State.ESTABLISHED


def test_tcp_user_timeout_aborts_with_etimedout() -> None:
    raw = Raw()
    s, _ = raw.client(ts=False)
    s.setsockopt(C.IPPROTO_TCP, C.TCP_USER_TIMEOUT, struct.pack("i", 1500))
    s.send(b"x" * 10)
    raw.advance(raw.ctx.now + 10)
    assert s.conn.state == State.CLOSED
    assert errno_of(s.send, b"y") == errno.ETIMEDOUT


# --------------------------------------------------------------------------- ICMP

def _icmp(raw: Raw, s, type_: int, code: int, err: int, seq_off: int, mtu: int = 0) -> IcmpError:  # type: ignore[no-untyped-def]
    conn = s.conn
    quoted = struct.pack("!HHI", conn.lport, conn.rport, (conn.snd_una + seq_off) & 0xFFFFFFFF)
    return IcmpError(AF_INET, type_, code, err, IP("10.0.0.9"), conn.laddr, conn.raddr, 6,
                     quoted, mtu)


def test_rfc5927_icmp_port_unreachable_aborts_syn_sent() -> None:
    raw = Raw()
    s = raw.tcp.socket(AF_INET)
    errno_of(s.connect, ("10.0.0.1", 80))
    raw.out()
    raw.tcp.handle_icmp_error(_icmp(raw, s, 3, 3, errno.ECONNREFUSED, 0), raw.ctx.now)
    assert errno_of(s.connect, ("10.0.0.1", 80)) == errno.ECONNREFUSED


def test_rfc5927_4_1_icmp_outside_window_ignored_and_soft_error_in_established() -> None:
    raw = Raw()
    s, _ = raw.client()
    raw.tcp.handle_icmp_error(_icmp(raw, s, 3, 1, errno.EHOSTUNREACH, 5000), raw.ctx.now)
    assert s.conn.sk_err_soft == 0
    raw.tcp.handle_icmp_error(_icmp(raw, s, 3, 1, errno.EHOSTUNREACH, 0), raw.ctx.now)
    assert s.conn.state == State.ESTABLISHED and s.conn.sk_err_soft == errno.EHOSTUNREACH


def test_rfc1191_frag_needed_lowers_mss_and_resends() -> None:
    raw = Raw()
    s, _ = raw.client(ts=False)
    s.send(b"p" * 2000)
    first = raw.out()
    assert len(first[0][1]) == 1460
    raw.tcp.handle_icmp_error(_icmp(raw, s, 3, 4, errno.EMSGSIZE, 0, mtu=1000), raw.ctx.now)
    assert s.conn.snd_mss == 960
    resent = raw.out()
    assert resent and max(len(p) for _, p in resent) <= 960


# --------------------------------------------------------------------------- listener, cookies

def test_rfc4987_syn_cookies_when_syn_queue_full_keep_options() -> None:
    raw = Raw()
    ls = raw.tcp.socket(AF_INET)
    ls.bind(("10.0.0.2", 80))
    ls.listen(2)
    for port in range(50000, 50010):  # flood from spoofed ports
        raw.inject(TcpRepr(port, 80, 7, None, F.SYN, 1000, 0, 1460))
    raw.out()
    assert len(ls.listener.syn_queue) == 2 and ls.listener.cookies_sent == 8
    syn = TcpRepr(41000, 80, 9999, None, F.SYN, 65535, 0, 1460, 6, True, (), (100, 0))
    raw.inject(syn)
    (sa, _), = raw.out()
    assert sa.window_scale == 7 and sa.sack_permitted and sa.timestamps
    assert len(ls.listener.syn_queue) == 2  # no state kept for the cookie
    raw.inject(TcpRepr(41000, 80, 10000, (sa.seq + 1) & 0xFFFFFFFF, F.NONE, 1000,
                       timestamps=(101, sa.timestamps[0])), b"GET")
    child, _ = ls.accept()
    c = child.conn
    assert c.state == State.ESTABLISHED and c.snd_wscale == 6 and c.sack_ok and c.ts_ok
    assert c.snd_wnd == 1000 << 6 and child.recv(10) == b"GET"
    # A forged ACK with a wrong cookie gets an RST, not a connection.
    raw.inject(TcpRepr(41001, 80, 10000, 12345, F.NONE, 1000))
    assert raw.out()[-1][0].flags == F.RST


def test_accept_queue_full_drops_syn_and_final_ack_without_rst() -> None:
    """Linux: backlog 0 holds one connection; overflow drops silently, the peer retries."""
    raw = Raw()
    ls = raw.tcp.socket(AF_INET)
    ls.bind(("10.0.0.2", 80))
    ls.listen(0)
    raw.inject(TcpRepr(50000, 80, 7, None, F.SYN, 1000, 0, 1460))
    (sa1, _), = raw.out()
    raw.inject(TcpRepr(50001, 80, 7, None, F.SYN, 1000, 0, 1460))  # SYN queue full: cookie
    (sa2, _), = raw.out()
    raw.inject(TcpRepr(50000, 80, 8, (sa1.seq + 1) & 0xFFFFFFFF, F.NONE, 1000))
    ack2 = TcpRepr(50001, 80, 8, (sa2.seq + 1) & 0xFFFFFFFF, F.NONE, 1000)
    raw.inject(ack2)
    assert raw.out() == [] and len(ls.listener.accept_queue) == 1
    raw.inject(TcpRepr(50002, 80, 7, None, F.SYN, 1000, 0, 1460))
    assert raw.out() == []  # SYN dropped while the accept queue is full
    ls.accept()
    assert errno_of(ls.accept) == errno.EAGAIN
    raw.inject(ack2)  # retransmitted ACK: the cookie is still good
    child, addr = ls.accept()
    assert addr == ("10.0.0.1", 50001)


def test_tcp_defer_accept_waits_for_data() -> None:
    raw = Raw()
    ls = raw.tcp.socket(AF_INET)
    ls.setsockopt(C.IPPROTO_TCP, C.TCP_DEFER_ACCEPT, struct.pack("i", 5))
    ls.bind(("10.0.0.2", 80))
    ls.listen(4)
    raw.inject(TcpRepr(50000, 80, 7, None, F.SYN, 1000, 0, 1460))
    (sa, _), = raw.out()
    raw.inject(TcpRepr(50000, 80, 8, (sa.seq + 1) & 0xFFFFFFFF, F.NONE, 1000))
    assert errno_of(ls.accept) == errno.EAGAIN
    raw.inject(TcpRepr(50000, 80, 8, (sa.seq + 1) & 0xFFFFFFFF, F.PSH, 1000), b"hi")
    child, _ = ls.accept()
    assert child.recv(5) == b"hi"


def test_listener_close_resets_queued_children() -> None:
    raw = Raw()
    ls = raw.tcp.socket(AF_INET)
    ls.bind(("10.0.0.2", 80))
    ls.listen(4)
    raw.inject(TcpRepr(50000, 80, 7, None, F.SYN, 1000, 0, 1460))
    (sa, _), = raw.out()
    raw.inject(TcpRepr(50000, 80, 8, (sa.seq + 1) & 0xFFFFFFFF, F.NONE, 1000))
    ls.close()
    assert any(r.flags & F.RST for r, _ in raw.out())
    assert not raw.tcp.conns and not raw.tcp.ports


def test_time_wait_reopened_by_new_syn() -> None:
    net = Net(seed=2)
    a = net.add("10.0.0.1")
    b = net.add("10.0.0.2")
    ls = b.tcp.socket(AF_INET)
    ls.bind(("10.0.0.2", 80))
    ls.listen(4)
    c = a.tcp.socket(AF_INET)
    c.bind(("10.0.0.1", 6000))
    errno_of(c.connect, ("10.0.0.2", 80))
    net.run(1)
    s, _ = ls.accept()
    s.close()  # server closes first: server side ends in TIME_WAIT
    net.run(2)
    c.close()
    net.run(3)
    assert s.conn.state == State.TIME_WAIT
    c2 = a.tcp.socket(AF_INET)
    c2.setsockopt(C.SOL_SOCKET, C.SO_REUSEADDR, struct.pack("i", 1))
    c2.bind(("10.0.0.1", 6000))
    errno_of(c2.connect, ("10.0.0.2", 80))
    net.run(4)
    s2, _ = ls.accept()
    assert s2.conn.state == State.ESTABLISHED and s2.getpeername() == ("10.0.0.1", 6000)


# --------------------------------------------------------------------------- RACK-TLP

def _warm(s) -> None:  # type: ignore[no-untyped-def]
    for _ in range(30):
        s.conn.rtt.sample(0.05)


def test_rfc8985_7_tail_loss_probe_before_rto() -> None:
    raw = Raw()
    s, _ = raw.client(ts=False)
    _warm(s)
    s.setsockopt(C.IPPROTO_TCP, C.TCP_NODELAY, struct.pack("i", 1))
    t0 = raw.ctx.now
    s.send(b"d" * (4 * 1460))
    segs = raw.out()
    assert len(segs) == 4
    raw.advance(t0 + 0.05)
    raw.inject(raw.seg(0, ack=raw.ack_for(2 * 1460), ts=False))
    assert raw.out() == []
    pto = 2 * s.conn.rtt.srtt
    assert s.conn.tlp_at is not None and abs(s.conn.tlp_at - (t0 + 0.05 + pto)) < 1e-9
    assert s.conn.tlp_at < s.conn.rtx_at
    raw.advance(t0 + 0.05 + pto - 0.001)
    assert raw.out() == []
    raw.advance(t0 + 0.05 + pto)
    (probe, p), = raw.out()
    assert probe.seq == raw.ack_for(3 * 1460) and len(p) == 1460  # the last segment again


def test_rfc8985_6_rack_time_based_loss_detection() -> None:
    raw = Raw()
    s, _ = raw.client(ts=False)
    _warm(s)
    s.setsockopt(C.IPPROTO_TCP, C.TCP_NODELAY, struct.pack("i", 1))
    t0 = raw.ctx.now
    s.send(b"r" * (10 * 1460))
    assert len(raw.out()) == 10
    raw.advance(t0 + 0.05)
    base = raw.ack_for(0)
    # Segments 2 and 3 arrive, segment 1 does not: below DupThresh (3 segments).
    sack = ((base + 1460) & 0xFFFFFFFF, (base + 3 * 1460) & 0xFFFFFFFF)
    raw.inject(raw.seg(0, ack=base, ts=False, sack_blocks=(sack,)))
    assert raw.out() == []
    assert s.conn.ca_state != 3
    # RACK.rtt: the latest RTT sample; reo_wnd = min_RTT / 4 (RFC 8985 6.2), min_RTT
    # of cumulatively ACKed data measured on the transmit log's clock (none yet here,
    # so the estimator's minimum).
    due = t0 + s.conn.rtt.latest + (s.conn.rack.min_rtt or s.conn.rtt.min_rtt) / 4
    raw.advance(due - 0.001)
    assert raw.out() == []
    raw.advance(due + 1e-5)
    (r, p), = raw.out()
    assert r.seq == base and p == b"r" * 1460  # retransmitted long before the RTO
    assert s.conn.ca_state == 3  # Recovery


def test_tcp_cork_ceiling_200ms_and_msg_more() -> None:
    """tcp(7): corked partial data goes out after at most 200 ms; MSG_MORE corks one call."""
    raw = Raw()
    s, _ = raw.client()
    s.setsockopt(C.IPPROTO_TCP, C.TCP_CORK, struct.pack("i", 1))
    t0 = raw.ctx.now
    s.send(b"corked")
    raw.advance(t0 + 0.199)
    assert raw.out() == []
    raw.advance(t0 + 0.2)
    (seg, p), = raw.out()
    assert p == b"corked"
    s.setsockopt(C.IPPROTO_TCP, C.TCP_CORK, struct.pack("i", 0))
    raw.inject(raw.seg(0, ack=raw.ack_for(6)))
    raw.out()
    s.send(b"head", C.MSG_MORE)
    assert raw.out() == []
    s.send(b"tail")
    (seg, p), = raw.out()
    assert p == b"headtail"


def test_interactive_exchange_piggybacks_acks_linux_pingpong() -> None:
    """Request/response: after the first answer, requests are not ACKed alone (delayed ACK)."""
    raw = Raw()
    s, _ = raw.client()
    off = 0
    for i in range(3):
        raw.inject(raw.seg(off, ack=raw.ack_for(i)), b"q")
        off += 1
        first = raw.out()
        assert s.recv(10) == b"q"
        s.send(b"r")
        reply = raw.out()
        assert reply[-1][1] == b"r" and reply[-1][0].ack == (raw.peer_iss + 1 + off) & 0xFFFFFFFF
        if i >= 1:
            assert first == []  # the ACK rode on the reply
    assert s.conn.pingpong >= 1


def test_egress_blocked_connection_resumes_without_any_ack() -> None:
    """Backpressure from a queue filled by someone else: the blocked sender is retried."""
    raw = Raw()
    s, _ = raw.client()
    raw.ctx.room = False
    s.send(b"w" * 1000)
    assert raw.out() == [] and s.conn.flight == 0
    d = raw.tcp.next_deadline()
    assert d is not None and d <= raw.ctx.now + 0.001 + 1e-9
    raw.advance(raw.ctx.now + 0.005)
    assert raw.out() == []  # still full: keeps waiting, data stays queued
    raw.ctx.room = True
    raw.advance(raw.ctx.now + 0.002)
    (seg, p), = raw.out()
    assert p == b"w" * 1000


def test_data_sent_in_answer_acknowledges_the_segment_that_opened_the_window() -> None:
    """The ACK of a segment rides on the data its ACK released (RFC 9293 3.10.7.4 order)."""
    raw = Raw()
    s, _ = raw.client(window=10, ws=None)
    s.send(b"A" * 25)
    (first, p1), = raw.out()
    assert p1 == b"A" * 10
    raw.inject(raw.seg(0, F.PSH, ack=raw.ack_for(10), window=10), b"xyz")
    out = raw.out()
    data = [r for r, p in out if p]
    assert data and data[0].ack == (raw.peer_iss + 1 + 3) & 0xFFFFFFFF
    assert len(out) == 1  # no separate pure ACK


def test_soft_icmp_error_reported_on_timeout_linux_tcp_write_err() -> None:
    raw = Raw()
    s, _ = raw.client(ts=False)
    s.setsockopt(C.IPPROTO_TCP, C.TCP_USER_TIMEOUT, struct.pack("i", 1000))
    s.send(b"data")
    raw.out()
    raw.tcp.handle_icmp_error(_icmp(raw, s, 3, 1, errno.EHOSTUNREACH, 0), raw.ctx.now)
    raw.advance(raw.ctx.now + 2)
    assert errno_of(s.recv, 10) == errno.EHOSTUNREACH


def test_syn_flood_backlog_16_state_bounded_and_legit_client_completes() -> None:
    """RFC 4987: 3000 spoofed SYNs leave at most ``backlog`` half-open connections; a
    real client (timestamps on, as Linux) still connects through a cookie."""
    import random as _random
    raw = Raw()
    ls = raw.tcp.socket(AF_INET)
    ls.bind(("10.0.0.2", 80))
    ls.listen(16)
    rnd = _random.Random(7)
    for _ in range(3000):
        src = IP(f"10.{rnd.randrange(1, 250)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}")
        rep = TcpRepr(rnd.randrange(1024, 65535), 80, rnd.getrandbits(32), None, F.SYN, 512,
                      0, 1460)
        data = rep.to_bytes(src=src, dst=raw.addr)
        raw.tcp.handle_packet(src, raw.addr, memoryview(bytes(data)), raw.ctx.now,
                              checksum_valid=False, nic_id=1)
    raw.out()
    assert len(raw.tcp.conns) <= 16 and len(ls.listener.syn_queue) <= 16
    assert ls.listener.cookies_sent >= 3000 - 16
    syn = TcpRepr(41000, 80, 555, None, F.SYN, 65535, 0, 1460, 7, True, (), (9, 0))
    raw.inject(syn)
    (sa, _), = raw.out()
    raw.inject(TcpRepr(41000, 80, 556, (sa.seq + 1) & 0xFFFFFFFF, F.NONE, 512,
                       timestamps=(10, sa.timestamps[0])))
    child, addr = ls.accept()
    assert addr == ("10.0.0.1", 41000) and child.conn.snd_wscale == 7


def test_lost_retransmission_resent_before_rto_rfc8985_6_1() -> None:
    """A retransmission that is lost again is resent once later data is SACKed."""
    raw = Raw()
    s, _ = raw.client(ts=False)
    _warm(s)
    s.setsockopt(C.IPPROTO_TCP, C.TCP_NODELAY, struct.pack("i", 1))
    s.send(b"L" * (10 * 1460))
    assert len(raw.out()) == 10
    base = raw.ack_for(0)

    def sack(lo: int, hi: int) -> tuple[tuple[int, int], ...]:
        return (((base + lo * 1460) & 0xFFFFFFFF, (base + hi * 1460) & 0xFFFFFFFF),)

    raw.advance(raw.ctx.now + 0.05)
    for k in range(4, 11):  # segments 2..10 arrive, segment 1 is lost
        raw.inject(raw.seg(0, ack=base, ts=False, sack_blocks=sack(1, k)))
    out = raw.out()
    assert any(r.seq == base and len(p) == 1460 for r, p in out)  # fast retransmit
    assert s.conn.ca_state == 3
    s.send(b"N" * (4 * 1460))  # new data goes out after the retransmission
    new = [r for r, p in raw.out() if p == b"N" * 1460]
    assert new
    raw.advance(raw.ctx.now + 0.05)
    raw.inject(raw.seg(0, ack=base, ts=False, sack_blocks=sack(1, 12)))  # new data SACKed
    again = [(r, p) for r, p in raw.out() if r.seq == base]
    assert again and len(again[0][1]) == 1460  # resent again, long before the RTO
    assert s.conn.rtx_at is not None and s.conn.rtx_at > raw.ctx.now


def test_spurious_rto_undone_by_timestamps_rfc3522_rfc4015() -> None:
    """An ACK of the original transmission (older TSecr) after an RTO restores cwnd."""
    raw = Raw()
    s, _ = raw.client(sack=False)  # no TLP: the RTO is the first timer
    s.setsockopt(C.IPPROTO_TCP, C.TCP_NODELAY, struct.pack("i", 1))
    raw.advance(5.0)
    s.send(b"o" * 2920)
    orig = raw.out()
    ts_orig = orig[0][0].timestamps[0]
    cwnd = s.conn.cc.cwnd
    raw.advance(5.0 + s.conn.rtt.rto)
    assert raw.out() and s.conn.ca_state == 4 and s.conn.cc.cwnd < cwnd
    ack = TcpRepr(raw.peer_port, raw.local_port, (raw.peer_iss + 1) & 0xFFFFFFFF,
                  raw.ack_for(2920), F.NONE, 65535, timestamps=(raw.peer_ts + 5, ts_orig))
    raw.inject(ack)
    assert s.conn.ca_state == 0 and s.conn.cc.cwnd >= cwnd and s.conn.spurious_rtos == 1


def test_one_ack_per_driver_turn_for_a_batch_of_in_order_segments() -> None:
    """ACKs that are due (every 2nd full segment) leave at the end of the driver's turn:
    a batch of in-order segments gets one cumulative ACK, as GRO gives Linux."""
    raw = Raw()
    s, _ = raw.client()
    s.conn.quickack = 0
    for k in range(10):
        rep = raw.seg(k * 1448, ack=raw.ack_for(0))
        data = rep.to_bytes(src=raw.peer, dst=raw.addr, payload=b"b" * 1448)
        raw.tcp.handle_packet(raw.peer, raw.addr, memoryview(bytes(data)), raw.ctx.now,
                              checksum_valid=False, nic_id=1)
    assert raw.out() == []  # nothing before the turn's timer pass
    assert raw.tcp.next_deadline() == raw.ctx.now
    raw.advance(raw.ctx.now)
    (a, _), = raw.out()
    assert a.ack == (raw.peer_iss + 1 + 10 * 1448) & 0xFFFFFFFF
