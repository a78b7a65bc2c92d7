"""IPv4, ARP and ICMPv4 behaviour of the Stack, driven by scapy frames and a fake clock."""

from __future__ import annotations

import errno
import ipaddress
import socket

import pytest
from scapy.layers.inet import ICMP, IP, UDP, fragment  # type: ignore[import-untyped]
from scapy.layers.l2 import ARP, Ether  # type: ignore[import-untyped]
from scapy.packet import Raw  # type: ignore[import-untyped]

from netvisor.tcpip.counters import DropReason
from netvisor.tcpip.errors import NetError
from netvisor.tcpip.neighbor import NeighborState

from .helpers import OUR4, OUR_MAC, PEER4, PEER_MAC, feed, learn_peer, mac, make_stack, sent, tick

ip = ipaddress.ip_address
E = Ether(src=PEER_MAC, dst=OUR_MAC)


def test_arp_request_for_us_is_answered_and_sender_learnt() -> None:
    s, nic = make_stack()
    feed(s, nic, Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff") /
         ARP(op=1, hwsrc=PEER_MAC, psrc=PEER4, pdst=OUR4))
    (reply,) = sent(s, nic)
    assert reply[Ether].dst == PEER_MAC and reply[ARP].op == 2
    assert (reply[ARP].hwsrc, reply[ARP].psrc, reply[ARP].pdst) == (OUR_MAC, OUR4, PEER4)
    e = s.nics[nic].arp.get(ip(PEER4))  # type: ignore[union-attr]
    assert e.state is NeighborState.STALE and e.mac == mac(PEER_MAC)  # type: ignore[union-attr]


def test_arp_request_for_someone_else_is_ignored() -> None:
    s, nic = make_stack()
    feed(s, nic, Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff") /
         ARP(op=1, hwsrc=PEER_MAC, psrc=PEER4, pdst="10.0.0.77"))
    assert sent(s, nic) == []
    assert s.nics[nic].arp.get(ip(PEER4)) is None  # type: ignore[union-attr]


def test_gratuitous_arp_updates_only_existing_entries() -> None:
    s, nic = make_stack()
    garp = Ether(src="02:00:00:00:00:09", dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc="02:00:00:00:00:09", psrc=PEER4, pdst=PEER4)
    feed(s, nic, garp)
    assert s.nics[nic].arp.get(ip(PEER4)) is None  # type: ignore[union-attr]
    feed(s, nic, Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff") /
         ARP(op=1, hwsrc=PEER_MAC, psrc=PEER4, pdst=OUR4))
    sent(s, nic)
    feed(s, nic, garp)
    assert s.nics[nic].arp.get(ip(PEER4)).mac == mac("02:00:00:00:00:09")  # type: ignore[union-attr]


def test_resolution_sends_queued_packets_after_reply() -> None:
    s, nic = make_stack()
    u = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"hello", 0, (PEER4, 9999))
    (req,) = sent(s, nic)
    assert req[ARP].op == 1 and req[Ether].dst == "ff:ff:ff:ff:ff:ff"
    assert (req[ARP].psrc, req[ARP].pdst) == (OUR4, PEER4)
    feed(s, nic, E / ARP(op=2, hwsrc=PEER_MAC, psrc=PEER4, hwdst=OUR_MAC, pdst=OUR4), now=0.3)
    (out,) = sent(s, nic)
    assert out[Ether].dst == PEER_MAC and out[UDP].dport == 9999 and bytes(out[Raw]) == b"hello"
    assert s.nics[nic].arp.get(ip(PEER4)).state is NeighborState.REACHABLE  # type: ignore[union-attr]


def test_unanswered_arp_gives_ehostunreach_after_retries() -> None:
    s, nic = make_stack()
    u = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.connect((PEER4, 9999))
    u.send(b"x")
    requests = len(sent(s, nic))
    t = 0.0
    while t < 2.9:
        t += 0.1
        tick(s, t)
        requests += len([f for f in sent(s, nic) if ARP in f])
    assert requests == 3
    assert not u.poll() & 0x008
    tick(s, 3.05)
    assert u.poll() & 0x008  # POLLERR
    with pytest.raises(NetError) as e:
        u.recv(10)
    assert e.value.errno == errno.EHOSTUNREACH
    assert s.counters.drops[DropReason.NEIGHBOR_FAILED] == 1


def test_neighbour_entry_expires_and_is_re_resolved() -> None:
    s, nic = make_stack()
    u = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"1", 0, (PEER4, 9))
    sent(s, nic)
    feed(s, nic, E / ARP(op=2, hwsrc=PEER_MAC, psrc=PEER4, hwdst=OUR_MAC, pdst=OUR4))
    sent(s, nic)
    tick(s, 200, step=1.0)  # REACHABLE -> STALE -> collected
    assert s.nics[nic].arp.get(ip(PEER4)) is None  # type: ignore[union-attr]
    u.sendto(b"2", 0, (PEER4, 9))
    (req,) = sent(s, nic)
    assert ARP in req and req[ARP].op == 1


