"""UDP socket semantics (Linux rules) on the sans-IO stack."""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import warnings
from typing import Any

import pytest
from scapy.layers.inet import IP, UDP  # type: ignore[import-untyped]
from scapy.layers.inet6 import ICMPv6MLReport2, IPv6  # type: ignore[import-untyped]
from scapy.layers.l2 import Ether  # type: ignore[import-untyped]

from netvisor.tcpip import consts as C

with warnings.catch_warnings():  # scapy 2.6+ moved IGMPv3; the contrib layout is still what we use
    warnings.simplefilter("ignore", DeprecationWarning)
    from scapy.contrib.igmpv3 import IGMPv3, IGMPv3mr  # type: ignore[import-untyped]
from netvisor.tcpip.errors import NetError

from .helpers import (
    OUR4,
    OUR6,
    OUR_MAC,
    PEER4,
    PEER6,
    PEER_MAC,
    feed,
    learn_peer,
    make_stack,
    sent,
    tick,
)

E = Ether(src=PEER_MAC, dst=OUR_MAC)
ONE = struct.pack("i", 1)


def errno_of(fn, *a):  # type: ignore[no-untyped-def]
    with pytest.raises(NetError) as e:
        fn(*a)
    return e.value.errno


def test_bind_rules() -> None:
    s, _ = make_stack()
    a = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("0.0.0.0", 5000))
    assert errno_of(a.bind, ("0.0.0.0", 5001)) == errno.EINVAL  # already bound
    b = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    assert errno_of(b.bind, (OUR4, 5000)) == errno.EADDRINUSE  # wildcard covers it
    assert errno_of(b.bind, ("192.0.2.1", 5000)) == errno.EADDRNOTAVAIL
    b.bind((OUR4, 5002))
    c = s.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    assert errno_of(c.bind, ("::", 5000)) == errno.EADDRINUSE  # dual-stack covers v4
    c.setsockopt(C.IPPROTO_IPV6, C.IPV6_V6ONLY, ONE)
    c.bind(("::", 5000))  # v6-only does not collide with v4
    assert c.getsockname() == ("::", 5000, 0, 0)


def test_reuseaddr_and_reuseport_need_both_sockets() -> None:
    s, _ = make_stack()
    socks = []
    for opt in (C.SO_REUSEADDR, C.SO_REUSEPORT):
        a = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
        a.setsockopt(C.SOL_SOCKET, opt, ONE)
        port = 6000 + opt
        a.bind(("0.0.0.0", port))
        b = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
        assert errno_of(b.bind, ("0.0.0.0", port)) == errno.EADDRINUSE
        b.setsockopt(C.SOL_SOCKET, opt, ONE)
        b.bind(("0.0.0.0", port))
        socks += [a, b]


def test_reuseport_spreads_flows_but_keeps_each_flow_on_one_socket() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    group = []
    for _ in range(2):
        x = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
        x.setsockopt(C.SOL_SOCKET, C.SO_REUSEPORT, ONE)
        x.bind(("0.0.0.0", 7000))
        group.append(x)
    for sport in range(1000, 1040):
        for _ in range(2):
            feed(s, nic, E / IP(src=PEER4, dst=OUR4) / UDP(sport=sport, dport=7000) / b"d")
    counts = [len(x.rxq) for x in group]
    assert sum(counts) == 80 and all(c > 0 for c in counts)
    for x in group:  # each flow's two datagrams landed together
        sports = [int(a[1]) for _, a, _meta in x.rxq]
        assert all(sports.count(p) == 2 for p in sports)


def test_ephemeral_ports_in_linux_range() -> None:
    s, _ = make_stack()
    ports = set()
    for _ in range(50):
        u = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("0.0.0.0", 0))
        ports.add(u.getsockname()[1])
    assert len(ports) == 50 and all(32768 <= p <= 60999 for p in ports)


def test_loopback_send_receive_peek_and_truncation() -> None:
    s, _ = make_stack()
    srv = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 9000))
    cli = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    assert errno_of(srv.recv, 10) == errno.EAGAIN
    assert srv.poll() & C.POLLIN == 0
    cli.sendto(b"0123456789", 0, ("127.0.0.1", 9000))
    s.handle_timer(0.0)
    assert srv.poll() & C.POLLIN
    assert srv.recvfrom(100, C.MSG_PEEK)[0] == b"0123456789"
    r = srv.recvmsg(4)
    assert r.data == b"0123" and r.truncated and r.length == 10
    assert r.addr == ("127.0.0.1", cli.getsockname()[1])
    assert errno_of(srv.recv, 10) == errno.EAGAIN  # rest of a datagram is discarded


