"""IPv6, NDP (NS/NA, DAD, RS/RA) and ICMPv6 behaviour of the Stack."""

from __future__ import annotations

import ipaddress
import socket

from scapy.layers.inet import UDP  # type: ignore[import-untyped]
from scapy.layers.inet6 import (  # type: ignore[import-untyped]
    HBHOptUnknown,
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_RS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptMTU,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6PacketTooBig,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrRouting,
    fragment6,
)
from scapy.layers.l2 import Ether  # type: ignore[import-untyped]
from scapy.packet import Raw  # type: ignore[import-untyped]

from netvisor.tcpip.counters import DropReason
from netvisor.tcpip.neighbor import NeighborState
from netvisor.tcpip.nic import AddrState

from .helpers import (
    OUR6,
    OUR_MAC,
    PEER6,
    PEER_LL,
    PEER_MAC,
    feed,
    learn_peer,
    mac,
    make_stack,
    sent,
    tick,
)

ip = ipaddress.ip_address
E = Ether(src=PEER_MAC, dst=OUR_MAC)
OUR_LL = "fe80::ff:fe00:1"  # EUI-64 of 02:00:00:00:00:01


def test_link_local_from_eui64() -> None:
    s, nic = make_stack()
    assert ipaddress.ip_interface(f"{OUR_LL}/64") in s.addresses(nic)


def test_neighbor_solicitation_answered_with_solicited_override_na() -> None:
    s, nic = make_stack()
    feed(s, nic, Ether(src=PEER_MAC, dst="33:33:ff:00:00:02") /
         IPv6(src=PEER6, dst="ff02::1:ff00:2", hlim=255) / ICMPv6ND_NS(tgt=OUR6) /
         ICMPv6NDOptSrcLLAddr(lladdr=PEER_MAC))
    (na,) = sent(s, nic)
    assert na[Ether].dst == PEER_MAC and na[IPv6].dst == PEER6 and na[IPv6].hlim == 255
    assert na[ICMPv6ND_NA].tgt == OUR6 and na[ICMPv6ND_NA].S == 1 and na[ICMPv6ND_NA].O == 1
    assert na[ICMPv6ND_NA].R == 0 and na[ICMPv6NDOptDstLLAddr].lladdr == OUR_MAC
    assert IPv6(bytes(na[IPv6]))[ICMPv6ND_NA].cksum == na[ICMPv6ND_NA].cksum
    e = s.nics[nic].ndp.get(ip(PEER6))  # type: ignore[union-attr]
    assert e.state is NeighborState.STALE and e.mac == mac(PEER_MAC)  # type: ignore[union-attr]


def test_ns_with_wrong_hop_limit_is_invalid() -> None:
    s, nic = make_stack()
    feed(s, nic, Ether(src=PEER_MAC, dst="33:33:ff:00:00:02") /
         IPv6(src=PEER6, dst="ff02::1:ff00:2", hlim=64) / ICMPv6ND_NS(tgt=OUR6))
    assert sent(s, nic) == []
    assert s.counters.drops[DropReason.NDP_INVALID] == 1


def test_address_resolution_by_ns_then_na() -> None:
    s, nic = make_stack()
    u = s.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u.sendto(b"hi", 0, (PEER6, 7))
    (ns,) = sent(s, nic)
    assert ns[IPv6].dst == "ff02::1:ff00:1" and ns[Ether].dst == "33:33:ff:00:00:01"
    assert ns[ICMPv6ND_NS].tgt == PEER6 and ns[ICMPv6NDOptSrcLLAddr].lladdr == OUR_MAC
    feed(s, nic, E / IPv6(src=PEER6, dst=OUR6, hlim=255) / ICMPv6ND_NA(tgt=PEER6, S=1, O=1) /
         ICMPv6NDOptDstLLAddr(lladdr=PEER_MAC))
    (out,) = sent(s, nic)
    assert out[UDP].dport == 7 and out[Ether].dst == PEER_MAC


