"""UDP: delivery by address (unicast, broadcast, multicast, wildcard), ICMP error propagation.

RFC 768, RFC 1122 4.1.3.3 (ICMP errors passed to the application), 3.2.1.3
(a multicast source address is invalid: drop), RFC 1112 (host group
membership), Linux semantics for which error reaches which socket (only
connected sockets report ICMP errors without IP_RECVERR).
"""

from __future__ import annotations

import errno
import socket
import struct
import time

import pytest
from scapy.layers.inet import ICMP, IP, UDP, UDPerror
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from tests.conformance.testbench import DutError

FAMILIES = pytest.mark.parametrize("family", [4, 6], ids=["v4", "v6"])
TB_PORT = 40000


def udp_to_dut(tb, family, dport, payload, sport=TB_PORT, **ip_kw):
    return tb.ip(family, **ip_kw) / UDP(sport=sport, dport=dport) / Raw(payload)


def assert_nothing_queued(dut, fd):
    dut.setnonblocking(fd)
    with pytest.raises(DutError) as ei:
        dut.recv(fd, 2000)
    assert ei.value.errno == errno.EAGAIN


@FAMILIES
def test_unicast_send_and_receive(tb, dut, family):
    """A datagram each way, with the right ports, addresses and payload."""
    fd, port = dut.udp_socket(family)
    dut.sendto(fd, b"from dut", dut.tb_addr(family, TB_PORT))
    p = tb.expect_udp(family, sport=port, dport=TB_PORT, payload=b"from dut")
    assert p[UDP].chksum != 0
    tb.send(udp_to_dut(tb, family, port, b"from tb"))
    data, addr = dut.recvfrom(fd, 100)
    assert data == b"from tb" and addr[0] == tb.topo.tb_ip(family) and addr[1] == TB_PORT


@FAMILIES
def test_any_address_socket_receives_unicast(tb, dut, family):
    """A socket bound to the wildcard address receives unicast to the DUT address."""
    any_addr = "0.0.0.0" if family == 4 else "::"
    fd, port = dut.udp_socket(family, host=any_addr)
    tb.send(udp_to_dut(tb, family, port, b"to any"))
    data, addr = dut.recvfrom(fd, 100)
    assert data == b"to any"


@FAMILIES
def test_multicast_source_dropped(tb, dut, family):
    """A datagram from a multicast source address is dropped (RFC 1122 3.2.1.3, RFC 4291 2.7)."""
    fd, port = dut.udp_socket(family)
    bad_src = "224.0.0.1" if family == 4 else "ff0e::1"
    tb.send(udp_to_dut(tb, family, port, b"bad", src=bad_src))
    tb.send(udp_to_dut(tb, family, port, b"good"))
    assert dut.recv(fd, 100) == b"good"
    assert_nothing_queued(dut, fd)


def test_zero_checksum_accepted_v4(tb, dut):
    """An IPv4 UDP checksum of 0 means 'none' and the datagram is delivered (RFC 768)."""
    fd, port = dut.udp_socket(4)
    tb.send(tb.ip4() / UDP(sport=TB_PORT, dport=port, chksum=0) / Raw(b"nocsum"))
    assert dut.recv(fd, 100) == b"nocsum"


@FAMILIES
def test_bad_checksum_dropped(tb, dut, family):
    """A datagram with a wrong checksum is dropped."""
    fd, port = dut.udp_socket(family)
    tb.send(tb.ip(family) / UDP(sport=TB_PORT, dport=port, chksum=0x1234) / Raw(b"bad"))
    tb.send(udp_to_dut(tb, family, port, b"good"))
    assert dut.recv(fd, 100) == b"good"
    assert_nothing_queued(dut, fd)


