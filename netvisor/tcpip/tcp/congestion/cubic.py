"""CUBIC congestion control (RFC 9438), Linux's default.

C = 0.4, beta_cubic = 0.7, fast convergence (RFC 9438 4.7) and the
Reno-friendly region (4.3). The initial slow start uses HyStart++
(RFC 9406, ``hystart.py``), as RFC 9438 4.10 recommends.
"""

from __future__ import annotations

from typing import Final

from netvisor.tcpip.tcp.congestion.base import CongestionControl

C: Final = 0.4
BETA: Final = 0.7
ALPHA: Final = 3 * (1 - BETA) / (1 + BETA)  # RFC 9438 4.3


class Cubic(CongestionControl):
    """Window growth W(t) = C*(t-K)^3 + W_max, in segments (RFC 9438 4.2)."""

    name = "cubic"
    __slots__ = ("w_max", "w_last_max", "k", "epoch", "w_est", "cwnd_epoch")

    def __init__(self, mss: int, initial_cwnd_segments: int) -> None:
        super().__init__(mss, initial_cwnd_segments)
        self.w_max = 0.0
        self.w_last_max = 0.0
        self.k = 0.0
        self.epoch: float | None = None
        self.w_est = 0.0
        self.cwnd_epoch = 0.0

    def on_ack(self, acked: int, rtt: float | None, now: float, flight: int) -> None:
        if self.in_slow_start():
            acked = self.slow_start(acked)
            if not acked:
                return
        mss = self.mss
        cwnd_seg = self.cwnd / mss
        if self.epoch is None:
            # RFC 9438 4.2: a congestion-avoidance epoch starts now.
            self.epoch = now
            self.cwnd_epoch = cwnd_seg
            self.w_est = cwnd_seg
            if self.w_max <= cwnd_seg:
                self.k = 0.0
                self.w_max = cwnd_seg
            else:
                self.k = ((self.w_max - cwnd_seg) / C) ** (1 / 3)
        t = now - self.epoch + (rtt or 0.0)
        target = C * (t - self.k) ** 3 + self.w_max
        # Clamp target growth to 1.5x per RTT (RFC 9438 4.2).
        target = min(max(target, cwnd_seg), 1.5 * cwnd_seg)
        # Reno-friendly estimate (RFC 9438 4.3).
        self.w_est += ALPHA * (acked / mss) / cwnd_seg
        if self.w_est > target:
            target = self.w_est
        if target > cwnd_seg:
            self._ca_acc += int((target - cwnd_seg) / cwnd_seg * acked)
            if self._ca_acc >= mss:
                steps = self._ca_acc // mss
                self.cwnd += steps * mss
                self._ca_acc -= steps * mss

    def on_loss(self, now: float, flight: int) -> int:
        self.hystart.enabled = False  # the first loss ends the initial slow start
        cwnd_seg = self.cwnd / self.mss
        # Fast convergence (RFC 9438 4.7).
        if cwnd_seg < self.w_last_max:
            self.w_last_max = cwnd_seg
            self.w_max = cwnd_seg * (1 + BETA) / 2
        else:
            self.w_last_max = cwnd_seg
            self.w_max = cwnd_seg
        self.epoch = None
        self._ca_acc = 0
        self.ssthresh = max(int(self.cwnd * BETA), 2 * self.mss)
        return self.ssthresh

    def on_rto(self, now: float, flight: int) -> None:
        super().on_rto(now, flight)
        self.epoch = None