def test_dad_sends_ns_from_unspecified_then_address_is_usable() -> None:
    s, nic = make_stack(dad=True)
    assert s.is_tentative(ip(OUR6))
    # A tentative address does not answer.
    feed(s, nic, E / IPv6(src=PEER6, dst=OUR6) / ICMPv6EchoRequest())
    assert s.counters.drops[DropReason.TENTATIVE_ADDRESS] == 1
    tick(s, 1.0)
    dad = [f for f in sent(s, nic) if ICMPv6ND_NS in f]
    targets = {f[ICMPv6ND_NS].tgt for f in dad}
    assert targets == {OUR6, OUR_LL}
    assert all(f[IPv6].src == "::" and ICMPv6NDOptSrcLLAddr not in f for f in dad)
    tick(s, 2.1)
    assert not s.tentative_addresses()
    rs = [f for f in sent(s, nic) if ICMPv6ND_RS in f]
    assert len(rs) == 1 and rs[0][IPv6].dst == "ff02::2"  # RFC 4861 6.3.7


def test_dad_conflict_removes_address() -> None:
    s, nic = make_stack(dad=True)
    feed(s, nic, Ether(src=PEER_MAC, dst="33:33:00:00:00:01") /
         IPv6(src=OUR6, dst="ff02::1", hlim=255) / ICMPv6ND_NA(tgt=OUR6, S=0, O=1) /
         ICMPv6NDOptDstLLAddr(lladdr=PEER_MAC))
    assert not s.is_local_address(ip(OUR6))
    assert s.counters.events["dad_failed"] == 1


def test_dad_conflict_by_someone_elses_dad_ns() -> None:
    s, nic = make_stack(dad=True)
    feed(s, nic, Ether(src=PEER_MAC, dst="33:33:ff:00:00:02") /
         IPv6(src="::", dst="ff02::1:ff00:2", hlim=255) / ICMPv6ND_NS(tgt=OUR6))
    assert not s.is_local_address(ip(OUR6))


def test_router_advertisement_sets_default_route_prefix_and_mtu() -> None:
    s, nic = make_stack()
    ra = (Ether(src=PEER_MAC, dst="33:33:00:00:00:01") /
          IPv6(src=PEER_LL, dst="ff02::1", hlim=255) /
          ICMPv6ND_RA(routerlifetime=1800, chlim=42) / ICMPv6NDOptSrcLLAddr(lladdr=PEER_MAC) /
          ICMPv6NDOptMTU(mtu=1400) /
          ICMPv6NDOptPrefixInfo(prefix="2001:db8:5::", prefixlen=64, L=1, A=1,
                                validlifetime=3600, preferredlifetime=1800))
    feed(s, nic, ra)
    r = s.route(ip("2001:db8:99::1"))
    assert r.next_hop == ip(PEER_LL) and r.mtu == 1400
    slaac = ipaddress.ip_interface("2001:db8:5::ff:fe00:1/64")
    assert slaac in s.addresses(nic) and s.is_tentative(slaac.ip) is False
    assert s.route(ip("2001:db8:5::9")).next_hop is None  # on-link prefix
    assert s.nics[nic].hop_limit == 42
    tick(s, 1800.5, step=100)
    assert s.nics[nic].v6_addr(slaac.ip).state is AddrState.DEPRECATED  # type: ignore[union-attr]
    tick(s, 1801, step=1)
    assert s.routes.lookup(ip("2001:db8:99::1"), now=s.now) is None  # router lifetime over


def test_echo_v6_and_link_local() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    feed(s, nic, E / IPv6(src=PEER6, dst=OUR6) / ICMPv6EchoRequest(id=3, seq=4, data=b"pp"))
    feed(s, nic, E / IPv6(src=PEER_LL, dst=OUR_LL) / ICMPv6EchoRequest(id=5, seq=6, data=b"q"))
    a, b = sent(s, nic)
    assert a[IPv6].src == OUR6 and a[ICMPv6EchoReply].id == 3 and a[ICMPv6EchoReply].data == b"pp"
    assert b[IPv6].src == OUR_LL and b[IPv6].dst == PEER_LL and b[ICMPv6EchoReply].seq == 6
    assert IPv6(bytes(a[IPv6]))[ICMPv6EchoReply].cksum == a[ICMPv6EchoReply].cksum


