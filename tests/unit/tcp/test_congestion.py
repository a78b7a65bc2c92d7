"""Congestion control alone: NewReno (RFC 5681), CUBIC (RFC 9438), HyStart++ (RFC 9406)."""

from __future__ import annotations

from netvisor.tcpip.tcp.congestion import Cubic, Reno, make
from netvisor.tcpip.tcp.congestion.base import INFINITE_SSTHRESH

MSS = 1000


def _rounds(cc, rtts: list[float], per_round: int = 10) -> list[bool]:  # type: ignore[no-untyped-def]
    """Drive rounds of ``per_round`` ACKs with the given RTT each; slow-start flags per round."""
    ack, nxt = 0, 0
    states = []
    for rtt in rtts:
        nxt += per_round * MSS
        for _ in range(per_round):
            ack += MSS
            cc.on_round_sample(ack, nxt, rtt)
            cc.on_ack(MSS, rtt, 0.0, 0)
        states.append(cc.in_slow_start())
    return states


def test_rfc5681_slow_start_then_additive_increase_reno() -> None:
    cc = Reno(MSS, 10)
    assert cc.cwnd == 10 * MSS and cc.ssthresh == INFINITE_SSTHRESH
    cc.on_ack(5 * MSS, 0.01, 0.0, 0)
    assert cc.cwnd == 15 * MSS  # slow start: + bytes acked
    cc.on_loss(0.0, 15 * MSS)
    assert cc.ssthresh == 7500
    cc.cwnd = cc.ssthresh
    for _ in range(7):
        cc.on_ack(MSS, 0.01, 0.0, 0)
    assert cc.cwnd == 7500  # 7000 bytes acked < cwnd: not yet
    cc.on_ack(MSS, 0.01, 0.0, 0)
    assert cc.cwnd == 7500 + MSS  # one MSS per window of ACKs (RFC 3465 byte counting)


def test_rfc9438_cubic_reduction_and_growth_towards_wmax() -> None:
    cc = Cubic(MSS, 10)
    cc.cwnd = 100 * MSS
    ss = cc.on_loss(0.0, 100 * MSS)
    assert ss == 70 * MSS  # beta_cubic = 0.7
    cc.cwnd = ss
    t = 0.0
    for _ in range(200):
        t += 0.01
        cc.on_ack(MSS, 0.01, t, 0)
    assert 70 * MSS < cc.cwnd <= 110 * MSS  # concave growth back towards W_max = 100


def test_rfc9406_hystart_leaves_slow_start_when_rtt_rises() -> None:
    cc = make("cubic", MSS, 10)
    states = _rounds(cc, [0.010, 0.010, 0.010, 0.030, 0.030, 0.030, 0.030, 0.030, 0.030])
    assert states[2] is True
    assert cc.hystart.in_css or not cc.in_slow_start()
    assert states[-1] is False and cc.ssthresh == cc.cwnd  # CSS rounds done: CA


def test_rfc9406_hystart_rtt_spike_returns_to_slow_start() -> None:
    cc = make("reno", MSS, 10)
    _rounds(cc, [0.010, 0.010, 0.030])
    assert cc.hystart.in_css
    before = cc.cwnd
    _rounds(cc, [0.010])
    assert not cc.hystart.in_css and cc.in_slow_start() and cc.cwnd > before


def test_hystart_off_after_loss() -> None:
    cc = make("cubic", MSS, 10)
    cc.on_loss(0.0, 10 * MSS)
    assert not cc.hystart.enabled
