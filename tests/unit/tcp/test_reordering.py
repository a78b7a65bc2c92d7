"""Reordering response (BUGS-H9 B3): spurious recoveries are undone, RACK adapts.

Linux undoes a fast recovery that proves spurious, by timestamps
(tcp_packet_delayed in tcp_try_undo_partial/tcp_try_undo_recovery, RFC 3522/4015)
or when every retransmission of the episode comes back D-SACKed
(tcp_try_undo_dsack, RFC 3708), restoring cwnd/ssthresh; D-SACKs widen RACK's
reo_wnd by min_RTT/4 per round trip up to 255 steps (tcp_rack_update_reo_wnd,
RFC 8985 6.2), min_RTT measured on a microsecond clock from cumulatively ACKed
data. Before these, the netem-like path below took 6-8 s of simulated time
for 2 MiB (2-3x longer than now) and collapsed cwnd to ~3 segments.
"""

from __future__ import annotations

import struct

import pytest

from netvisor.tcpip.tcp import constants as C
from netvisor.tcpip.tcp.constants import CaState
from tests.unit.tcp.harness import Net, Raw
from tests.unit.tcp.test_transfer import run_transfer, setup_transfer

MSS = 1448  # 1460 - 12 (timestamps)


def _recovery(raw: Raw) -> tuple[object, int]:
    """Ten segments out, segments 2-6 SACKed: fast recovery retransmits segment 1."""
    s, _ = raw.client()
    s.setsockopt(C.IPPROTO_TCP, C.TCP_NODELAY, struct.pack("i", 1))
    for _ in range(30):
        s.conn.rtt.sample(0.05)
    s.send(b"u" * (10 * MSS))
    assert len(raw.out()) == 10
    raw.advance(raw.ctx.now + 0.05)
    cwnd = s.conn.cc.cwnd
    base = raw.ack_for(0)
    sack = ((base + MSS) & 0xFFFFFFFF, (base + 6 * MSS) & 0xFFFFFFFF)
    raw.inject(raw.seg(0, ack=base, sack_blocks=(sack,)))
    out = raw.out()
    assert s.conn.ca_state == CaState.RECOVERY and s.conn.cc.cwnd < cwnd
    assert any(r.seq == base and len(p) == MSS for r, p in out)  # segment 1 resent
    return s, cwnd


def test_recovery_undone_when_every_retransmission_is_dsacked_rfc3708() -> None:
    raw = Raw()
    s, cwnd = _recovery(raw)
    base = raw.ack_for(0)
    # The original segment 1 was only late: everything is ACKed, and the
    # retransmitted copy is reported as a duplicate (D-SACK, RFC 2883).
    dsack = (base, (base + MSS) & 0xFFFFFFFF)
    raw.inject(raw.seg(0, ack=raw.ack_for(10 * MSS), sack_blocks=(dsack,)))
    c = s.conn  # type: ignore[attr-defined]
    assert c.undos == 1 and c.ca_state == CaState.OPEN
    assert c.cc.cwnd >= cwnd  # cwnd given back (tcp_undo_cwnd_reduction)


def test_recovery_undone_by_timestamps_when_the_original_fills_the_hole_rfc3522() -> None:
    raw = Raw()
    s, cwnd = _recovery(raw)
    c = s.conn  # type: ignore[attr-defined]
    # The ACK that fills the hole echoes the TSval of the original segment 1,
    # older than the retransmission's: the original arrived (tcp_packet_delayed).
    old_tsval = c.undo[2] - 50
    raw.ts_echo = old_tsval
    raw.inject(raw.seg(0, ack=raw.ack_for(10 * MSS)))
    assert c.undos == 1 and c.ca_state == CaState.OPEN and c.cc.cwnd >= cwnd


def test_real_loss_is_not_undone() -> None:
    raw = Raw()
    s, cwnd = _recovery(raw)
    c = s.conn  # type: ignore[attr-defined]
    raw.ts_echo = c.ts_now()  # echoes the retransmission: it was needed
    raw.inject(raw.seg(0, ack=raw.ack_for(10 * MSS)))
    assert c.undos == 0 and c.cc.cwnd < cwnd


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_netem_like_loss_duplication_reordering_2mib(seed: int) -> None:
    """netem 'loss 2% duplicate 1% delay 10ms reorder 25%' both ways (H9's impaired path):
    25% of frames skip the 10 ms delay. Deterministic simulated-time bound."""
    net = Net(seed=seed, loss=0.02, dup=0.01, reorder=0.75, delay=0.0002, reorder_delay=0.010)
    t = setup_transfer(net, 2 << 20, seed=seed)
    run_transfer(t, limit=60)
    c = t.client.conn
    assert c.undos > 0
    assert net.now < 5.0, f"2 MiB took {net.now:.2f} s of simulated time"


def test_pure_reordering_keeps_cwnd_and_retransmissions_are_undone() -> None:
    net = Net(seed=2, reorder=0.75, delay=0.0002, reorder_delay=0.010)
    t = setup_transfer(net, 2 << 20, seed=2)
    run_transfer(t, limit=60)
    c = t.client.conn
    assert c.lost_count == 0 or c.undos >= c.lost_count * 3 // 4
    assert c.cc.cwnd >= 10 * c.snd_mss
    assert net.now < 1.5
