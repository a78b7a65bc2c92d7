"""IGMP/MLD host side: answers to queries, IGMPv2 compatibility (RFC 3376 7, RFC 3810 6)."""

from __future__ import annotations

import ipaddress
import socket
import struct
import warnings

from scapy.layers.inet import IP  # type: ignore[import-untyped]
from scapy.layers.inet6 import ICMPv6MLQuery2, ICMPv6MLReport2, IPv6  # type: ignore[import-untyped]
from scapy.layers.l2 import Ether  # type: ignore[import-untyped]

from netvisor.tcpip import consts as C

from .helpers import OUR4, PEER4, PEER_MAC, feed, make_stack, sent, tick

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from scapy.contrib.igmp import IGMP  # type: ignore[import-untyped]
    from scapy.contrib.igmpv3 import IGMPv3, IGMPv3mq, IGMPv3mr  # type: ignore[import-untyped]


def joined_stack():  # type: ignore[no-untyped-def]
    s, nic = make_stack()
    u = s.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(C.IPPROTO_IP, C.IP_ADD_MEMBERSHIP,
                 ipaddress.ip_address("239.2.2.2").packed + ipaddress.ip_address(OUR4).packed)
    v = s.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    v.setsockopt(C.IPPROTO_IPV6, C.IPV6_JOIN_GROUP,
                 ipaddress.ip_address("ff05::7").packed + struct.pack("I", nic))
    tick(s, 0.0)
    sent(s, nic)
    return s, nic, (u, v)


def test_igmpv3_general_query_is_answered_within_max_response_time() -> None:
    s, nic, _keep = joined_stack()
    q = (Ether(src=PEER_MAC, dst="01:00:5e:00:00:01") / IP(src=PEER4, dst="224.0.0.1", ttl=1) /
         IGMPv3(type=0x11, mrcode=20) / IGMPv3mq())
    feed(s, nic, q)
    tick(s, 2.0)  # Max Resp Code 20 = 2 s
    (rep,) = [f for f in sent(s, nic) if IP in f]
    recs = rep[IGMPv3mr].records
    assert [(r.maddr, r.rtype) for r in recs] == [("239.2.2.2", 2)]  # MODE_IS_EXCLUDE


def test_igmpv2_query_switches_to_v2_reports() -> None:
    s, nic, _keep = joined_stack()
    q = (Ether(src=PEER_MAC, dst="01:00:5e:00:00:01") / IP(src=PEER4, dst="224.0.0.1", ttl=1) /
         IGMP(type=0x11, mrcode=10, gaddr="0.0.0.0"))
    feed(s, nic, q)
    tick(s, 1.0)
    (rep,) = [f for f in sent(s, nic) if IP in f]
    assert rep[IP].dst == "239.2.2.2" and bytes(rep[IP].payload)[0] == 0x16  # v2 report


def test_mld_query_is_answered() -> None:
    s, nic, _keep = joined_stack()
    feed(s, nic, Ether(src=PEER_MAC, dst="33:33:00:00:00:01") /
         IPv6(src="fe80::9", dst="ff02::1", hlim=1) / ICMPv6MLQuery2(mrd=1000))
    tick(s, 1.0)
    (rep,) = sent(s, nic)
    assert rep[ICMPv6MLReport2].records_number == 3
    # scapy chains the records as payloads of the first one
    groups = {r.dst for r in rep[ICMPv6MLReport2].records[0].iterpayloads() if hasattr(r, "dst")}
    assert "ff05::7" in groups and "ff02::1" not in groups
    assert any(g.startswith("ff02::1:ff") for g in groups)  # solicited-node groups too
