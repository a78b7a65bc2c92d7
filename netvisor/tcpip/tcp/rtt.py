"""Round-trip time estimation and RTO (RFC 6298), with Linux's floor.

Departure, as Linux (``tcp_set_rto``): RTO = SRTT + max(4*RTTVAR, rto_min),
where RFC 6298 2.4 would clamp the whole RTO to >= 1 s. Karn's rule (RFC 6298
3) is applied by the caller, which only feeds samples from segments that were
not retransmitted (or from timestamps, RFC 7323 4).
"""

from __future__ import annotations


class RttEstimator:
    """SRTT / RTTVAR / RTO with exponential backoff (RFC 6298 2, 5.5)."""

    __slots__ = ("srtt", "rttvar", "base_rto", "backoff", "min_rtt", "rto_min", "rto_max",
                 "latest")

    def __init__(self, initial_rto: float, rto_min: float, rto_max: float) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.base_rto = initial_rto
        self.backoff = 0
        self.min_rtt: float | None = None
        self.latest = 0.0
        self.rto_min = rto_min
        self.rto_max = rto_max

    def sample(self, rtt: float) -> None:
        """Feed one RTT measurement R (RFC 6298 2.2/2.3)."""
        rtt = max(rtt, 1e-6)
        self.latest = rtt
        if self.min_rtt is None or rtt < self.min_rtt:
            self.min_rtt = rtt
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            # alpha = 1/8, beta = 1/4 (RFC 6298 2.3)
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.base_rto = min(self.rto_max, self.srtt + max(4 * self.rttvar, self.rto_min))

    @property
    def rto(self) -> float:
        """Current RTO including backoff (RFC 6298 5.5), capped at rto_max."""
        b = self.backoff
        rto = self.base_rto * (1 << (b if b < 16 else 16)) if b else self.base_rto
        return rto if rto < self.rto_max else self.rto_max
