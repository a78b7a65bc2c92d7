"""The congestion-control interface shared by Reno and CUBIC."""

from __future__ import annotations

from typing import Final

from netvisor.tcpip.tcp.congestion.hystart import HyStart

INFINITE_SSTHRESH: Final = 0x7FFFFFFF


class CongestionControl:
    """Base: slow start (RFC 5681 3.1) shared by every algorithm."""

    name = "base"
    __slots__ = ("mss", "cwnd", "ssthresh", "_ca_acc", "hystart")

    def __init__(self, mss: int, initial_cwnd_segments: int) -> None:
        self.mss = mss
        # RFC 6928 / Linux TCP_INIT_CWND = 10 segments.
        self.cwnd = initial_cwnd_segments * mss
        self.ssthresh = INFINITE_SSTHRESH
        self._ca_acc = 0
        self.hystart = HyStart()

    def on_round_sample(self, ack: int, snd_nxt: int, rtt: float | None) -> None:
        """HyStart++ input for an ACK in slow start (RFC 9406)."""
        if self.in_slow_start() and self.hystart.update(ack, snd_nxt, rtt):
            self.ssthresh = self.cwnd  # RFC 9406 4.2: CSS rounds done, enter CA

    def set_mss(self, mss: int) -> None:
        """The sender MSS changed (PMTU, handshake); keep cwnd in segments."""
        if mss != self.mss and self.mss > 0:
            self.cwnd = max(mss, self.cwnd * mss // self.mss)
        self.mss = mss

    def in_slow_start(self) -> bool:
        return self.cwnd < self.ssthresh

    def slow_start(self, acked: int) -> int:
        """Grow cwnd by the bytes acked (Linux tcp_slow_start); return what is left.

        In HyStart++'s Conservative Slow Start the growth is divided by 4.
        """
        div = self.hystart.divisor
        new = min(self.cwnd + acked // div, self.ssthresh)
        used = (new - self.cwnd) * div
        self.cwnd = new
        return max(0, acked - used)

    def on_ack(self, acked: int, rtt: float | None, now: float, flight: int) -> None:
        raise NotImplementedError

    def on_loss(self, now: float, flight: int) -> int:
        """Fast-recovery entry: set and return ssthresh."""
        raise NotImplementedError

    def on_rto(self, now: float, flight: int) -> None:
        """RFC 5681 3.1 eq. (4) then cwnd = 1 segment (loss window)."""
        self.ssthresh = self.on_loss(now, flight)
        self.cwnd = self.mss
        self.hystart.enabled = False  # RFC 9406 4.3: not after an RTO

    def on_recovery_exit(self) -> None:
        """Leaving fast recovery: cwnd = ssthresh (RFC 6582 3.2 step 3, Linux)."""
        self.cwnd = max(self.ssthresh, 2 * self.mss)

    def on_idle_restart(self, initial_cwnd_segments: int) -> None:
        """RFC 5681 4.1 restart window after an idle period longer than the RTO."""
        self.cwnd = min(self.cwnd, initial_cwnd_segments * self.mss)
