"""TCP small queues (Linux tcp_small_queue_check / tcp_wfree): a connection keeps
at most ~1 ms (at least 2 TSO segments, here at least 64 KiB) of data queued below
TCP, and resumes when the NIC queue drains (``handle_egress_room``), not by polling.
"""

from __future__ import annotations

from tests.unit.tcp.harness import Raw


def _bulk_sender(gso: int, srtt: float, cwnd: int) -> tuple[Raw, object]:
    raw = Raw(gso=gso)
    s, _ = raw.client(window=65535, ws=7)
    raw.inject(raw.seg(0, ack=raw.ack_for(0), window=65535))  # scaled: 8 MiB
    c = s.conn
    assert c.snd_wnd == 65535 << 7
    c.rtt.srtt = srtt
    c.cc.cwnd = cwnd
    c.cc.ssthresh = cwnd  # congestion avoidance: pacing factor 1.2
    c.opts.sndbuf = 8 << 20
    raw.ctx.take()
    return raw, s


def _queued(raw: Raw) -> int:
    return sum(len(o.data) for o in raw.ctx.out)


def test_queue_below_tcp_bounded_until_the_nic_drains_it() -> None:
    raw, s = _bulk_sender(gso=0, srtt=0.010, cwnd=400_000)
    c = s.conn  # type: ignore[attr-defined]
    limit = c._tsq_limit(c._cur_mss())
    assert limit == 65536  # 400 kB * 1.2 / 10 ms = 48 kB per ms < the 64 KiB floor
    assert s.send(b"z" * 1_000_000) == 1_000_000  # type: ignore[attr-defined]
    first = _queued(raw)
    # Stops once 64 KiB wait below (plus the segment that crossed the line),
    # far below what cwnd and the peer's window allow.
    assert limit <= first < limit + 1500
    assert c.flight < 70_000
    raw.advance(raw.ctx.now + 0.005)  # time alone does not release it (no polling) ...
    assert _queued(raw) == first
    d = raw.tcp.next_deadline()
    assert d is None or d > raw.ctx.now + 0.001  # nothing polls every millisecond
    raw.ctx.take()
    raw.tcp.handle_egress_room(1, raw.ctx.now)  # ... the NIC taking the queue does,
    assert raw.tcp.next_deadline() == raw.ctx.now  # from the next timer pass
    raw.advance(raw.ctx.now)
    assert limit <= _queued(raw) < limit + 1500
    raw.ctx.take()
    raw.tcp.handle_egress_room(2, raw.ctx.now)  # another NIC draining changes nothing,
    d = raw.tcp.next_deadline()
    assert d is None or d > raw.ctx.now  # and asks for no timer pass (no busy loop)
    raw.advance(raw.ctx.now)
    assert _queued(raw) == 0


def test_limit_is_about_one_ms_at_the_pacing_rate_capped_by_limit_output_bytes() -> None:
    _, s = _bulk_sender(gso=65536, srtt=0.001, cwnd=2_000_000)
    c = s.conn  # type: ignore[attr-defined]
    # 2 MB * 1.2 per ms = 2.4 MB of queue allowed (tcp_update_pacing_rate), below 4 MiB.
    assert c._tsq_limit(c._cur_mss()) == 2_400_000
    c.rtt.srtt = 0.0001
    assert c._tsq_limit(c._cur_mss()) == 4 << 20  # tcp_limit_output_bytes
    c.rtt.srtt = 1.0
    # At least two full TSO super-segments.
    assert c._tsq_limit(c._cur_mss()) == 2 * c._tso_limit(c._cur_mss())


def test_loopback_peer_is_not_throttled() -> None:
    """Local delivery has no NIC queue to drain (it happens at the next timer pass)."""
    raw, s = _bulk_sender(gso=0, srtt=0.010, cwnd=400_000)
    raw.ctx.addrs.add(raw.peer)  # the peer is one of our own addresses
    s.conn.tsq_local = None  # type: ignore[attr-defined]
    s.send(b"l" * 300_000)  # type: ignore[attr-defined]
    assert _queued(raw) > 250_000