@FAMILIES
def test_closed_port_port_unreachable(tb, dut, family):
    """A datagram to a closed port gets ICMP port unreachable quoting it."""
    fd, port = dut.udp_socket(family)
    dut.close(fd)
    # netvisor learns of a close() from its socketpair (close is not trapped),
    # a moment later; the case is about the closed port, not that moment.
    time.sleep(0.2)
    tb.send(udp_to_dut(tb, family, port, b"anyone?"))
    if family == 4:
        p = tb.expect_icmp(4, 3, 3)
        assert p[UDPerror].dport == port
    else:
        p = tb.expect_icmp(6, 1, 4)
        assert p[UDPerror].dport == port


def test_broadcast_received_by_wildcard_socket(tb, dut):
    """Subnet and limited broadcasts reach a 0.0.0.0-bound socket, not one bound to the unicast address."""
    any_fd, port = dut.udp_socket(4, host="0.0.0.0")
    uni_fd = dut.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dut.setsockopt(uni_fd, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    dut.setsockopt(any_fd, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    dut.bind(uni_fd, dut.addr(4, port))
    bcast = Ether(src=tb.topo.tb_mac, dst="ff:ff:ff:ff:ff:ff")
    for dst in ("10.247.0.255", "255.255.255.255"):
        tb.send(bcast / IP(src=tb.topo.tb_ip4, dst=dst) / UDP(sport=TB_PORT, dport=port)
                / Raw(dst.encode()))
        assert dut.recv(any_fd, 100) == dst.encode()
    assert_nothing_queued(dut, uni_fd)


def test_broadcast_send_needs_so_broadcast(tb, dut):
    """Sending to a broadcast address fails with EACCES until SO_BROADCAST is set."""
    fd, port = dut.udp_socket(4, host="0.0.0.0")
    with pytest.raises(DutError) as ei:
        dut.sendto(fd, b"b", ("10.247.0.255", TB_PORT))
    assert ei.value.errno == errno.EACCES
    dut.setsockopt(fd, socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    dut.sendto(fd, b"bcast", ("10.247.0.255", TB_PORT))
    p = tb.expect(lambda p: UDP in p and p[UDP].sport == port and p[IP].dst == "10.247.0.255",
                  desc="broadcast datagram")
    assert p[Ether].dst == "ff:ff:ff:ff:ff:ff" and bytes(p[UDP].payload) == b"bcast"


def test_multicast_receive_needs_membership_v4(tb, dut):
    """A v4 multicast datagram is delivered only after IP_ADD_MEMBERSHIP."""
    group = "239.1.2.3"
    fd, port = dut.udp_socket(4, host="0.0.0.0")
    frame = (Ether(src=tb.topo.tb_mac, dst="01:00:5e:01:02:03")
             / IP(src=tb.topo.tb_ip4, dst=group, ttl=1) / UDP(sport=TB_PORT, dport=port))
    tb.send(frame / Raw(b"not yet"))
    time.sleep(0.1)
    mreq = socket.inet_aton(group) + socket.inet_aton(tb.topo.dut_ip4)
    dut.setsockopt(fd, socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    tb.send(frame / Raw(b"member"))
    assert dut.recv(fd, 100) == b"member"
    assert_nothing_queued(dut, fd)


def test_multicast_receive_needs_membership_v6(tb, dut):
    """A v6 multicast datagram is delivered only after IPV6_JOIN_GROUP."""
    group = "ff02::1:3"
    fd, port = dut.udp_socket(6, host="::")
    frame = (Ether(src=tb.topo.tb_mac, dst="33:33:00:01:00:03")
             / IPv6(src=tb.topo.tb_ip6, dst=group, hlim=1) / UDP(sport=TB_PORT, dport=port))
    tb.send(frame / Raw(b"not yet"))
    time.sleep(0.1)
    mreq = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", 0)
    dut.setsockopt(fd, socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
    tb.send(frame / Raw(b"member"))
    assert dut.recv(fd, 100) == b"member"
    assert_nothing_queued(dut, fd)


def test_multicast_send_v4(tb, dut):
    """Multicast goes out to the group's MAC (RFC 1112 6.4) with TTL 1 by default."""
    group = "239.1.2.3"
    fd, port = dut.udp_socket(4, host="0.0.0.0")
    dut.setsockopt(fd, socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(tb.topo.dut_ip4))
    dut.sendto(fd, b"to group", (group, TB_PORT))
    p = tb.expect(lambda p: UDP in p and IP in p and p[IP].dst == group and p[UDP].sport == port,
                  desc="multicast datagram")
    assert p[Ether].dst == "01:00:5e:01:02:03" and p[IP].ttl == 1
    assert p[IP].src == tb.topo.dut_ip4


# ---------------------------------------------------------------- ICMP errors

def _udp_then_unreach(tb, dut, family, fd, port, connect: bool):
    if connect:
        dut.connect(fd, dut.tb_addr(family, TB_PORT))
        dut.send(fd, b"probe")
    else:
        dut.sendto(fd, b"probe", dut.tb_addr(family, TB_PORT))
    p = tb.expect_udp(family, sport=port, dport=TB_PORT)
    if family == 4:
        tb.send(tb.ip4() / ICMP(type=3, code=3) / Raw(bytes(p[IP])))
    else:
        tb.send(tb.ip6() / ICMPv6DestUnreach(code=4) / Raw(bytes(p[IPv6])))
    time.sleep(0.1)


@pytest.mark.xfail_on(
    "netvisor",
    "ICMP port unreachable reaches SO_ERROR but not a plain send() on a connected UDP socket "
    "(untrapped call on the socketpair)", how="send")
@pytest.mark.xfail_on(
    "netvisor",
    "ICMP port unreachable reaches SO_ERROR but not a plain recv() on a connected UDP socket "
    "(untrapped call on the socketpair)", how="recv")
@FAMILIES
@pytest.mark.parametrize("how", ["recv", "send", "so_error"])
def test_icmp_error_reported_on_connected_socket(tb, dut, family, how):
    """Port unreachable for a connected socket's datagram surfaces once as ECONNREFUSED."""
    fd, port = dut.udp_socket(family)
    _udp_then_unreach(tb, dut, family, fd, port, connect=True)
    if how == "so_error":
        assert dut.getsockopt(fd, socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNREFUSED
        assert dut.getsockopt(fd, socket.SOL_SOCKET, socket.SO_ERROR) == 0
        return
    with pytest.raises(DutError) as ei:
        if how == "recv":
            dut.setnonblocking(fd)
            dut.recv(fd, 100)
        else:
            dut.send(fd, b"again")
    assert ei.value.errno == errno.ECONNREFUSED
    # Reported once: the next call works (or would block).
    if how == "send":
        dut.send(fd, b"again")


@FAMILIES
def test_icmp_error_not_reported_on_unconnected_socket(tb, dut, family):
    """Without connect() (and without IP_RECVERR) the error is not reported (Linux)."""
    fd, port = dut.udp_socket(family)
    _udp_then_unreach(tb, dut, family, fd, port, connect=False)
    assert dut.getsockopt(fd, socket.SOL_SOCKET, socket.SO_ERROR) == 0
    assert_nothing_queued(dut, fd)
    dut.sendto(fd, b"again", dut.tb_addr(family, TB_PORT))


@pytest.mark.xfail_on(
    "netvisor",
    "ICMP port unreachable does not wake a blocked plain recv() on a connected UDP socket "
    "(untrapped call on the socketpair)")
@FAMILIES
def test_icmp_error_wakes_blocking_recv(tb, dut, family):
    """A recv() blocked on a connected socket returns ECONNREFUSED when the error arrives."""
    fd, port = dut.udp_socket(family)
    dut.connect(fd, dut.tb_addr(family, TB_PORT))
    fut = dut.background("recv", fd, 100)
    time.sleep(0.2)
    assert not fut.done()
    dut.send(fd, b"probe")
    p = tb.expect_udp(family, sport=port, dport=TB_PORT)
    if family == 4:
        tb.send(tb.ip4() / ICMP(type=3, code=3) / Raw(bytes(p[IP])))
    else:
        tb.send(tb.ip6() / ICMPv6DestUnreach(code=4) / Raw(bytes(p[IPv6])))
    with pytest.raises(DutError) as ei:
        fut.result(timeout=2)
    assert ei.value.errno == errno.ECONNREFUSED


def test_icmp_error_for_other_port_ignored(tb, dut):
    """An ICMP error quoting a datagram of another socket does not touch this one."""
    fd, port = dut.udp_socket(4)
    dut.connect(fd, dut.tb_addr(4, TB_PORT))
    dut.send(fd, b"probe")
    p = tb.expect_udp(4, sport=port, dport=TB_PORT)
    quoted = p[IP].copy()
    quoted[UDP].sport = (port % 60000) + 1
    quoted[UDP].chksum = None
    tb.send(tb.ip4() / ICMP(type=3, code=3) / Raw(bytes(quoted)))
    time.sleep(0.1)
    assert dut.getsockopt(fd, socket.SOL_SOCKET, socket.SO_ERROR) == 0


@FAMILIES
def test_large_datagram_fragmented(tb, dut, family):
    """A 3000-byte datagram leaves in MTU-sized fragments that reassemble to it."""
    from scapy.layers.inet6 import IPv6ExtHdrFragment

    fd, port = dut.udp_socket(family)
    data = bytes(i % 251 for i in range(3000))
    dut.sendto(fd, data, dut.tb_addr(family, TB_PORT))
    parts: dict[int, bytes] = {}
    while sum(len(v) for v in parts.values()) < 3008:
        if family == 4:
            p = tb.expect(lambda p: tb.from_dut(p, 4) and p[IP].proto == 17
                          and (p[IP].flags.MF or p[IP].frag), desc="IPv4 fragment")
            assert len(p[IP]) <= 1500
            parts[p[IP].frag * 8] = bytes(p[IP].payload)
        else:
            p = tb.expect(lambda p: tb.from_dut(p, 6) and IPv6ExtHdrFragment in p,
                          desc="IPv6 fragment")
            assert len(p[IPv6]) <= 1500
            parts[p[IPv6ExtHdrFragment].offset * 8] = bytes(p[IPv6ExtHdrFragment].payload)
    whole = b"".join(parts[k] for k in sorted(parts))
    assert whole[8:] == data and UDP(whole[:8]).dport == TB_PORT


@FAMILIES
def test_connected_socket_filters_other_sources(tb, dut, family):
    """A connected UDP socket receives only from its peer address and port."""
    fd, port = dut.udp_socket(family)
    dut.connect(fd, dut.tb_addr(family, TB_PORT))
    tb.send(udp_to_dut(tb, family, port, b"wrong port", sport=TB_PORT + 1))
    tb.send(udp_to_dut(tb, family, port, b"right"))
    assert dut.recv(fd, 100) == b"right"
    assert_nothing_queued(dut, fd)


@FAMILIES
def test_fragmented_datagram_delivered(tb, dut, family):
    """A datagram the TB sends in fragments is reassembled and delivered whole."""
    from scapy.layers.inet import fragment
    from scapy.layers.inet6 import IPv6ExtHdrFragment, fragment6

    fd, port = dut.udp_socket(family)
    data = bytes(i % 249 for i in range(4000))
    if family == 4:
        frags = fragment(tb.ip4(id=4242) / UDP(sport=TB_PORT, dport=port) / Raw(data), 1480)
    else:
        frags = fragment6(tb.ip6() / IPv6ExtHdrFragment(id=4242) / UDP(sport=TB_PORT, dport=port)
                          / Raw(data), 1500)
    for f in reversed(frags):
        tb.send(f)
    assert dut.recv(fd, 8000) == data


# ------------------------------------------------- bind x destination matrix
# (packetimpact udp_send_recv / generic_dgram_socket_send_recv): which bound
# address receives which destination. A socket bound to the wildcard gets
# everything addressed to the host (multicast only for joined groups); one
# bound to a specific unicast, broadcast or multicast address gets only
# datagrams sent to exactly that address.
V4_BINDS = {"any": "0.0.0.0", "unicast": None, "subnet-bcast": "10.247.0.255",
            "limited-bcast": "255.255.255.255", "mcast": "239.1.2.3"}
V4_DSTS = {"unicast": None, "subnet-bcast": "10.247.0.255",
           "limited-bcast": "255.255.255.255", "mcast": "239.1.2.3"}
POLLIN = 1


def _dst_mac(dst: str, dut_mac: str) -> str:
    if dst.startswith("239."):
        return "01:00:5e:01:02:03"
    if dst.endswith(".255"):
        return "ff:ff:ff:ff:ff:ff"
    return dut_mac


@pytest.mark.parametrize("dst", list(V4_DSTS))
@pytest.mark.parametrize("bind", list(V4_BINDS))
def test_v4_bind_destination_matrix(tb, dut, bind, dst):
    """Delivery of unicast/broadcast/multicast datagrams to sockets bound to each kind of address."""
    bind_ip = V4_BINDS[bind] or tb.topo.dut_ip4
    dst_ip = V4_DSTS[dst] or tb.topo.dut_ip4
    fd = dut.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dut.setsockopt(fd, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Membership is host state: join on every socket so that only the binding decides.
    dut.setsockopt(fd, socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                   socket.inet_aton("239.1.2.3") + socket.inet_aton(tb.topo.dut_ip4))
    dut.bind(fd, (bind_ip, 0))
    port = int(dut.getsockname(fd)[1])
    tb.send(Ether(src=tb.topo.tb_mac, dst=_dst_mac(dst_ip, tb.topo.dut_mac))
            / IP(src=tb.topo.tb_ip4, dst=dst_ip, ttl=1) / UDP(sport=TB_PORT, dport=port)
            / Raw(dst.encode()))
    expected = bind == "any" or bind == dst
    if expected:
        assert dut.poll(fd, POLLIN, 1000) & POLLIN, f"{dst} datagram not delivered to {bind} socket"
        assert dut.recv(fd, 100) == dst.encode()
    else:
        assert dut.poll(fd, POLLIN, 200) == 0, f"{dst} datagram delivered to {bind} socket"


@pytest.mark.parametrize("dst", ["unicast", "all-nodes"])
@pytest.mark.parametrize("bind", ["any", "unicast"])
def test_v6_bind_destination_matrix(tb, dut, bind, dst):
    """IPv6: a wildcard socket gets unicast and all-nodes multicast; a unicast-bound one only unicast."""
    fd, port = dut.udp_socket(6, host="::" if bind == "any" else None)
    if dst == "unicast":
        pkt = udp_to_dut(tb, 6, port, b"v6 " + dst.encode())
    else:
        pkt = (Ether(src=tb.topo.tb_mac, dst="33:33:00:00:00:01")
               / IPv6(src=tb.topo.tb_ip6, dst="ff02::1", hlim=1)
               / UDP(sport=TB_PORT, dport=port) / Raw(b"v6 " + dst.encode()))
    tb.send(pkt)
    if bind == "any" or dst == "unicast":
        assert dut.poll(fd, POLLIN, 1000) & POLLIN
        assert dut.recv(fd, 100) == b"v6 " + dst.encode()
    else:
        assert dut.poll(fd, POLLIN, 200) == 0


def test_broadcast_copied_to_every_reuseaddr_socket(tb, dut):
    """Each socket sharing a port with SO_REUSEADDR gets its own copy of a broadcast."""
    fds = []
    for _ in range(2):
        fd = dut.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dut.setsockopt(fd, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        fds.append(fd)
    dut.bind(fds[0], ("0.0.0.0", 0))
    port = int(dut.getsockname(fds[0])[1])
    dut.bind(fds[1], ("0.0.0.0", port))
    tb.send(Ether(src=tb.topo.tb_mac, dst="ff:ff:ff:ff:ff:ff")
            / IP(src=tb.topo.tb_ip4, dst="10.247.0.255") / UDP(sport=TB_PORT, dport=port)
            / Raw(b"to all"))
    for fd in fds:
        assert dut.poll(fd, POLLIN, 1000) & POLLIN
        assert dut.recv(fd, 100) == b"to all"