def test_connect_filters_and_disconnect_releases() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    u = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.connect((PEER4, 53))
    local = u.getsockname()
    assert local[0] == OUR4 and u.getpeername() == (PEER4, 53)
    feed(s, nic, E / IP(src=PEER4, dst=OUR4) / UDP(sport=54, dport=local[1]) / b"other")
    feed(s, nic, E / IP(src=PEER4, dst=OUR4) / UDP(sport=53, dport=local[1]) / b"peer")
    assert u.recv(100) == b"peer"
    assert errno_of(u.recv, 100) == errno.EAGAIN
    u.connect((C.AF_UNSPEC,))
    assert errno_of(u.getpeername) == errno.ENOTCONN
    assert u.getsockname() == ("0.0.0.0", 0)  # connect chose them: released
    assert errno_of(u.send, b"x") == errno.EDESTADDRREQ


def test_broadcast_needs_so_broadcast() -> None:
    s, nic = make_stack()
    u = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    assert errno_of(u.sendto, b"x", 0, ("10.0.0.255", 9)) == errno.EACCES
    assert errno_of(u.sendto, b"x", 0, ("255.255.255.255", 9)) == errno.EACCES
    u.setsockopt(C.SOL_SOCKET, C.SO_BROADCAST, ONE)
    u.sendto(b"x", 0, ("10.0.0.255", 9))
    (f,) = sent(s, nic)
    assert f[Ether].dst == "ff:ff:ff:ff:ff:ff" and f[IP].dst == "10.0.0.255"


def test_broadcast_received_by_wildcard_sockets_only() -> None:
    s, nic = make_stack()
    w = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    w.bind(("0.0.0.0", 67))
    spec = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    spec.setsockopt(C.SOL_SOCKET, C.SO_REUSEADDR, ONE)
    w.setsockopt(C.SOL_SOCKET, C.SO_REUSEADDR, ONE)
    spec.bind((OUR4, 67))
    feed(s, nic, Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff") /
         IP(src=PEER4, dst="255.255.255.255") / UDP(sport=68, dport=67) / b"b")
    assert len(w.rxq) == 1 and len(spec.rxq) == 0
    assert sent(s, nic) == []  # never a port unreachable for broadcast


def test_dual_stack_socket_sees_v4_as_mapped_and_v6only_does_not() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    d = s.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    d.bind(("::", 4000))
    feed(s, nic, E / IP(src=PEER4, dst=OUR4) / UDP(sport=1234, dport=4000) / b"v4")
    feed(s, nic, E / IPv6(src=PEER6, dst=OUR6) / UDP(sport=1234, dport=4000) / b"v6")
    assert d.recvfrom(10) == (b"v4", (f"::ffff:{PEER4}", 1234, 0, 0))
    assert d.recvfrom(10) == (b"v6", (PEER6, 1234, 0, 0))
    d.sendto(b"back", 0, (f"::ffff:{PEER4}", 1234))
    (f,) = sent(s, nic)
    assert f[IP].src == OUR4 and f[UDP].dport == 1234
    o = s.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    o.setsockopt(C.IPPROTO_IPV6, C.IPV6_V6ONLY, ONE)
    assert errno_of(o.sendto, b"x", 0, (f"::ffff:{PEER4}", 1)) == errno.EINVAL


def test_receive_buffer_limit_drops_and_counts() -> None:
    s, nic = make_stack()
    u = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(C.SOL_SOCKET, C.SO_RCVBUF, struct.pack("i", 4000))  # doubled: 8000
    u.bind(("0.0.0.0", 4001))
    for _ in range(10):
        feed(s, nic, E / IP(src=PEER4, dst=OUR4) / UDP(sport=1, dport=4001) / (b"z" * 1000))
    # 1000 + 768 bytes charged each: the 5th crosses 8000 and is the last one taken.
    assert len(u.rxq) == 5 and u.drops == 5
    assert s.counters.events["udp_rcvbuf_errors"] == 5