def test_large_echo_v6_fragmented_both_ways() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    payload = bytes(range(256)) * 234
    req = IPv6(src=PEER6, dst=OUR6) / IPv6ExtHdrFragment(id=77) / ICMPv6EchoRequest(data=payload)
    for f in fragment6(req, 1280)[::-1]:
        feed(s, nic, E / f)
    out = sent(s, nic)
    assert len(out) > 40 and all(IPv6ExtHdrFragment in f and len(f[IPv6]) <= 1500 for f in out)
    ids = {f[IPv6ExtHdrFragment].id for f in out}
    assert len(ids) == 1
    body = b"".join(bytes(f[IPv6ExtHdrFragment].payload)
                    for f in sorted(out, key=lambda f: f[IPv6ExtHdrFragment].offset))
    assert body[0] == 129 and body[8:] == payload


def test_overlapping_v6_fragments_discard_datagram() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    data = b"x" * 64
    hdr = IPv6(src=PEER6, dst=OUR6)
    feed(s, nic, E / hdr / IPv6ExtHdrFragment(nh=17, offset=0, m=1, id=1) / data[:32])
    feed(s, nic, E / hdr / IPv6ExtHdrFragment(nh=17, offset=3, m=0, id=1) / data[24:])
    assert s.counters.drops[DropReason.FRAG_OVERLAP] == 1
    assert sent(s, nic) == []


def test_unknown_next_header_param_problem_points_at_the_field() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    feed(s, nic, E / IPv6(src=PEER6, dst=OUR6, nh=253) / Raw(b"z" * 8))
    feed(s, nic, E / IPv6(src=PEER6, dst=OUR6) / IPv6ExtHdrDestOpt(nh=253) / Raw(b"z" * 8))
    a, b = sent(s, nic)
    assert (a[ICMPv6ParamProblem].code, a[ICMPv6ParamProblem].ptr) == (1, 6)
    assert (b[ICMPv6ParamProblem].code, b[ICMPv6ParamProblem].ptr) == (1, 40)


def test_unknown_option_action_bits() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)

    def pkt(otype: int, dst: str = OUR6) -> object:
        return E / IPv6(src=PEER6, dst=dst) / IPv6ExtHdrDestOpt(
            nh=17, options=[HBHOptUnknown(otype=otype, optdata=b"ab")]) / UDP(dport=9)

    feed(s, nic, pkt(0x1E))  # 00: skip -> goes on to UDP (port unreachable)
    (r,) = sent(s, nic)
    assert ICMPv6DestUnreach in r and r[ICMPv6DestUnreach].code == 4
    feed(s, nic, pkt(0x5E))  # 01: discard silently
    assert sent(s, nic) == []
    feed(s, nic, pkt(0x9E))  # 10: discard + param problem code 2
    (r,) = sent(s, nic)
    assert (r[ICMPv6ParamProblem].code, r[ICMPv6ParamProblem].ptr) == (2, 42)
    feed(s, nic, pkt(0xDE, dst="ff02::1"))  # 11 to multicast: no error
    assert sent(s, nic) == []


def test_routing_header_with_segments_left_is_refused() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    feed(s, nic, E / IPv6(src=PEER6, dst=OUR6) /
         IPv6ExtHdrRouting(addresses=["fd00::9"], segleft=1) / UDP(dport=9))
    (r,) = sent(s, nic)
    assert (r[ICMPv6ParamProblem].code, r[ICMPv6ParamProblem].ptr) == (0, 42)


def test_v6_reassembly_timeout_time_exceeded() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    feed(s, nic, E / IPv6(src=PEER6, dst=OUR6) / IPv6ExtHdrFragment(nh=17, offset=0, m=1, id=9) /
         (b"u" * 64))
    tick(s, 59.9)
    assert sent(s, nic) == []
    tick(s, 60.1)
    (r,) = sent(s, nic)
    assert (r[ICMPv6TimeExceeded].type, r[ICMPv6TimeExceeded].code) == (3, 1)


def test_packet_too_big_lowers_path_mtu_and_reaches_udp() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    u = s.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u.sendto(b"x" * 1400, 0, (PEER6, 9))
    (out,) = sent(s, nic)
    feed(s, nic, E / IPv6(src=PEER6, dst=OUR6) / ICMPv6PacketTooBig(mtu=1280) /
         bytes(out[IPv6])[:1000])
    assert s.route(ip(PEER6)).mtu == 1280
    u.sendto(b"x" * 1400, 0, (PEER6, 9))
    assert len(sent(s, nic)) == 2


