"""IPv6 fragment reassembly, atomic fragments, and fragment ICMPv6 errors.

RFC 8200 4.5 (reassembly; parameter problem code 0 for a non-final fragment
whose length is not a multiple of 8, pointing at Payload Length, and for a
fragment ending beyond 65535, pointing at Fragment Offset; time exceeded
code 1 on timeout when the first fragment arrived), RFC 5722 (overlapping
fragments discard the datagram), RFC 6946 (atomic fragments).
"""

from __future__ import annotations

import random

import pytest
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    IPerror6,
    IPv6ExtHdrFragment,
)
from scapy.packet import Raw

from tests.conformance.test_icmp import expect_echo_reply
from tests.conformance.testbench import REASSEMBLY_CASES, ExpectError

DATA = bytes(range(56))


def _message(tb, ident: int) -> bytes:
    # The ICMPv6 checksum covers the pseudo-header: build it in a full packet.
    pkt = tb.ip6() / ICMPv6EchoRequest(id=ident, seq=1, data=DATA)
    return bytes(pkt[ICMPv6EchoRequest])


def _frag(tb, msg: bytes, frag_id: int, start: int, end: int, *, more: bool | None = None):
    m = end < len(msg) if more is None else more
    return (tb.ip6() / IPv6ExtHdrFragment(nh=58, offset=start // 8, m=int(m), id=frag_id)
            / Raw(msg[start:end]))


@pytest.mark.parametrize("case", list(REASSEMBLY_CASES))
def test_reassembly(tb, dut, case):
    """Fragments in various orders are reassembled; overlaps discard the datagram (RFC 5722)."""
    pieces, answered = REASSEMBLY_CASES[case]
    ident = random.randint(1, 0xFFFF)
    msg = _message(tb, ident)
    frag_id = random.randint(1, 0xFFFFFFFF)
    for start, end in pieces:
        tb.send(_frag(tb, msg, frag_id, start, end))
    if answered:
        p = expect_echo_reply(tb, 6, ident, 1)
        assert bytes(p[ICMPv6EchoReply].data) == DATA
    else:
        with pytest.raises(ExpectError):
            expect_echo_reply(tb, 6, ident, 1, timeout=0.5)


def test_atomic_fragment(tb, dut):
    """A fragment header with offset 0 and M=0 is processed as the whole packet (RFC 6946)."""
    ident = random.randint(1, 0xFFFF)
    msg = _message(tb, ident)
    tb.send(_frag(tb, msg, 77, 0, len(msg), more=False))
    expect_echo_reply(tb, 6, ident, 1)


def test_fragment_length_not_multiple_of_8(tb, dut):
    """A non-final fragment of 20 bytes gets parameter problem code 0, pointer 4."""
    ident = random.randint(1, 0xFFFF)
    msg = _message(tb, ident)
    tb.send(_frag(tb, msg, 78, 0, 20, more=True))
    p = tb.expect_icmp(6, 4, 0)
    assert p[ICMPv6ParamProblem].ptr == 4


def test_fragment_beyond_maximum_length(tb, dut):
    """A fragment ending beyond 65535 bytes gets parameter problem code 0 at the offset field."""
    ident = random.randint(1, 0xFFFF)
    msg = _message(tb, ident)
    tb.send(tb.ip6() / IPv6ExtHdrFragment(nh=58, offset=(65536 - 16) // 8, m=0, id=79)
            / Raw(msg[:24]))
    p = tb.expect_icmp(6, 4, 0)
    assert p[ICMPv6ParamProblem].ptr == 42


def test_reassembly_timeout_time_exceeded(tb, dut):
    """An incomplete datagram with its first fragment ends in time exceeded code 1.

    The DUT namespace sets net.ipv6.ip6frag_time=2 (see conftest).
    """
    ident = random.randint(1, 0xFFFF)
    msg = _message(tb, ident)
    tb.send(_frag(tb, msg, 4321, 0, 32))
    p = tb.expect(lambda p: tb.from_dut(p, 6) and ICMPv6TimeExceeded in p
                  and IPv6ExtHdrFragment in p and p[IPv6ExtHdrFragment].id == 4321,
                  5, "time exceeded for fragment ID 4321")
    assert p[ICMPv6TimeExceeded].code == 1 and p[IPerror6].src == tb.topo.tb_ip6


def test_reassembly_timeout_without_first_fragment_silent(tb, dut):
    """Without the first fragment, an expired reassembly sends no ICMPv6 (RFC 8200 4.5)."""
    ident = random.randint(1, 0xFFFF)
    msg = _message(tb, ident)
    tb.send(_frag(tb, msg, 4322, 32, 64))
    tb.expect_none(lambda p: tb.from_dut(p, 6) and ICMPv6TimeExceeded in p
                   and IPv6ExtHdrFragment in p and p[IPv6ExtHdrFragment].id == 4322,
                   3.0, "time exceeded")
