"""ICMP and ICMPv6: echo (to the DUT and from its ping sockets), maximum sizes, errors.

RFC 792 / RFC 1122 3.2.2.6 (echo: reply carries the same data; broadcast echo
may be ignored, Linux does), RFC 4443 4.1/4.2 (ICMPv6 echo), 3.4 (parameter
problem code 1 for an unknown next header), RFC 1122 3.2.2.1 (protocol
unreachable), Linux ping sockets (SOCK_DGRAM + IPPROTO_ICMP[V6]).
"""

from __future__ import annotations

import socket

import pytest
from scapy.layers.inet import ICMP, IP, fragment
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ParamProblem,
    IPv6,
    IPv6ExtHdrFragment,
    fragment6,
)
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tests.conformance.testbench import ExpectError

FAMILIES = pytest.mark.parametrize("family", [4, 6], ids=["v4", "v6"])


def echo_request(tb, family, ident, seq, payload, **ip_kw):
    if family == 4:
        return tb.ip4(**ip_kw) / ICMP(type=8, id=ident, seq=seq) / Raw(payload)
    return tb.ip6(**ip_kw) / ICMPv6EchoRequest(id=ident, seq=seq, data=payload)


def expect_echo_reply(tb, family, ident, seq, timeout=1.0):
    def m(p):
        if not tb.from_dut(p, family):
            return False
        if family == 4:
            return ICMP in p and p[ICMP].type == 0 and p[ICMP].id == ident and p[ICMP].seq == seq
        return (ICMPv6EchoReply in p and p[ICMPv6EchoReply].id == ident
                and p[ICMPv6EchoReply].seq == seq)
    return tb.expect(m, timeout, f"echo reply id={ident} seq={seq}")


def echo_payload(p, family) -> bytes:
    return bytes(p[ICMP].payload) if family == 4 else bytes(p[ICMPv6EchoReply].data)


@FAMILIES
def test_echo_reply(tb, dut, family):
    """An echo request gets a reply with the same identifier, sequence and data."""
    tb.send(echo_request(tb, family, 0x1234, 7, b"ping payload"))
    p = expect_echo_reply(tb, family, 0x1234, 7)
    assert echo_payload(p, family) == b"ping payload"


@pytest.mark.parametrize("family,size", [(4, 1500 - 28), (6, 1500 - 48)], ids=["v4", "v6"])
def test_echo_mtu_sized(tb, dut, family, size):
    """The largest unfragmented echo request (a full 1500-byte packet) is answered whole."""
    data = bytes(i % 251 for i in range(size))
    tb.send(echo_request(tb, family, 99, 1, data))
    p = expect_echo_reply(tb, family, 99, 1)
    assert echo_payload(p, family) == data


def _reassemble_v4(frames):
    parts = {}
    for p in frames:
        parts[p[IP].frag * 8] = bytes(p[IP].payload)
    out = b""
    for off in sorted(parts):
        assert off == len(out), f"gap at {len(out)} in reply fragments {sorted(parts)}"
        out += parts[off]
    return out


def _reassemble_v6(frames):
    parts = {}
    for p in frames:
        parts[p[IPv6ExtHdrFragment].offset * 8] = bytes(p[IPv6ExtHdrFragment].payload)
    out = b""
    for off in sorted(parts):
        assert off == len(out), f"gap at {len(out)} in reply fragments {sorted(parts)}"
        out += parts[off]
    return out


def _collect_fragments(tb, family, total_len, timeout=3.0):
    """Fragments from the DUT until ``total_len`` payload bytes arrived."""
    frames = []
    got = 0
    while got < total_len:
        if family == 4:
            p = tb.expect(lambda p: tb.from_dut(p, 4) and p[IP].proto == 1
                          and (p[IP].frag or p[IP].flags.MF), timeout, "IPv4 reply fragment")
            got += len(p[IP].payload)
        else:
            p = tb.expect(lambda p: tb.from_dut(p, 6) and IPv6ExtHdrFragment in p,
                          timeout, "IPv6 reply fragment")
            got += len(p[IPv6ExtHdrFragment].payload)
        frames.append(p)
    return frames


def test_echo_maximum_size_v4(tb, dut):
    """A 65535-byte echo request (fragmented) is reassembled and answered in fragments."""
    data = bytes(i % 253 for i in range(65535 - 28))
    req = echo_request(tb, 4, 4242, 3, data, id=777)
    for frag in fragment(req, fragsize=1480):
        tb.send(frag)
    frames = _collect_fragments(tb, 4, 65535 - 20)
    ids = {p[IP].id for p in frames}
    assert len(ids) == 1
    assert all(len(p[IP]) <= 1500 for p in frames)
    icmp = ICMP(_reassemble_v4(frames))
    assert icmp.type == 0 and icmp.id == 4242 and bytes(icmp.payload) == data


def test_echo_maximum_size_v6(tb, dut):
    """A 65535-byte-payload ICMPv6 echo request (fragmented) is answered in fragments."""
    data = bytes(i % 253 for i in range(65535 - 8 - 8))
    req = tb.ip6() / IPv6ExtHdrFragment(id=0x5151) / ICMPv6EchoRequest(id=4343, seq=3, data=data)
    for frag in fragment6(req, 1500):
        tb.send(frag)
    frames = _collect_fragments(tb, 6, 65535 - 8)
    assert all(len(p[IPv6]) <= 1500 for p in frames)
    body = _reassemble_v6(frames)
    reply = ICMPv6EchoReply(body)
    assert reply.type == 129 and reply.id == 4343 and bytes(reply.data) == data


