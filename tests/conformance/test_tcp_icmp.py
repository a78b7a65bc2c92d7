"""ICMP errors and TCP: hard errors fail connect, soft errors on established connections.

RFC 1122 4.2.3.9 (TCP must act on ICMP: destination unreachable codes 0, 1, 5
are soft; Linux treats every unreachable during SYN-SENT as fatal and, when
established, keeps the error as the soft error reported on timeout),
RFC 5461, RFC 4443 (ICMPv6 destination unreachable codes).
"""

from __future__ import annotations

import errno
import socket
import time

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6
from scapy.packet import Raw

from tests.conformance.testbench import (
    DutError,
    TCPConn,
    seq_add,
    tcp_established,
)

TCP_USER_TIMEOUT = 18

# (family, ICMP code, errno) for destination unreachable answering a SYN
UNREACH = [
    (4, 0, errno.ENETUNREACH),
    (4, 1, errno.EHOSTUNREACH),
    (4, 3, errno.ECONNREFUSED),
    (6, 0, errno.ENETUNREACH),
    (6, 3, errno.EHOSTUNREACH),
    (6, 4, errno.ECONNREFUSED),
]


def icmp_unreach(tb, family: int, code: int, offending):
    """A destination unreachable from the TB quoting ``offending`` (a received frame)."""
    if family == 4:
        quoted = bytes(offending[IP])
        return tb.ip4() / ICMP(type=3, code=code) / Raw(quoted)
    quoted = bytes(offending[IPv6])
    return tb.ip6() / ICMPv6DestUnreach(code=code) / Raw(quoted)


@pytest.mark.parametrize("family,code,err", UNREACH,
                         ids=[f"v{f}-code{c}" for f, c, _ in UNREACH])
def test_unreachable_fails_connect(tb, dut, family, code, err):
    """An ICMP destination unreachable for the SYN fails connect() with the matching errno.

    The connection is then gone: a late SYN-ACK gets RST.
    """
    fd = dut.socket(tb.topo.af(family), socket.SOCK_STREAM)
    conn = TCPConn(tb, family, dport=0)
    fut = dut.background("connect", fd, list(dut.tb_addr(family, conn.sport)))
    syn = conn.expect("S", timeout=3)
    conn.dport = syn[TCP].sport
    tb.send(icmp_unreach(tb, family, code, syn))
    with pytest.raises(DutError) as ei:
        fut.result(timeout=3)
    assert ei.value.errno == err
    conn.send("SA", ack=seq_add(syn[TCP].seq, 1), options=[("MSS", 1460)])
    conn.expect(("R",), seq=seq_add(syn[TCP].seq, 1))


@pytest.mark.parametrize("family", [4, 6], ids=["v4", "v6"])
def test_unreachable_is_soft_when_established(tb, dut, family):
    """Host unreachable on an established connection does not abort it (RFC 1122 4.2.3.9)."""
    conn, afd, _ = tcp_established(tb, dut, family)
    dut.send(afd, b"data")
    seg = conn.expect("A", payload=b"data")
    tb.send(icmp_unreach(tb, family, 1 if family == 4 else 3, seg))
    time.sleep(0.1)
    conn.send("PA", b"still here")
    conn.expect("A", ack=conn.snd_nxt)
    assert dut.recv(afd, 100) == b"still here"
    dut.send(afd, b"more")
    conn.expect("A", payload=b"more")


@pytest.mark.xfail_on(
    "netvisor",
    "after TCP_USER_TIMEOUT plain recv() fails with ECONNRESET (untrapped read on the "
    "socketpair), not the soft ICMP error EHOSTUNREACH as Linux")
@pytest.mark.parametrize("family", [4, 6], ids=["v4", "v6"])
def test_unreachable_reported_on_timeout(tb, dut, family):
    """The soft error is what the application sees when the connection times out.

    With TCP_USER_TIMEOUT=1 s and data never acknowledged, recv() fails with
    EHOSTUNREACH (the last ICMP error) instead of ETIMEDOUT (Linux
    tcp_write_err uses sk_err_soft).
    """
    conn, afd, _ = tcp_established(tb, dut, family)
    dut.setsockopt(afd, socket.IPPROTO_TCP, TCP_USER_TIMEOUT, 1000)
    dut.send(afd, b"data")
    seg = conn.expect("A", payload=b"data")
    tb.send(icmp_unreach(tb, family, 1 if family == 4 else 3, seg))
    time.sleep(2.0)
    with pytest.raises(DutError) as ei:
        dut.recv(afd, 10)
    assert ei.value.errno == errno.EHOSTUNREACH


def test_port_unreachable_in_syn_rcvd_ignored_for_listener(tb, dut):
    """ICMP for a SYN-ACK does not disturb the listener, which keeps accepting."""
    lfd, port = dut.tcp_listener(4)
    conn = TCPConn(tb, 4, dport=port)
    synack = conn.connect(ack=False)
    tb.send(icmp_unreach(tb, 4, 3, synack))
    time.sleep(0.1)
    other = TCPConn(tb, 4, dport=port)
    other.connect()
    fd, addr = dut.accept(lfd)
    assert addr[1] == other.sport


@pytest.mark.parametrize("family,mtu", [(4, 1000), (6, 1280)], ids=["v4", "v6"])
def test_path_mtu_lowers_segment_size(tb, dut, family, mtu):
    """Fragmentation needed / packet too big lowers the DUT's segment size (RFC 1191, RFC 8201).

    The lost segment is resent in pieces that fit the reported MTU.
    """
    conn, afd, _ = tcp_established(tb, dut, family)
    dut.send(afd, b"p" * 1400)
    big = conn.expect("A", plen=1400, update=False)
    if family == 4:
        tb.send(tb.ip4() / ICMP(type=3, code=4, nexthopmtu=mtu) / Raw(bytes(big[IP])[:28 + 40]))
    else:
        from scapy.layers.inet6 import ICMPv6PacketTooBig

        # As much of the packet as fits in the minimum MTU (RFC 4443 2.4 c).
        tb.send(tb.ip6() / ICMPv6PacketTooBig(mtu=mtu) / Raw(bytes(big[IPv6])[:1280 - 48]))
    hdr = 40 if family == 4 else 60
    p = conn.expect("A", seq=big[TCP].seq, timeout=2, update=False)
    assert 0 < len(p[TCP].payload) <= mtu - hdr
    assert len(p[IP if family == 4 else IPv6]) <= mtu
