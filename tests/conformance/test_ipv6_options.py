"""IPv6 extension header options: the four actions for an unrecognised option.

RFC 8200 4.2: the two high bits of an unrecognised option's type say what to
do: 00 skip it, 01 discard the packet, 10 discard and send parameter problem
code 2 (even to multicast destinations), 11 discard and send it only if the
destination was not multicast. The pointer is the option type's offset.
Both Hop-by-Hop and Destination Options headers are checked, to the DUT's
unicast address and to the all-nodes group ff02::1.
"""

from __future__ import annotations

import random

import pytest
from scapy.layers.inet6 import (
    HBHOptUnknown,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ParamProblem,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import Ether

from tests.conformance.test_icmp import expect_echo_reply

ACTIONS = {"skip": 0x1E, "discard": 0x5E, "icmp": 0x9E, "icmp-unicast": 0xDE}


def _expect_param_problem(tb, ident):
    def m(p):
        return (tb.from_dut(p, 6) and ICMPv6ParamProblem in p
                and ICMPv6EchoRequest in p[ICMPv6ParamProblem].payload
                and p[ICMPv6ParamProblem].payload[ICMPv6EchoRequest].id == ident)
    return tb.expect(m, 1.0, f"parameter problem for echo id {ident}")


@pytest.mark.parametrize("header", ["hop-by-hop", "destination"])
@pytest.mark.parametrize("dest", ["unicast", "multicast"])
@pytest.mark.parametrize("action", list(ACTIONS))
def test_unknown_option_action(tb, dut, action, dest, header):
    """Each action of RFC 8200 4.2 for an unknown option, unicast and multicast."""
    ident = random.randint(1, 0xFFFF)
    opts = [HBHOptUnknown(otype=ACTIONS[action], optdata=b"")]
    ext = (IPv6ExtHdrHopByHop if header == "hop-by-hop" else IPv6ExtHdrDestOpt)(nh=58, options=opts)
    if dest == "unicast":
        pkt = tb.ip6() / ext / ICMPv6EchoRequest(id=ident, seq=1, data=b"opt")
    else:
        pkt = (Ether(src=tb.topo.tb_mac, dst="33:33:00:00:00:01")
               / IPv6(src=tb.topo.tb_ip6, dst="ff02::1") / ext
               / ICMPv6EchoRequest(id=ident, seq=1, data=b"opt"))
    tb.send(pkt)
    icmp_expected = action == "icmp" or (action == "icmp-unicast" and dest == "unicast")
    if action == "skip":
        expect_echo_reply(tb, 6, ident, 1)
    elif icmp_expected:
        p = _expect_param_problem(tb, ident)
        assert p[ICMPv6ParamProblem].code == 2
        assert p[ICMPv6ParamProblem].ptr == 42  # 40-byte header + next header + length
    else:
        # Neither a reply nor an error may come (one matcher, as expect discards).
        tb.expect_none(lambda p: tb.from_dut(p, 6) and (
            (ICMPv6EchoReply in p and p[ICMPv6EchoReply].id == ident)
            or ICMPv6ParamProblem in p), 0.5, "reply or error for a discarded packet")


def test_padding_options_skipped(tb, dut):
    """Pad1/PadN options alone are processed and the packet delivered."""
    ident = random.randint(1, 0xFFFF)
    tb.send(tb.ip6() / IPv6ExtHdrDestOpt(nh=58, options=[]) / ICMPv6EchoRequest(id=ident, seq=1))
    expect_echo_reply(tb, 6, ident, 1)


def test_echo_to_all_nodes_answered(tb, dut):
    """An echo request to ff02::1 is answered from the DUT's unicast address (Linux default)."""
    ident = random.randint(1, 0xFFFF)
    tb.send(Ether(src=tb.topo.tb_mac, dst="33:33:00:00:00:01")
            / IPv6(src=tb.topo.tb_ip6, dst="ff02::1") / ICMPv6EchoRequest(id=ident, seq=1))
    expect_echo_reply(tb, 6, ident, 1)