def test_broadcast_echo_ignored_v4(tb, dut):
    """Echo to the subnet broadcast is ignored (Linux icmp_echo_ignore_broadcasts=1)."""
    frame = (Ether(src=tb.topo.tb_mac, dst="ff:ff:ff:ff:ff:ff")
             / IP(src=tb.topo.tb_ip4, dst="10.247.0.255") / ICMP(type=8, id=5, seq=5) / Raw(b"b"))
    tb.send(frame)
    with pytest.raises(ExpectError):
        expect_echo_reply(tb, 4, 5, 5, timeout=0.5)


@FAMILIES
def test_echo_bad_checksum_ignored(tb, dut, family):
    """An echo request with a bad checksum is dropped."""
    req = echo_request(tb, family, 0x77, 1, b"bad")
    if family == 4:
        req[ICMP].chksum = 0xBEEF
    else:
        req[ICMPv6EchoRequest].cksum = 0xBEEF
    tb.send(req)
    with pytest.raises(ExpectError):
        expect_echo_reply(tb, family, 0x77, 1, timeout=0.5)


@FAMILIES
def test_ping_socket(tb, dut, family):
    """A DUT ping socket sends echo requests and receives the matching reply."""
    proto = socket.IPPROTO_ICMP if family == 4 else socket.IPPROTO_ICMPV6
    fd = dut.socket(tb.topo.af(family), socket.SOCK_DGRAM, proto)
    if family == 4:
        msg = bytes(ICMP(type=8, id=0, seq=11) / Raw(b"dut ping"))
        dut.sendto(fd, msg, (tb.topo.tb_ip4, 0))
        req = tb.expect(lambda p: tb.from_dut(p, 4) and ICMP in p and p[ICMP].type == 8,
                        desc="echo request from the DUT")
        ident = req[ICMP].id
        assert req[ICMP].seq == 11 and bytes(req[ICMP].payload) == b"dut ping"
        tb.send(tb.ip4() / ICMP(type=0, id=ident, seq=11) / Raw(b"dut ping"))
        data, addr = dut.recvfrom(fd, 200)
        reply = ICMP(data)
        assert reply.type == 0 and reply.seq == 11 and bytes(reply.payload) == b"dut ping"
    else:
        msg = bytes(ICMPv6EchoRequest(id=0, seq=11, data=b"dut ping"))
        dut.sendto(fd, msg, (tb.topo.tb_ip6, 0, 0, 0))
        req = tb.expect(lambda p: tb.from_dut(p, 6) and ICMPv6EchoRequest in p,
                        desc="echo request from the DUT")
        ident = req[ICMPv6EchoRequest].id
        assert req[ICMPv6EchoRequest].seq == 11
        tb.send(tb.ip6() / ICMPv6EchoReply(id=ident, seq=11, data=b"dut ping"))
        data, addr = dut.recvfrom(fd, 200)
        reply = ICMPv6EchoReply(data)
        assert reply.type == 129 and reply.seq == 11 and bytes(reply.data) == b"dut ping"
    assert addr[0] == tb.topo.tb_ip(family)


def test_ping_socket_ignores_other_identifier(tb, dut):
    """A ping socket does not receive replies for another identifier."""
    fd = dut.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    dut.sendto(fd, bytes(ICMP(type=8, id=0, seq=1) / Raw(b"x")), (tb.topo.tb_ip4, 0))
    req = tb.expect(lambda p: tb.from_dut(p, 4) and ICMP in p and p[ICMP].type == 8)
    other = (req[ICMP].id + 1) & 0xFFFF
    tb.send(tb.ip4() / ICMP(type=0, id=other, seq=1) / Raw(b"x"))
    tb.send(tb.ip4() / ICMP(type=0, id=req[ICMP].id, seq=2) / Raw(b"mine"))
    data, _ = dut.recvfrom(fd, 200)
    assert ICMP(data).seq == 2


def test_unknown_protocol_v4_protocol_unreachable(tb, dut):
    """An IPv4 datagram for an unknown protocol gets ICMP protocol unreachable (RFC 1122 3.2.2.1)."""
    tb.send(tb.ip4(proto=253) / Raw(b"x" * 16))
    p = tb.expect_icmp(4, 3, 2)
    assert p[ICMP].payload.proto == 253


def test_unknown_next_header_v6_parameter_problem(tb, dut):
    """An unknown IPv6 next header gets parameter problem code 1 pointing at it (RFC 8200 4)."""
    tb.send(tb.ip6(nh=253) / Raw(b"x" * 16))
    p = tb.expect_icmp(6, 4, 1)
    assert p[ICMPv6ParamProblem].ptr == 6


@pytest.mark.parametrize("src", ["loopback", "multicast"])
def test_v6_invalid_source_dropped(tb, dut, src):
    """IPv6 packets from ::1 or a multicast source are dropped (RFC 4291 2.5.3, 2.7)."""
    source = {"loopback": "::1", "multicast": "ff02::1"}[src]
    tb.send(tb.ip6(src=source) / ICMPv6EchoRequest(id=36, seq=1))
    tb.expect_none(lambda p: ICMPv6EchoReply in p and p[ICMPv6EchoReply].id == 36, 0.5,
                   "reply to an invalid source")