def test_echo_request_is_answered() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    feed(s, nic, E / IP(src=PEER4, dst=OUR4, tos=0x10) / ICMP(type=8, id=7, seq=3) / Raw(b"abc"))
    (r,) = sent(s, nic)
    assert r[IP].src == OUR4 and r[IP].dst == PEER4 and r[IP].tos == 0x10
    assert r[ICMP].type == 0 and r[ICMP].id == 7 and r[ICMP].seq == 3 and bytes(r[Raw]) == b"abc"
    # scapy recomputes the checksum: equal means ours was right.
    assert r[ICMP].chksum == ICMP(bytes(r[ICMP])).__class__(bytes(r[ICMP])).chksum
    assert r[IP].chksum == IP(bytes(r[IP])).chksum


def test_broadcast_echo_is_ignored() -> None:
    s, nic = make_stack()
    feed(s, nic, Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff") /
         IP(src=PEER4, dst="10.0.0.255") / ICMP(type=8))
    assert sent(s, nic) == []
    assert s.counters.drops[DropReason.ICMP_IGNORED] == 1


def test_large_echo_reassembled_and_reply_fragmented() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    payload = bytes(range(256)) * 234 + b"xyz"  # 59907 bytes
    req = IP(src=PEER4, dst=OUR4, id=99) / ICMP(type=8, id=1, seq=1) / Raw(payload)
    frags = fragment(req, fragsize=1480)
    for f in reversed(frags):  # out of order
        feed(s, nic, E / f)
    out = sent(s, nic)
    assert len(out) == len(frags)
    assert all(len(f[IP]) <= 1500 and not f[IP].flags.DF for f in out)
    assert [bool(f[IP].flags.MF) for f in out] == [True] * (len(out) - 1) + [False]
    data = b"".join(bytes(f[IP].payload) for f in sorted(out, key=lambda f: f[IP].frag))
    reply = ICMP(data)
    assert reply.type == 0 and bytes(reply.payload) == payload


def test_udp_to_closed_port_gives_port_unreachable_quoting_the_packet() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    pkt = IP(src=PEER4, dst=OUR4) / UDP(sport=5000, dport=4444) / Raw(b"q" * 20)
    feed(s, nic, E / pkt)
    (r,) = sent(s, nic)
    assert r[ICMP].type == 3 and r[ICMP].code == 3
    quoted = bytes(r[ICMP].payload)
    assert quoted == bytes(pkt)
    assert s.counters.drops[DropReason.NO_SOCKET] == 1


def test_unknown_protocol_gives_protocol_unreachable() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    feed(s, nic, E / IP(src=PEER4, dst=OUR4, proto=253) / Raw(b"z" * 8))
    (r,) = sent(s, nic)
    assert (r[ICMP].type, r[ICMP].code) == (3, 2)


def test_no_icmp_error_for_broadcast_or_icmp_errors() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    feed(s, nic, Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff") /
         IP(src=PEER4, dst="255.255.255.255") / UDP(sport=1, dport=4444))
    inner = IP(src=OUR4, dst=PEER4) / UDP(sport=1, dport=2)
    feed(s, nic, E / IP(src=PEER4, dst=OUR4) / ICMP(type=3, code=3) / inner)
    assert sent(s, nic) == []


def test_icmp_errors_are_rate_limited_per_destination() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    for _ in range(20):
        feed(s, nic, E / IP(src=PEER4, dst=OUR4) / UDP(sport=1, dport=4444))
    assert len(sent(s, nic)) == 6  # Linux XRLIM_BURST_FACTOR
    assert s.counters.drops[DropReason.ICMP_RATE_LIMITED] == 14
    feed(s, nic, E / IP(src=PEER4, dst=OUR4) / UDP(sport=1, dport=4444), now=1.0)
    assert len(sent(s, nic)) == 1  # one token per second


def test_reassembly_timeout_sends_time_exceeded_only_with_first_fragment() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    full = IP(src=PEER4, dst=OUR4, id=5) / UDP(sport=1, dport=2) / Raw(b"a" * 3000)
    frags = fragment(full, fragsize=1000)
    feed(s, nic, E / frags[0])
    other = fragment(IP(src=PEER4, dst=OUR4, id=6) / UDP(sport=1, dport=2) / Raw(b"b" * 3000),
                     fragsize=1000)
    feed(s, nic, E / other[1])
    tick(s, 29.9, step=1.0)
    assert sent(s, nic) == []
    tick(s, 30.1, step=0.2)
    (r,) = sent(s, nic)
    assert (r[ICMP].type, r[ICMP].code) == (11, 1)
    assert s.counters.drops[DropReason.FRAG_TIMEOUT] == 2


