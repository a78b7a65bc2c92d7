"""RACK-TLP loss detection (RFC 8985), in the shape this stack needs.

RACK (6): a segment is lost when a segment sent after it has been delivered
(SACKed) and it has been outstanding for RACK.rtt + RACK.reo_wnd. Original
transmissions leave in sequence order, so "sent before the most recently
delivered segment" is "below the highest SACKed sequence", and the segments
old enough form a prefix of the transmit log: ``lost_end`` returns the
sequence number below which un-SACKed original data is lost.

TLP (7): when the connection is in the Open state with data in flight, a
probe timeout (PTO = 2*SRTT, plus the worst-case delayed ACK when only one
segment is out, never beyond the RTO) sends new data or re-sends the last
segment so that a tail loss is repaired by SACK recovery instead of an RTO.

Departures: retransmissions are not re-timed here (a lost retransmission is
found when later data is SACKed, ``Connection._lost_retransmissions``, or by
the RTO); the TLP episode accounting of 7.4 (cwnd reduction when the probe
repaired a loss) is not done.
"""

from __future__ import annotations

import bisect
from typing import Final

WC_DELACK: Final = 0.2  # RFC 8985 7.2 WCDelAckT (Linux TCP_DELACK_MAX)
MAX_REO_MULT: Final = 255
"""Linux reo_wnd_steps cap (0xFF); reo_wnd itself never exceeds SRTT (RFC 8985 6.2)."""


class Rack:
    """Transmit times of original data plus RACK's reordering window state."""

    __slots__ = ("ends", "times", "head", "reo_mult", "reord_seen", "dsacks", "tlp_high",
                 "probes", "reo_adjusted_at", "min_rtt")

    def __init__(self) -> None:
        self.ends: list[int] = []
        self.times: list[float] = []
        self.head = 0
        self.reo_mult = 1
        self.reord_seen = False
        self.dsacks = 0
        self.tlp_high: int | None = None
        self.probes = 0
        self.reo_adjusted_at = float("-inf")
        self.min_rtt: float | None = None
        """Minimum RTT of cumulatively ACKed original data (Linux tcp_min_rtt, fed
        by ca_rtt_us in tcp_clean_rtx_queue, not by SACKed segments: a segment
        that overtook others is SACKed early but ACKed only when the hole
        fills). Measured with the driver's clock from the transmit log: the 1 ms
        timestamp clock rounds a sub-millisecond path to 0, which would pin
        reo_wnd (steps x min_rtt/4) at zero (Linux uses microsecond skb times)."""

    def sent(self, end: int, now: float) -> None:
        """Original data up to ``end`` left at ``now``."""
        if len(self.ends) > self.head and self.times[-1] == now:
            self.ends[-1] = end
        else:
            self.ends.append(end)
            self.times.append(now)


    def acked(self, una: int, now: float | None = None) -> None:
        ends = self.ends
        h = bisect.bisect_right(ends, una, self.head)
        if now is not None and h > self.head:
            # Original data sent at times[h - 1] is cumulatively ACKed now (if it was
            # retransmitted, the sample only overstates the RTT: harmless for a minimum).
            rtt = now - self.times[h - 1]
            if rtt > 0 and (self.min_rtt is None or rtt < self.min_rtt):
                self.min_rtt = rtt
        if h >= len(ends):
            ends.clear()
            self.times.clear()
            h = 0
        elif h > 1024 and h * 2 > len(ends):
            del ends[:h]
            del self.times[:h]
            h = 0
        self.head = h

    def clear(self) -> None:
        self.ends.clear()
        self.times.clear()
        self.head = 0

    def dsack(self, now: float = 0.0, srtt: float = 0.0) -> None:
        """A D-SACK arrived: a retransmission was spurious, widen reo_wnd (6.2 step 4).

        At most one step per round trip (RFC 8985 6.2: "once per round trip";
        Linux tcp_rack_update_reo_wnd disregards D-SACKs for data sent before
        the last adjustment), up to 255 steps of min_rtt/4.
        """
        self.dsacks += 1
        self.reord_seen = True
        if now - self.reo_adjusted_at >= srtt:
            self.reo_mult = min(self.reo_mult + 1, MAX_REO_MULT)
            self.reo_adjusted_at = now

    def reo_wnd(self, min_rtt: float, srtt: float, in_recovery: bool, dupthresh_met: bool) -> float:
        """RFC 8985 6.2 RACK.reo_wnd."""
        if not self.reord_seen and (in_recovery or dupthresh_met):
            return 0.0
        return min(self.reo_mult * min_rtt / 4, srtt)

    def lost_end(self, una: int, high_sacked: int, now: float,
                 wait: float) -> tuple[int, float | None]:
        """(sequence below which originals are lost, time the next one would be).

        ``wait`` = RACK.rtt + RACK.reo_wnd.
        """
        h = self.head
        if len(self.ends) <= h:
            return una, None
        cutoff = now - wait + 1e-9  # float tolerance: "due now" counts as due
        # times is non-decreasing: the old-enough entries are a prefix.
        k = bisect.bisect_right(self.times, cutoff, h)
        lost = self.ends[k - 1] if k > h else una
        lost = min(max(lost, una), high_sacked)
        nxt = None
        if k < len(self.ends) and lost < high_sacked:
            nxt = max(self.times[k] + wait, now + 1e-6)
        return lost, nxt
