"""Per-packet fast paths of the Stack give what the general code gives."""

from __future__ import annotations

import ipaddress
import random

from scapy.layers.inet import IP

from netvisor.tcpip.wire.checksum import checksum
from tests.unit.stack.helpers import make_stack


def test_ipv4_header_checksum_from_fields() -> None:
    stack, _ = make_stack()
    rng = random.Random(7)
    for _ in range(2000):
        src = ipaddress.IPv4Address(rng.getrandbits(32))
        dst = ipaddress.IPv4Address(rng.getrandbits(32))
        proto, n, ttl, tos = rng.choice([6, 17]), rng.randrange(65515), rng.randrange(256), \
            rng.randrange(256)
        df = rng.random() < 0.5
        hdr = stack._ipv4_header(src, dst, proto, n, ttl, tos, df, 0, False)
        assert checksum(hdr) == 0  # a correct header sums to 0xFFFF
        ip = IP(hdr)
        assert (ip.src, ip.dst, ip.proto, ip.len, ip.ttl, ip.tos) == \
            (str(src), str(dst), proto, 20 + n, ttl, tos)
        assert bool(ip.flags.DF) == df


def test_next_deadline_sees_timers_armed_by_config() -> None:
    """The cached network-layer deadline is recomputed after an address with a
    lifetime is added (a missed invalidation would sleep past it)."""
    stack, nic = make_stack()
    before = stack.next_deadline()
    stack.add_address(nic, ipaddress.ip_interface("fd01::5/64"), valid_lifetime=3.0,
                      preferred_lifetime=2.0)
    stack.handle_timer(0.0)  # the MLD report for the solicited-node group
    stack.frames_to_send(nic)
    assert stack.next_deadline() == 2.0
    assert before is None or before > 2.0
    stack.now = 2.5
    stack.handle_timer(2.5)
    assert stack.next_deadline() == 3.0
    stack.now = 3.0
    stack.handle_timer(3.0)
    assert ipaddress.ip_address("fd01::5") not in [a.ip for a in stack.addresses(nic)]


def test_has_frames_on_an_empty_queue_is_a_drain_notice() -> None:
    """A driver that skips frames_to_send when has_frames() is False must not
    leave TCP small queues waiting for a drain that never comes."""
    stack, nic = make_stack()
    seen: list[int] = []

    class Probe:
        protocol = 253  # experimental (RFC 3692): no real transport uses it
        has_timers = False

        def handle_egress_room(self, nic_id: int, now: float) -> None:
            seen.append(nic_id)

    stack.register_transport(Probe())
    assert not stack.has_frames(nic)
    assert seen == [nic]
