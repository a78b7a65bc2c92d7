"""Malformed-frame fuzzing of `netvisor host` for a bounded time.

Scapy's ``fuzz()`` (random values in every unset field) over every protocol
the stack parses, plus random bytes behind valid Ethernet headers, are
written to the TAP's kernel side for a few seconds. The host must survive,
count drops (never an internal error escaping), and still answer ping.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.test_host_tap import (
    OUR4,
    OUR6,
    TAP,
    counters,
    kernel_python,
    our_mac,
    ping,
    start_tap_host,
    stop,
)

pytestmark = pytest.mark.namespaces

FUZZ_SECONDS = 5


def test_fuzzed_frames_are_dropped_and_counted(make_netns: Any) -> None:
    ns = make_netns("nvs")
    proc = start_tap_host(ns, "--echo", "7")
    try:
        before = counters(proc)
        out = kernel_python(ns, f"""
            import random, socket, time
            from scapy.all import (ARP, ICMP, IP, UDP, TCP, Ether, IPv6, ICMPv6EchoRequest,
                ICMPv6ND_NS, ICMPv6ND_NA, ICMPv6ND_RA, ICMPv6NDOptSrcLLAddr,
                ICMPv6NDOptPrefixInfo, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                IPv6ExtHdrDestOpt, IPv6ExtHdrRouting, ICMPv6DestUnreach, Raw, fuzz)
            rng = random.Random(1234)
            random.seed(1234)
            mac = "{our_mac()}"
            E = Ether(dst=mac)
            templates = [
                E / fuzz(IP(dst="{OUR4}") / ICMP()),
                E / fuzz(IP(dst="{OUR4}") / UDP(dport=7)),
                E / IP(dst="{OUR4}") / fuzz(UDP(dport=7) / Raw(b"x" * 20)),
                E / fuzz(IP(dst="{OUR4}", flags=1) / UDP()),
                E / fuzz(IP(dst="{OUR4}") / TCP()),
                E / fuzz(IP(dst="{OUR4}", ihl=rng.randrange(16))),
                E / IP(dst="{OUR4}") / fuzz(ICMP(type=3) / IP(src="{OUR4}") / UDP()),
                Ether(dst="ff:ff:ff:ff:ff:ff") / fuzz(ARP(pdst="{OUR4}")),
                E / fuzz(IPv6(dst="{OUR6}") / ICMPv6EchoRequest()),
                E / IPv6(dst="{OUR6}", hlim=255) / fuzz(ICMPv6ND_NS(tgt="{OUR6}")
                                                        / ICMPv6NDOptSrcLLAddr()),
                E / IPv6(dst="{OUR6}", hlim=255) / fuzz(ICMPv6ND_NA()),
                E / IPv6(src="fe80::1", dst="ff02::1", hlim=255) /
                    fuzz(ICMPv6ND_RA() / ICMPv6NDOptPrefixInfo()),
                E / IPv6(dst="{OUR6}") / fuzz(IPv6ExtHdrFragment() / UDP(dport=7)),
                E / IPv6(dst="{OUR6}") / fuzz(IPv6ExtHdrHopByHop() / UDP()),
                E / IPv6(dst="{OUR6}") / fuzz(IPv6ExtHdrDestOpt() / UDP()),
                E / IPv6(dst="{OUR6}") / fuzz(IPv6ExtHdrRouting() / UDP()),
                E / IPv6(dst="{OUR6}") / fuzz(ICMPv6DestUnreach() / IPv6(src="{OUR6}") / UDP()),
                E / fuzz(IPv6(dst="{OUR6}") / UDP(dport=7)),
            ]
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            s.bind(("{TAP}", 0))
            sent = 0
            end = time.monotonic() + {FUZZ_SECONDS}
            while time.monotonic() < end:
                for t in templates:
                    try:
                        s.send(bytes(t))
                        sent += 1
                    except OSError:
                        pass
                for et in (0x0800, 0x86DD, 0x0806, 0x8100):
                    junk = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
                    s.send(bytes.fromhex(mac.replace(":", "")) + b"\\x02" * 6 +
                           et.to_bytes(2, "big") + junk)
                    sent += 1
                time.sleep(0.01)  # leave the host CPU time to answer
            print(sent)
            """, timeout=120)
        assert int(out.strip()) > 200
        after = counters(proc)
        drops = {k: v - before.get(k, 0) for k, v in after.items() if k.startswith("drop.")}
        assert sum(drops.values()) > 100, drops
        assert after.get("drop.internal_error", 0) == 0, after
        assert proc.poll() is None
        ping(ns, OUR4, count=2)
        ping(ns, OUR6, count=2)
    finally:
        assert stop(proc) == 0
