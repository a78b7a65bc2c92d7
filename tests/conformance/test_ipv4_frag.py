"""IPv4 fragment reassembly (an ICMP echo request in fragments) and its timeout.

RFC 791 3.2 (reassembly), RFC 1122 3.3.2 (reassembly timeout; ICMP time
exceeded code 1 only when fragment zero arrived, RFC 792), RFC 5722 applied
to IPv4 by Linux (overlapping fragments discard the whole datagram, exact
duplicates and subsets of received data are ignored).
"""

from __future__ import annotations

import random

import pytest
from scapy.layers.inet import ICMP, IPerror
from scapy.packet import Raw

from tests.conformance.test_icmp import expect_echo_reply
from tests.conformance.testbench import REASSEMBLY_CASES, ExpectError

# ICMP message (8-byte header + 56 data) = 64 bytes, cut at multiples of 8.
DATA = bytes(range(56))


def _message(ident: int) -> bytes:
    return bytes(ICMP(type=8, id=ident, seq=1) / Raw(DATA))


def _frag(tb, msg: bytes, ip_id: int, start: int, end: int, *, last: bool | None = None):
    more = end < len(msg) if last is None else not last
    flags = "MF" if more else 0
    return tb.ip4(id=ip_id, proto=1, frag=start // 8, flags=flags) / Raw(msg[start:end])


@pytest.mark.parametrize("case", list(REASSEMBLY_CASES))
def test_reassembly(tb, dut, case):
    """Fragments in various orders are reassembled; partial overlaps discard the datagram."""
    pieces, answered = REASSEMBLY_CASES[case]
    ident = random.randint(1, 0xFFFF)
    msg = _message(ident)
    ip_id = random.randint(1, 0xFFFF)
    for start, end in pieces:
        tb.send(_frag(tb, msg, ip_id, start, end))
    if answered:
        p = expect_echo_reply(tb, 4, ident, 1)
        assert bytes(p[ICMP].payload) == DATA
    else:
        with pytest.raises(ExpectError):
            expect_echo_reply(tb, 4, ident, 1, timeout=0.5)


def test_fragments_with_different_ids_not_mixed(tb, dut):
    """Fragments of different datagrams (IP ID) are not reassembled together."""
    ident = random.randint(1, 0xFFFF)
    msg = _message(ident)
    tb.send(_frag(tb, msg, 100, 0, 32))
    tb.send(_frag(tb, msg, 101, 32, 64))
    with pytest.raises(ExpectError):
        expect_echo_reply(tb, 4, ident, 1, timeout=0.5)


def test_reassembly_timeout_time_exceeded(tb, dut):
    """An incomplete datagram whose first fragment arrived ends in ICMP time exceeded code 1.

    The DUT namespace sets net.ipv4.ipfrag_time=2 (see conftest).
    """
    ident = random.randint(1, 0xFFFF)
    msg = _message(ident)
    tb.send(_frag(tb, msg, 4321, 0, 32))
    p = tb.expect(lambda p: tb.from_dut(p, 4) and ICMP in p and p[ICMP].type == 11
                  and IPerror in p and p[IPerror].id == 4321, 5, "time exceeded for IP ID 4321")
    assert p[ICMP].code == 1 and p[IPerror].src == tb.topo.tb_ip4


def test_reassembly_timeout_without_first_fragment_silent(tb, dut):
    """Without fragment zero, an expired reassembly sends no ICMP (RFC 792: only if fragment zero arrived)."""
    ident = random.randint(1, 0xFFFF)
    msg = _message(ident)
    tb.send(_frag(tb, msg, 4322, 32, 64))
    tb.expect_none(lambda p: tb.from_dut(p, 4) and ICMP in p and p[ICMP].type == 11
                   and IPerror in p and p[IPerror].id == 4322, 3.0, "time exceeded")
