"""NewReno congestion avoidance (RFC 5681 3.1; recovery per RFC 6582 in the connection)."""

from __future__ import annotations

from netvisor.tcpip.tcp.congestion.base import CongestionControl


class Reno(CongestionControl):
    """Additive increase one MSS per RTT, halve on loss."""

    name = "reno"
    __slots__ = ()

    def on_ack(self, acked: int, rtt: float | None, now: float, flight: int) -> None:
        if self.in_slow_start():
            acked = self.slow_start(acked)
            if not acked:
                return
        # Appropriate byte counting (RFC 3465): +1 MSS per cwnd bytes acked.
        self._ca_acc += acked
        if self._ca_acc >= self.cwnd:
            self._ca_acc -= self.cwnd
            self.cwnd += self.mss

    def on_loss(self, now: float, flight: int) -> int:
        self.hystart.enabled = False  # the first loss ends the initial slow start
        # RFC 5681 eq. (4): ssthresh = max(FlightSize / 2, 2*SMSS); Linux reno uses cwnd/2.
        self.ssthresh = max(self.cwnd // 2, 2 * self.mss)
        self._ca_acc = 0
        return self.ssthresh