def test_port_unreachable_v6_reaches_connected_socket() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    u = s.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u.connect((PEER6, 9))
    u.send(b"x")
    (out,) = sent(s, nic)
    feed(s, nic, E / IPv6(src=PEER6, dst=OUR6) / ICMPv6DestUnreach(code=4) / bytes(out[IPv6]))
    import errno
    assert int.from_bytes(u.getsockopt(1, 4, 4), "little") == errno.ECONNREFUSED


def test_redirect_from_current_router_installs_host_route() -> None:
    from scapy.layers.inet6 import ICMPv6ND_Redirect  # type: ignore[import-untyped]

    s, nic = make_stack()
    learn_peer(s, nic)
    s.add_route("::/0", gateway=PEER_LL, nic_id=nic)
    better = "fe80::7"
    red = (E / IPv6(src=PEER_LL, dst=OUR_LL, hlim=255) /
           ICMPv6ND_Redirect(tgt=better, dst="2001:db8::42") /
           ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:07"))
    feed(s, nic, red)
    assert s.route(ip("2001:db8::42")).next_hop == ip(better)
    assert s.route(ip("2001:db8::43")).next_hop == ip(PEER_LL)
    assert s.nics[nic].ndp.get(ip(better)).mac == mac("02:00:00:00:00:07")  # type: ignore[union-attr]
    # From someone who is not our router for that destination: ignored.
    feed(s, nic, E / IPv6(src="fe80::66", dst=OUR_LL, hlim=255) /
         ICMPv6ND_Redirect(tgt="fe80::8", dst="2001:db8::44"))
    assert s.route(ip("2001:db8::44")).next_hop == ip(PEER_LL)


def test_router_that_stops_being_one_leaves_the_default_router_list() -> None:
    s, nic = make_stack()
    feed(s, nic, Ether(src=PEER_MAC, dst="33:33:00:00:00:01") /
         IPv6(src=PEER_LL, dst="ff02::1", hlim=255) / ICMPv6ND_RA(routerlifetime=1800) /
         ICMPv6NDOptSrcLLAddr(lladdr=PEER_MAC))
    assert s.route(ip("2001:db8::1")).next_hop == ip(PEER_LL)
    feed(s, nic, E / IPv6(src=PEER_LL, dst=OUR_LL, hlim=255) /
         ICMPv6ND_NA(tgt=PEER_LL, R=0, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=PEER_MAC))
    assert s.routes.lookup(ip("2001:db8::1"), now=s.now) is None


def test_first_fragment_without_whole_header_chain_is_refused() -> None:
    s, nic = make_stack()
    learn_peer(s, nic)
    # First fragment carrying only 8 bytes of a Destination Options header whose
    # length says 16, then the UDP header in the next fragment (RFC 7112).
    dest = bytes([17, 1]) + bytes(14)  # 16-byte DestOpt header, next header UDP
    feed(s, nic, E / IPv6(src=PEER6, dst=OUR6) /
         IPv6ExtHdrFragment(nh=60, offset=0, m=1, id=3) / dest[:8])
    (r,) = sent(s, nic)
    assert (r[ICMPv6ParamProblem].code, r[ICMPv6ParamProblem].ptr) == (3, 0)


def test_router_advertisement_floods_are_bounded() -> None:
    s, nic = make_stack()
    for i in range(40):
        feed(s, nic, Ether(src=PEER_MAC, dst="33:33:00:00:00:01") /
             IPv6(src=PEER_LL, dst="ff02::1", hlim=255) / ICMPv6ND_RA(routerlifetime=0) /
             ICMPv6NDOptPrefixInfo(prefix=f"2001:db8:{i:x}::", prefixlen=64, L=1, A=1,
                                   validlifetime=3600, preferredlifetime=1800))
    slaac = [a for a in s.addresses(nic) if str(a).startswith("2001:db8:")]
    assert len(slaac) == 16  # Linux max_addresses