def test_udp_checksum_verified_unless_device_vouches() -> None:
    s, nic = make_stack()
    u = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", 4002))
    bad = E / IP(src=PEER4, dst=OUR4) / UDP(sport=1, dport=4002, chksum=0x1234) / b"x"
    feed(s, nic, bad)
    assert not u.rxq
    feed(s, nic, bad, csum_valid=True)
    assert len(u.rxq) == 1
    feed(s, nic, E / IP(src=PEER4, dst=OUR4) / UDP(sport=1, dport=4002, chksum=0) / b"y")
    assert len(u.rxq) == 2  # IPv4: checksum 0 = none


def test_sent_udp_checksums_are_correct() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    u = s.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u.sendto(b"abc", 0, (PEER6, 5))
    u.sendto(b"abc", 0, (f"::ffff:{PEER4}", 5))
    for f in sent(s, nic):
        sent_sum = f[UDP].chksum
        del f[UDP].chksum
        assert Ether(bytes(f))[UDP].chksum == sent_sum


def test_multicast_join_sends_reports_and_receives() -> None:
    s, nic = make_stack()
    u = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", 5353))
    mreq = ipaddress.ip_address("224.0.0.251").packed + ipaddress.ip_address(OUR4).packed
    u.setsockopt(C.IPPROTO_IP, C.IP_ADD_MEMBERSHIP, mreq)
    assert errno_of(u.setsockopt, C.IPPROTO_IP, C.IP_ADD_MEMBERSHIP, mreq) == errno.EADDRINUSE
    tick(s, 0.0)
    (rep,) = sent(s, nic)
    assert rep[IP].dst == "224.0.0.22" and rep[IP].ttl == 1 and rep[IGMPv3].type == 0x22
    assert rep[IGMPv3mr].records[0].maddr == "224.0.0.251"
    assert rep[IGMPv3mr].records[0].rtype == 4  # CHANGE_TO_EXCLUDE_MODE
    feed(s, nic, Ether(src=PEER_MAC, dst="01:00:5e:00:00:fb") /
         IP(src=PEER4, dst="224.0.0.251") / UDP(sport=5353, dport=5353) / b"m")
    assert u.recv(10) == b"m"
    v6 = s.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    v6.setsockopt(C.IPPROTO_IPV6, C.IPV6_JOIN_GROUP,
                  ipaddress.ip_address("ff02::fb").packed + struct.pack("I", nic))
    tick(s, 0.0)
    (mld,) = sent(s, nic)
    assert mld[IPv6].dst == "ff02::16" and mld[IPv6].hlim == 1
    assert mld[ICMPv6MLReport2].records[0].dst == "ff02::fb"
    u.close()
    tick(s, 0.0)
    (leave,) = sent(s, nic)
    assert leave[IGMPv3mr].records[0].rtype == 3  # CHANGE_TO_INCLUDE_MODE: left


def test_multicast_loopback_delivers_own_datagrams() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    u = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", 6666))
    u.setsockopt(C.IPPROTO_IP, C.IP_ADD_MEMBERSHIP,
                 ipaddress.ip_address("239.1.1.1").packed + bytes(4))
    u.sendto(b"me", 0, ("239.1.1.1", 6666))
    s.handle_timer(0.0)
    assert u.recv(10) == b"me"
    u.setsockopt(C.IPPROTO_IP, C.IP_MULTICAST_LOOP, ONE[:1].replace(b"\x01", b"\x00"))
    u.sendto(b"me", 0, ("239.1.1.1", 6666))
    s.handle_timer(0.0)
    assert errno_of(u.recv, 10) == errno.EAGAIN


def test_sizes_and_shutdown() -> None:
    s, _ = make_stack()
    u = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    assert errno_of(u.sendto, b"x" * 65508, 0, ("127.0.0.1", 9)) == errno.EMSGSIZE
    u.sendto(b"x" * 65507, 0, ("127.0.0.1", 9))
    v = s.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    v.sendto(b"x" * 65527, 0, ("::1", 9))
    assert errno_of(v.sendto, b"x" * 65528, 0, ("::1", 9)) == errno.EMSGSIZE
    assert errno_of(u.shutdown, C.SHUT_RDWR) == errno.ENOTCONN  # flags still applied
    assert u.poll() & C.POLLHUP
    assert u.recv(10) == b""
    assert errno_of(u.send, b"x") == errno.EPIPE


