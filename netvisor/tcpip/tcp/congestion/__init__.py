"""Congestion control algorithms (RFC 5681 framework), selectable per socket.

Each algorithm keeps ``cwnd`` and ``ssthresh`` in bytes. The connection calls
``on_ack`` for newly acknowledged bytes outside loss recovery,
``on_loss`` when entering fast recovery (returns the new ssthresh) and
``on_rto`` on a retransmission timeout. Loss recovery itself (which
segments to resend, pipe) lives in the connection (RFC 6675 / RFC 6582).
"""

from __future__ import annotations

from netvisor.tcpip.tcp.congestion.base import CongestionControl
from netvisor.tcpip.tcp.congestion.cubic import Cubic
from netvisor.tcpip.tcp.congestion.reno import Reno

ALGORITHMS: dict[str, type[CongestionControl]] = {"reno": Reno, "cubic": Cubic}


def make(name: str, mss: int, initial_cwnd_segments: int) -> CongestionControl:
    """A new controller by Linux name ("cubic", "reno"); KeyError when unknown."""
    return ALGORITHMS[name](mss, initial_cwnd_segments)


__all__ = ["ALGORITHMS", "CongestionControl", "Cubic", "Reno", "make"]
