"""`netvisor run --stats`: the stack's counters and the egress shaper's at exit (issue 6)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from tests.nsutil import Netns

SENDER = (
    "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
    "[s.sendto(b'x' * 1000, ('10.77.0.1', 9)) for _ in range(50)]"
)


def _last_json(stderr: str) -> dict:
    return json.loads([line for line in stderr.splitlines() if line.startswith("{")][-1])


def test_stats_show_the_shaper_counters(make_netns: Callable[[str], Netns]) -> None:
    ns = make_netns("nvst")
    proc = ns.run([sys.executable, "-m", "netvisor", "run", "--address", "10.77.0.2/24",
                   "--gateway", "10.77.0.1", "--no-nat", "--egress-rate", "10mbit",
                   "--egress-burst", "64kb", "--stats", "--", sys.executable, "-c", SENDER],
                  timeout=60)
    stats = _last_json(proc.stderr)
    assert stats["counters"], "the stack's counters are missing"
    (shaper,) = stats["egress_shaper"].values()
    # 50 datagrams plus ARP/NDP traffic went through the shaper.
    assert shaper["sent_frames"] >= 50
    assert shaper["sent_wire_bytes"] >= 50 * 1000


def test_stats_without_a_shaper_have_no_shaper_section(make_netns: Callable[[str], Netns]) -> None:
    ns = make_netns("nvst")
    proc = ns.run([sys.executable, "-m", "netvisor", "run", "--network=none", "--stats", "--",
                   sys.executable, "-c", "pass"], timeout=60)
    stats = _last_json(proc.stderr)
    assert "counters" in stats and "egress_shaper" not in stats