def test_socket_options_roundtrip() -> None:
    s, _ = make_stack()
    u = s.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    assert u.getsockopt(C.SOL_SOCKET, C.SO_TYPE, 4) == struct.pack("i", socket.SOCK_DGRAM)
    assert u.getsockopt(C.SOL_SOCKET, C.SO_DOMAIN, 4) == struct.pack("i", socket.AF_INET6)
    u.setsockopt(C.IPPROTO_IPV6, C.IPV6_UNICAST_HOPS, struct.pack("i", 9))
    assert u.getsockopt(C.IPPROTO_IPV6, C.IPV6_UNICAST_HOPS, 4) == struct.pack("i", 9)
    assert errno_of(u.setsockopt, 99, 1, ONE) == errno.ENOPROTOOPT
    assert errno_of(s.socket, 17, socket.SOCK_DGRAM) == errno.EAFNOSUPPORT


def test_link_local_needs_scope() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    u = s.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    assert errno_of(u.sendto, b"x", 0, ("fe80::2", 9)) == errno.EINVAL
    u.sendto(b"x", 0, ("fe80::2", 9, 0, nic))
    (f,) = sent(s, nic)
    assert f[IPv6].src.startswith("fe80::") and f[IPv6].dst == "fe80::2"
    feed(s, nic, E / IPv6(src="fe80::2", dst=f[IPv6].src) / UDP(sport=9, dport=f[UDP].sport) / b"r")
    assert u.recvfrom(10) == (b"r", ("fe80::2", 9, 0, nic))


def test_pmtudisc_do_gives_emsgsize_and_dont_clears_df() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    u = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.connect((PEER4, 9))
    assert struct.unpack("i", u.getsockopt(C.IPPROTO_IP, C.IP_MTU, 4))[0] == 1500
    u.setsockopt(C.IPPROTO_IP, C.IP_MTU_DISCOVER, struct.pack("i", C.IP_PMTUDISC_DO))
    assert errno_of(u.send, b"x" * 1473) == errno.EMSGSIZE
    u.send(b"x" * 1472)
    (f,) = sent(s, nic)
    assert f[IP].flags.DF
    u.setsockopt(C.IPPROTO_IP, C.IP_MTU_DISCOVER, struct.pack("i", C.IP_PMTUDISC_DONT))
    u.send(b"x" * 100)
    (f,) = sent(s, nic)
    assert not f[IP].flags.DF
    v = s.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    v.setsockopt(C.IPPROTO_IPV6, C.IPV6_DONTFRAG, ONE)
    assert errno_of(v.sendto, b"x" * 1453, 0, (PEER6, 9)) == errno.EMSGSIZE
    v.sendto(b"x" * 1452, 0, (PEER6, 9))
    assert len(sent(s, nic)) == 1


def test_generic_socket_options_are_accepted() -> None:
    s, _ = make_stack()
    u = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    linger = struct.pack("ii", 1, 5)
    u.setsockopt(C.SOL_SOCKET, C.SO_LINGER, linger)  # Linux accepts it on any socket
    assert u.getsockopt(C.SOL_SOCKET, C.SO_LINGER, 8) == linger
    u.setsockopt(C.SOL_SOCKET, C.SO_PRIORITY, struct.pack("i", 3))
    assert u.getsockopt(C.SOL_SOCKET, C.SO_PRIORITY, 4) == struct.pack("i", 3)


def test_recvmsg_reports_destination_nic_ttl_and_tos() -> None:
    s, nic = make_stack()
    u = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", 4100))
    feed(s, nic, E / IP(src=PEER4, dst=OUR4, ttl=33, tos=0x28) / UDP(sport=1, dport=4100) / b"m")
    r = u.recvmsg(100)
    assert (r.dst, r.ifindex, r.ttl, r.tos) == (ipaddress.ip_address(OUR4), nic, 33, 0x28)
    v = s.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    v.bind(("::", 4101))
    feed(s, nic, E / IPv6(src=PEER6, dst=OUR6, hlim=7, tc=0x10) / UDP(sport=1, dport=4101) / b"n")
    r = v.recvmsg(100)
    assert (r.dst, r.ifindex, r.ttl, r.tos) == (ipaddress.ip_address(OUR6), nic, 7, 0x10)


