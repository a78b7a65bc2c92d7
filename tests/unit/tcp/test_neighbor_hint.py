"""TCP tells the network layer when its peer is reachable (RFC 4861 7.3.1, BUGS-H9 B2)."""

from __future__ import annotations

from tests.unit.tcp.harness import IP, Raw


def test_ack_advancing_snd_una_confirms_the_neighbour_dup_ack_does_not() -> None:
    raw = Raw()
    s, _ = raw.client()
    raw.ctx.confirmed.clear()
    s.send(b"a" * 3000)
    raw.out()
    raw.inject(raw.seg(0, ack=raw.ack_for(0)))  # duplicate ACK: no progress
    assert raw.ctx.confirmed == []
    raw.inject(raw.seg(0, ack=raw.ack_for(1448)))  # forward progress (Linux FLAG_DATA_ACKED)
    assert raw.ctx.confirmed == [(None, IP("10.0.0.1"))]
    raw.inject(raw.seg(0, ack=raw.ack_for(2000)))  # same instant: one confirmation is enough
    assert len(raw.ctx.confirmed) == 1
    raw.advance(raw.ctx.now + 0.05)  # NEIGH_CONFIRM_INTERVAL later: progress confirms again
    raw.inject(raw.seg(0, ack=raw.ack_for(3000)))
    assert len(raw.ctx.confirmed) == 2
