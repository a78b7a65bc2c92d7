"""IPv4 header processing on receive.

RFC 791 and RFC 1122 3.2.1: a datagram with a bad header checksum is
silently discarded (3.2.1.2); options are accepted and ignored when unknown
(3.2.1.8); the total length, not the frame length, delimits the datagram, so
Ethernet padding is ignored (RFC 894); a datagram whose total length exceeds
the frame is discarded.
"""

from __future__ import annotations

import errno

import pytest
from scapy.layers.inet import ICMP, IP, UDP, IPOption_NOP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tests.conformance.test_icmp import expect_echo_reply
from tests.conformance.testbench import DutError, ExpectError

TB_PORT = 42000


def test_bad_header_checksum_dropped(tb, dut):
    """An echo request with a wrong IPv4 header checksum is dropped."""
    tb.send(tb.ip4(chksum=0x1234) / ICMP(type=8, id=31, seq=1))
    with pytest.raises(ExpectError):
        expect_echo_reply(tb, 4, 31, 1, timeout=0.5)


def test_options_accepted(tb, dut):
    """A datagram carrying IP options (NOPs) is processed normally."""
    tb.send(tb.ip4(options=[IPOption_NOP()] * 4) / ICMP(type=8, id=32, seq=1) / Raw(b"opts"))
    p = expect_echo_reply(tb, 4, 32, 1)
    assert bytes(p[ICMP].payload) == b"opts"


def test_ethernet_padding_ignored(tb, dut):
    """Bytes after the IPv4 total length (Ethernet padding) are not part of the datagram."""
    fd, port = dut.udp_socket(4)
    frame = bytes(Ether(src=tb.topo.tb_mac, dst=tb.topo.dut_mac) / tb.ip4()
                  / UDP(sport=TB_PORT, dport=port) / Raw(b"hi"))
    tb.send_raw(frame + b"\xaa" * 20)
    assert dut.recv(fd, 100) == b"hi"


def test_truncated_datagram_dropped(tb, dut):
    """A datagram whose total length claims more than the frame holds is dropped."""
    fd, port = dut.udp_socket(4)
    pkt = tb.ip4() / UDP(sport=TB_PORT, dport=port) / Raw(b"short")
    raw = bytearray(bytes(Ether(src=tb.topo.tb_mac, dst=tb.topo.dut_mac) / pkt))
    ip = IP(bytes(raw[14:]))
    ip.len = ip.len + 100
    ip.chksum = None
    tb.send_raw(bytes(raw[:14]) + bytes(ip)[:len(raw) - 14])
    tb.send(tb.ip4() / UDP(sport=TB_PORT, dport=port) / Raw(b"good"))
    assert dut.recv(fd, 100) == b"good"
    dut.setnonblocking(fd)
    with pytest.raises(DutError) as ei:
        dut.recv(fd, 100)
    assert ei.value.errno == errno.EAGAIN


def test_wrong_destination_not_answered(tb, dut):
    """A datagram to an address the DUT does not own (but to its MAC) is not answered."""
    tb.send(tb.ip4(dst="10.247.0.250") / ICMP(type=8, id=33, seq=1))
    tb.expect_none(lambda p: ICMP in p and p[ICMP].id == 33, 0.5, "reply for another host")


def test_reply_ttl_and_df(tb, dut):
    """Replies leave with TTL 64 (Linux default, RFC 1700) and a plain 20-byte header."""
    tb.send(tb.ip4() / ICMP(type=8, id=34, seq=1))
    a = expect_echo_reply(tb, 4, 34, 1)
    tb.send(tb.ip4() / ICMP(type=8, id=34, seq=2))
    b = expect_echo_reply(tb, 4, 34, 2)
    assert a[IP].ttl == 64 and b[IP].ttl == 64
    assert a[IP].version == 4 and a[IP].ihl == 5


@pytest.mark.parametrize("src", ["own", "loopback", "broadcast", "multicast"])
def test_martian_source_dropped(tb, dut, src):
    """Datagrams claiming an impossible source are dropped (RFC 1122 3.2.1.3, RFC 1812 5.3.7)."""
    source = {"own": tb.topo.dut_ip4, "loopback": "127.0.0.1",
              "broadcast": "255.255.255.255", "multicast": "224.0.0.5"}[src]
    tb.send(tb.ip4(src=source) / ICMP(type=8, id=35, seq=1))
    tb.expect_none(lambda p: ICMP in p and p[ICMP].id == 35, 0.5, "reply to a martian source")
