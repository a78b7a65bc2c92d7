"""Ping sockets (SOCK_DGRAM + IPPROTO_ICMP / IPPROTO_ICMPV6), Linux semantics."""

from __future__ import annotations

import errno
import socket

import pytest
from scapy.layers.inet import ICMP, IP  # type: ignore[import-untyped]
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6  # type: ignore[import-untyped]
from scapy.layers.l2 import Ether  # type: ignore[import-untyped]
from scapy.packet import Raw  # type: ignore[import-untyped]

from netvisor.tcpip.errors import NetError

from .helpers import OUR4, OUR6, OUR_MAC, PEER4, PEER6, PEER_MAC, feed, learn_peer, make_stack, sent

E = Ether(src=PEER_MAC, dst=OUR_MAC)


def test_ping_socket_v4_roundtrip_and_identifier_filter() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    p = s.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    p.sendto(bytes(ICMP(type=8, id=0, seq=11) / Raw(b"dut ping")), 0, (PEER4, 0))
    (req,) = sent(s, nic)
    ident = req[ICMP].id
    assert ident == p.getsockname()[1] != 0 and req[ICMP].seq == 11
    cks = req[ICMP].chksum
    del req[ICMP].chksum
    assert Ether(bytes(req))[ICMP].chksum == cks
    feed(s, nic, E / IP(src=PEER4, dst=OUR4) / ICMP(type=0, id=(ident + 1) & 0xFFFF, seq=1))
    with pytest.raises(NetError):
        p.recv(100)
    feed(s, nic, E / IP(src=PEER4, dst=OUR4) / ICMP(type=0, id=ident, seq=11) / Raw(b"dut ping"))
    data, addr = p.recvfrom(200)
    assert addr == (PEER4, 0)
    reply = ICMP(data)
    assert reply.type == 0 and reply.seq == 11 and bytes(reply.payload) == b"dut ping"


def test_ping_socket_v6_roundtrip() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    p = s.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6)
    p.sendto(bytes(ICMPv6EchoRequest(id=0, seq=3, data=b"six")), 0, (PEER6, 0, 0, 0))
    (req,) = sent(s, nic)
    ident = req[ICMPv6EchoRequest].id
    cks = req[ICMPv6EchoRequest].cksum
    del req[ICMPv6EchoRequest].cksum
    assert Ether(bytes(req))[ICMPv6EchoRequest].cksum == cks
    feed(s, nic, E / IPv6(src=PEER6, dst=OUR6) / ICMPv6EchoReply(id=ident, seq=3, data=b"six"))
    data, addr = p.recvfrom(200)
    assert ICMPv6EchoReply(data).data == b"six" and addr[:2] == (PEER6, 0)


def test_ping_socket_rules() -> None:
    s, _ = make_stack()
    p = s.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    for bad in (b"\x08\x00\x00", bytes(ICMP(type=13)), bytes(ICMP(type=8, code=1))):
        with pytest.raises(NetError) as e:
            p.sendto(bad, 0, (PEER4, 0))
        assert e.value.errno == errno.EINVAL
    with pytest.raises(NetError) as e:
        s.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6)
    assert e.value.errno == errno.EPROTONOSUPPORT


def test_ping_over_loopback() -> None:
    s, _ = make_stack()
    p = s.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    p.sendto(bytes(ICMP(type=8, seq=5) / Raw(b"lo")), 0, ("127.0.0.1", 0))
    s.handle_timer(0.0)  # request delivered locally, answered
    s.handle_timer(0.0)  # reply delivered locally
    assert ICMP(p.recv(100)).seq == 5


def test_icmp_error_reaches_connected_ping_socket() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    p = s.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
    p.connect((PEER4, 0))
    p.send(bytes(ICMP(type=8, seq=1)))
    (req,) = sent(s, nic)
    feed(s, nic, E / IP(src=PEER4, dst=OUR4) / ICMP(type=3, code=1) / bytes(req[IP])[:28])
    with pytest.raises(NetError) as e:
        p.recv(100)
    assert e.value.errno == errno.EHOSTUNREACH