def test_recv_after_shut_rd_eof_when_blocking_eagain_when_not() -> None:
    s, _ = make_stack()
    u = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    assert errno_of(u.shutdown, C.SHUT_RD) == errno.ENOTCONN
    assert u.poll() & (C.POLLIN | C.POLLRDHUP) == C.POLLIN | C.POLLRDHUP
    assert u.recv(10) == b""
    assert errno_of(u.recv, 10, C.MSG_DONTWAIT) == errno.EAGAIN


def test_ancillary_data_switches_are_kept() -> None:
    s, _ = make_stack()
    v = s.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    for level, opt in ((C.IPPROTO_IP, C.IP_PKTINFO), (C.IPPROTO_IPV6, C.IPV6_RECVHOPLIMIT)):
        assert v.getsockopt(level, opt, 4) == struct.pack("i", 0)
        v.setsockopt(level, opt, ONE)
        assert v.getsockopt(level, opt, 4) == ONE


# ---------------------------------------------------------------- IP_RECVERR

def _refuse(s: Any, nic: int, *, type_: int = 3, code: int = 3, unused: int = 0) -> int:
    """Answer every datagram we sent with an ICMP error from the peer."""
    from scapy.layers.inet6 import ICMPv6DestUnreach  # type: ignore[import-untyped]
    from scapy.packet import Raw  # type: ignore[import-untyped]

    from netvisor.tcpip.wire.checksum import checksum
    outs = sent(s, nic)
    for out in outs:
        if IP in out:
            msg = bytearray(struct.pack("!BBHI", type_, code, 0, unused) + bytes(out[IP])[:548])
            struct.pack_into("!H", msg, 2, checksum(msg))
            feed(s, nic, E / IP(src=PEER4, dst=OUR4, proto=1) / Raw(bytes(msg)))
        elif IPv6 in out:
            feed(s, nic, E / IPv6(src=PEER6, dst=OUR6) / ICMPv6DestUnreach(code=4)
                 / bytes(out[IPv6])[:1232])
    return len(outs)


def test_recverr_queues_icmp_errors_like_ip_recv_error() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    u = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(C.IPPROTO_IP, C.IP_RECVERR, ONE)
    assert errno_of(u.recvmsg, 100, C.MSG_ERRQUEUE) == errno.EAGAIN
    u.sendto(b"first", 0, (PEER4, 54))
    u.sendto(b"second" * 200, 0, (PEER4, 54))
    assert _refuse(s, nic) == 2
    # sk_err is set as well (unconnected too, with IP_RECVERR), and POLLERR.
    assert u.poll() & C.POLLERR
    assert int.from_bytes(u.getsockopt(1, 4, 4), "little") == errno.ECONNREFUSED
    assert u.poll() & C.POLLERR   # the queue is not empty
    r = u.recvmsg(100, C.MSG_ERRQUEUE | C.MSG_PEEK)   # MSG_PEEK: dequeued anyway
    assert (r.data, r.addr, r.truncated) == (b"first", (PEER4, 54), False)
    assert r.ee is not None and (r.ee.errno, r.ee.origin, r.ee.type, r.ee.code) == (
        errno.ECONNREFUSED, C.SO_EE_ORIGIN_ICMP, 3, 3)
    assert (r.ee.info, r.ee.data, str(r.ee.offender)) == (0, 0, PEER4)
    # The ICMP message's own facts, for IP_PKTINFO / IP_TTL / IP_TOS.
    assert (str(r.dst), r.ifindex, r.ttl, r.tos) == (OUR4, nic, 64, 0)
    # sock_dequeue_err_skb: the next entry re-arms sk_err ...
    assert int.from_bytes(u.getsockopt(1, 4, 4), "little") == errno.ECONNREFUSED
    r = u.recvmsg(10, C.MSG_ERRQUEUE)
    # ... (as much as the ICMP quoted: 548 bytes of IP packet) ...
    assert r.data == b"secondseco" and r.truncated and r.length == 548 - 28
    # ... and the last one clears it.
    assert u.getsockopt(1, 4, 4) == bytes(4)
    assert not u.poll() & C.POLLERR
    assert errno_of(u.recvmsg, 100, C.MSG_ERRQUEUE) == errno.EAGAIN
    assert u.rx_bytes == 0


