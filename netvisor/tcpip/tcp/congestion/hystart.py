"""HyStart++ (RFC 9406): leave slow start when the RTT starts to grow.

Per round (one window of data), the minimum RTT of at least N_RTT_SAMPLE
samples is compared with the previous round's; a rise of more than
clamp(lastRoundMinRTT / 8, 4 ms, 16 ms) moves to Conservative Slow Start
(growth / 4), which either returns to slow start (the RTT falls back) or,
after CSS_ROUNDS rounds, ends slow start (ssthresh = cwnd). Used for the
initial slow start only (RFC 9406 4.3), like Linux's HyStart for CUBIC.
Besides sparing the path a loss burst, it stops a sender from filling the
stack's own NIC queue (the RTT it measures rises first).
"""

from __future__ import annotations

from typing import Final

N_RTT_SAMPLE: Final = 8
MIN_RTT_THRESH: Final = 0.004
MAX_RTT_THRESH: Final = 0.016
MIN_RTT_DIVISOR: Final = 8
CSS_GROWTH_DIVISOR: Final = 4
CSS_ROUNDS: Final = 5
INF: Final = float("inf")


class HyStart:
    """RFC 9406 4.2 state for one connection's initial slow start."""

    __slots__ = ("enabled", "window_end", "last_min", "cur_min", "samples", "in_css",
                 "css_baseline", "css_rounds")

    def __init__(self) -> None:
        self.enabled = True
        self.window_end: int | None = None
        self.last_min = INF
        self.cur_min = INF
        self.samples = 0
        self.in_css = False
        self.css_baseline = INF
        self.css_rounds = 0

    @property
    def divisor(self) -> int:
        return CSS_GROWTH_DIVISOR if self.in_css else 1

    def update(self, ack: int, snd_nxt: int, rtt: float | None) -> bool:
        """Feed one ACK (in slow start); True when slow start should end now."""
        if not self.enabled:
            return False
        if self.window_end is None or ack >= self.window_end:
            # A new round starts (RFC 9406 4.2: windowEnd = SND.NXT).
            self.window_end = snd_nxt
            self.last_min = self.cur_min
            self.cur_min = INF
            self.samples = 0
            if self.in_css:
                self.css_rounds += 1
                if self.css_rounds >= CSS_ROUNDS:
                    self.enabled = False
                    return True
        if rtt is not None:
            self.cur_min = min(self.cur_min, rtt)
            self.samples += 1
        if self.samples >= N_RTT_SAMPLE and self.cur_min < INF and self.last_min < INF:
            if not self.in_css:
                thresh = min(max(self.last_min / MIN_RTT_DIVISOR, MIN_RTT_THRESH),
                             MAX_RTT_THRESH)
                if self.cur_min >= self.last_min + thresh:
                    self.in_css = True
                    self.css_baseline = self.cur_min
                    self.css_rounds = 0
            elif self.cur_min < self.css_baseline:
                self.in_css = False  # the RTT fell back: it was a spike, resume
        return False