def test_icmp_port_unreachable_reaches_connected_udp_socket_only() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    c = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.connect((PEER4, 53))
    c.send(b"q")
    u = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"q", 0, (PEER4, 54))
    for out in sent(s, nic):
        feed(s, nic, E / IP(src=PEER4, dst=OUR4) / ICMP(type=3, code=3) / bytes(out[IP])[:28])
    assert not u.poll() & 0x008  # unconnected: ignored (RFC 1122 4.1.3.3 as Linux)
    assert c.poll() & 0x008
    code = int.from_bytes(c.getsockopt(1, 4, 4), "little")  # SO_ERROR
    assert code == errno.ECONNREFUSED
    assert c.getsockopt(1, 4, 4) == b"\x00" * 4  # cleared


def test_fragmentation_needed_lowers_path_mtu() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    s.add_route("0.0.0.0/0", gateway=PEER4)
    u = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"x" * 1400, 0, ("192.0.2.1", 9))
    (out,) = sent(s, nic)
    assert out[IP].flags.DF
    feed(s, nic, E / IP(src=PEER4, dst=OUR4) / ICMP(type=3, code=4, nexthopmtu=1000) /
         bytes(out[IP])[:28])
    assert s.route(ip("192.0.2.1")).mtu == 1000
    u.sendto(b"x" * 1400, 0, ("192.0.2.1", 9))
    assert len(sent(s, nic)) == 2


@pytest.mark.parametrize("garbage", [
    b"", b"\x00" * 13, bytes(14),
    bytes(Ether(dst=OUR_MAC) / IP(src=PEER4, dst=OUR4, ihl=15) / Raw(b"x" * 10))[:40],
    bytes(Ether(dst=OUR_MAC) / IP(src=PEER4, dst=OUR4, len=2000) / Raw(b"x")),
    bytes(Ether(dst=OUR_MAC) / IP(src=PEER4, dst=OUR4, chksum=1) / ICMP()),
    bytes(Ether(dst=OUR_MAC) / IP(src=PEER4, dst=OUR4) / ICMP(chksum=1)),
    bytes(Ether(dst=OUR_MAC) / IP(src=PEER4, dst=OUR4) / UDP(len=3) / Raw(b"abc")),
    bytes(Ether(dst=OUR_MAC) / IP(src=PEER4, dst=OUR4) / UDP(chksum=7) / Raw(b"abc")),
    bytes(Ether(dst=OUR_MAC) / ARP(op=1))[:30],
    bytes(Ether(dst=OUR_MAC, type=0x88b5) / Raw(b"x" * 50)),
])
def test_malformed_frames_are_counted_drops(garbage: bytes) -> None:
    s, nic = make_stack()
    from netvisor.frame import Frame
    s.handle_frame(nic, Frame(garbage), 0.0)
    assert s.counters.total_drops == 1
    assert DropReason.INTERNAL_ERROR not in s.counters.drops


def test_bad_ipv4_option_length_gets_parameter_problem() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    from scapy.layers.inet import IPOption  # type: ignore[import-untyped]
    good = IP(src=PEER4, dst=OUR4, options=[IPOption(b"\x94\x04\x00\x00")]) / ICMP(type=8)
    feed(s, nic, E / good)
    assert ICMP in sent(s, nic)[0]  # Router Alert is fine: echo answered
    raw = bytearray(bytes(IP(src=PEER4, dst=OUR4, options=[IPOption(b"\x07\x07\x04\x00\x00\x00\x00\x00")]) / ICMP(type=8)))
    raw[21] = 40  # the Record Route length runs past the header
    del_csum = IP(bytes(raw))
    del del_csum.chksum
    feed(s, nic, E / IP(bytes(del_csum)))
    (r,) = sent(s, nic)
    assert (r[ICMP].type, r[ICMP].code, r[ICMP].ptr) == (12, 0, 21)


def test_packets_from_our_own_address_on_the_wire_are_martians() -> None:
    s, nic = make_stack()
    feed(s, nic, E / IP(src=OUR4, dst=OUR4) / ICMP(type=8))
    assert sent(s, nic) == []
    assert s.counters.drops[DropReason.BAD_SOURCE] == 1


def test_icmp_redirect_from_gateway_accepted_others_ignored() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    s.add_route("0.0.0.0/0", gateway=PEER4)
    quoted = bytes(IP(src=OUR4, dst="192.0.2.9") / UDP(sport=1, dport=2))
    feed(s, nic, E / IP(src=PEER4, dst=OUR4) / ICMP(type=5, code=1, gw="10.0.0.5") / quoted)
    assert s.route(ip("192.0.2.9")).next_hop == ip("10.0.0.5")
    assert s.route(ip("192.0.2.10")).next_hop == ip(PEER4)
    quoted = bytes(IP(src=OUR4, dst="192.0.2.11") / UDP(sport=1, dport=2))
    feed(s, nic, E / IP(src="10.0.0.77", dst=OUR4) / ICMP(type=5, code=1, gw="10.0.0.5") / quoted)
    assert s.route(ip("192.0.2.11")).next_hop == ip(PEER4)  # not from our gateway
    feed(s, nic, E / IP(src=PEER4, dst=OUR4) / ICMP(type=5, code=1, gw="172.16.0.1") / quoted)
    assert s.route(ip("192.0.2.11")).next_hop == ip(PEER4)  # new gateway not on-link