def test_recverr_info_off_purge_and_bound() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    u = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(C.IPPROTO_IP, C.IP_RECVERR, ONE)
    u.sendto(b"x", 0, (PEER4, 54))
    _refuse(s, nic, type_=3, code=4, unused=1400)   # fragmentation needed: ee_info = MTU
    assert errno_of(u.sendto, b"x", 0, (PEER4, 54)) == errno.EMSGSIZE   # sk_err, once
    u.sendto(b"x", 0, (PEER4, 54))
    _refuse(s, nic, type_=12, code=0, unused=20 << 24)  # parameter problem: the pointer
    a, b = u.recvmsg(10, C.MSG_ERRQUEUE).ee, u.recvmsg(10, C.MSG_ERRQUEUE).ee
    assert (a.errno, a.info) == (errno.EMSGSIZE, 1400) and (b.errno, b.info) == (errno.EPROTO, 20)
    # Turning the option off purges the queue; sk_err stays.
    u.sendto(b"x", 0, (PEER4, 54))
    _refuse(s, nic)
    u.setsockopt(C.IPPROTO_IP, C.IP_RECVERR, bytes(4))
    assert not u.errq and u.rx_bytes == 0 and u.error == errno.ECONNREFUSED
    u.getsockopt(1, 4, 4)
    # Bounded by the receive buffer (sock_queue_err_skb), sk_err still set.
    u.setsockopt(C.IPPROTO_IP, C.IP_RECVERR, ONE)
    u.setsockopt(C.SOL_SOCKET, C.SO_RCVBUF, struct.pack("i", 1))   # 2304
    for _ in range(5):
        u.sendto(b"y" * 400, 0, (PEER4, 54))
    _refuse(s, nic)
    assert len(u.errq) == 1 and u.error == errno.ECONNREFUSED


def test_ipv6_recverr_and_ip_recverr_are_separate_switches() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    u = s.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u.setsockopt(C.IPPROTO_IP, C.IP_RECVERR, ONE)   # an IPv6 error checks IPV6_RECVERR
    u.sendto(b"six", 0, (PEER6, 54))
    _refuse(s, nic)
    assert not u.errq and u.error == 0   # (unconnected: not even sk_err)
    u.setsockopt(C.IPPROTO_IPV6, C.IPV6_RECVERR, ONE)
    assert u.getsockopt(C.IPPROTO_IPV6, C.IPV6_RECVERR, 4) == ONE
    u.sendto(b"six", 0, (PEER6, 54))
    _refuse(s, nic)
    r = u.recvmsg(100, C.MSG_ERRQUEUE)
    assert r.data == b"six" and r.addr == (PEER6, 54, 0, 0)
    assert (r.ee.errno, r.ee.origin, r.ee.type, r.ee.code, str(r.ee.offender)) == (
        errno.ECONNREFUSED, C.SO_EE_ORIGIN_ICMP6, 1, 4, PEER6)


def test_recverr_local_emsgsize_entry() -> None:
    """ip_local_error: over the path MTU with DF, an SO_EE_ORIGIN_LOCAL entry
    (no payload, ee_info = MTU, no offender, inet_dport); its dequeue does not
    clear sk_err, but re-arms it when an ICMP entry follows."""
    s, nic = make_stack()
    learn_peer(s, nic)
    u = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(C.IPPROTO_IP, C.IP_RECVERR, ONE)
    u.setsockopt(C.IPPROTO_IP, C.IP_MTU_DISCOVER, struct.pack("i", C.IP_PMTUDISC_DO))
    assert errno_of(u.sendto, b"x" * 1473, 0, (PEER4, 54)) == errno.EMSGSIZE
    assert u.error == 0
    u.sendto(b"y", 0, (PEER4, 54))
    _refuse(s, nic)
    assert int.from_bytes(u.getsockopt(1, 4, 4), "little") == errno.ECONNREFUSED  # cleared
    r = u.recvmsg(10, C.MSG_ERRQUEUE)
    assert (r.data, r.addr) == (b"", (PEER4, 0))
    assert (r.ee.errno, r.ee.origin, r.ee.info, r.ee.offender) == (
        errno.EMSGSIZE, C.SO_EE_ORIGIN_LOCAL, 1500, None)
    assert u.error == errno.ECONNREFUSED   # the ICMP entry behind it re-arms sk_err
    assert u.recvmsg(10, C.MSG_ERRQUEUE).data == b"y" and u.error == 0
