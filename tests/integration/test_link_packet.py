"""AF_PACKET endpoint on a veth, and offload (vnet header) behaviour of TAP and
AF_PACKET against the Linux kernel, each in a namespace made by the test.

Topology: namespace N holds a veth pair nvlA (ours, no address) <-> nvlB
(kernel, 10.199.x.1/24), or a TAP whose kernel side is 10.199.x.1/24. The
test plays 10.199.x.2 with scapy-built frames.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import ARP, Ether

from netvisor.frame import GSO_NONE, GSO_TCPV4, Frame
from netvisor.link.endpoint import LinkEndpoint
from netvisor.link.netns import in_netns
from netvisor.link.packet import PacketEndpoint, device_does_tso
from netvisor.link.tap import TapEndpoint
from netvisor.tcpip.wire.checksum import fold, pseudo_header_sum
from tests.integration.test_link_tap import read_until
from tests.nsutil import Netns, veth_pair

pytestmark = pytest.mark.namespaces

US = "10.199.{n}.2"
KERNEL = "10.199.{n}.1"


def veth_setup(make_netns: Callable[[str], Netns], n: int) -> tuple[Netns, bytes]:
    ns = make_netns("nvl")
    veth_pair(ns, "nvlA", ns, "nvlB")
    ns.ip("addr", "add", f"{KERNEL.format(n=n)}/24", "dev", "nvlB")
    ns.run(["sysctl", "-qw", "net.ipv6.conf.nvlA.disable_ipv6=1"], check=False)
    with in_netns(ns.path):
        from netvisor.link import _ifctl
        kmac = _ifctl.get_hwaddr("nvlB")
    return ns, kmac


@pytest.mark.parametrize("vnet_hdr", [None, False], ids=["auto-vnet", "plain"])
def test_arp_and_ping_over_veth(make_netns: Callable[[str], Netns],
                                vnet_hdr: bool | None) -> None:
    ns, kmac = veth_setup(make_netns, 20)
    with PacketEndpoint("nvlA", netns=ns.path, vnet_hdr=vnet_hdr) as ep:
        # veth does TSO, so auto turns the vnet header on.
        assert ep.capabilities.vnet_hdr == (vnet_hdr is None)
        assert ep.mac == ep.device_mac and ep.ifindex > 0 and ep.mtu == 1500
        req = Ether(src=ep.mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
            op=1, hwsrc=ep.mac, psrc=US.format(n=20), pdst=KERNEL.format(n=20))
        assert ep.write_batch([Frame(bytes(req))]) == 1
        arp = Ether(bytes(read_until(ep, lambda f: Ether(bytes(f.data)).haslayer(ARP)).data))
        assert arp[ARP].op == 2 and arp[ARP].hwsrc == kmac.hex(":")
        ping = (Ether(src=ep.mac, dst=kmac) / IP(src=US.format(n=20), dst=KERNEL.format(n=20))
                / ICMP(id=1, seq=1) / (b"p" * 1000))
        ep.write_batch([Frame(bytes(ping))])
        reply = Ether(bytes(read_until(
            ep, lambda f: Ether(bytes(f.data)).haslayer(ICMP)).data))
        assert reply[ICMP].type == 0 and bytes(reply[ICMP].payload) == b"p" * 1000


def test_device_probe_and_other_mac(make_netns: Callable[[str], Netns]) -> None:
    ns, kmac = veth_setup(make_netns, 21)
    with in_netns(ns.path):
        assert device_does_tso("nvlA")
        assert not device_does_tso("nvlnothere")
    mac = b"\x02\x11\x22\x33\x44\x55"
    with PacketEndpoint("nvlA", netns=ns.path, mac=mac) as ep:
        assert ep.mac == mac and ep.device_mac != mac
        ping = (Ether(src=mac, dst=kmac) / IP(src=US.format(n=21), dst=KERNEL.format(n=21))
                / ICMP(id=2, seq=1))
        ns.ip("neigh", "replace", US.format(n=21), "lladdr", mac.hex(":"), "dev", "nvlB")
        ep.write_batch([Frame(bytes(ping))])
        reply = Ether(bytes(read_until(
            ep, lambda f: Ether(bytes(f.data)).haslayer(ICMP)).data))
        assert reply.dst == mac.hex(":")  # frames for a MAC not the device's still arrive
    with pytest.raises(OSError):
        PacketEndpoint("nvlnothere", netns=ns.path)


# ---------------------------------------------------------------------------- offloads

def _endpoint(kind: str, make_netns: Callable[[str], Netns],
              n: int) -> tuple[Netns, LinkEndpoint, bytes, str]:
    if kind == "tap":
        ns = make_netns("nvl")
        tap = TapEndpoint("nvlot0", netns=ns.path, vnet_hdr=True)
        ns.ip("addr", "add", f"{KERNEL.format(n=n)}/24", "dev", tap.name)
        return ns, tap, tap.kernel_mac, tap.name
    ns, kmac = veth_setup(make_netns, n)
    return ns, PacketEndpoint("nvlA", netns=ns.path, vnet_hdr=True), kmac, "nvlB"


@pytest.mark.parametrize("kind", ["tap", "packet"])
def test_kernel_sends_gso_frames(make_netns: Callable[[str], Netns], kind: str) -> None:
    """A kernel TCP burst arrives as TSO super-frames with partial checksums."""
    n = 30 if kind == "tap" else 31
    ns, ep, kmac, kdev = _endpoint(kind, make_netns, n)
    try:
        ns.ip("neigh", "replace", US.format(n=n), "lladdr", ep.mac.hex(":"), "dev", kdev)
        script = ("import socket,time\n"
                  f"s=socket.create_connection(('{US.format(n=n)}',5001),timeout=5)\n"
                  "s.sendall(b'z'*400000)\ntime.sleep(3)\n")
        client = ns.popen(["python3", "-c", script])
        syn = Ether(bytes(read_until(ep, lambda f: _tcp_flags(f) == "S").data))
        ep.write_batch([Frame(bytes(
            Ether(src=ep.mac, dst=kmac) / IP(src=US.format(n=n), dst=KERNEL.format(n=n))
            / TCP(sport=5001, dport=syn[TCP].sport, flags="SA", seq=1000,
                  ack=syn[TCP].seq + 1, window=65535, options=[("MSS", 1460), ("WScale", 10)])))])
        gso = read_until(ep, lambda f: f.gso_type != GSO_NONE, timeout=5)
        assert gso.gso_type == GSO_TCPV4 and gso.gso_size == 1460 and len(gso.data) > 1514
        assert (gso.csum_start, gso.csum_offset, gso.csum_valid) == (34, 16, True)
        client.kill()
    finally:
        ep.close()


def _tcp_flags(frame: Frame) -> str | None:
    pkt = Ether(bytes(frame.data))
    return str(pkt[TCP].flags) if pkt.haslayer(TCP) else None


def _tcp_partial(src: str, dst: str, tcp: bytes) -> bytes:
    """``tcp`` with its checksum field set to the pseudo-header sum (NEEDS_CSUM)."""
    psum = fold(pseudo_header_sum(ipaddress.ip_address(src), ipaddress.ip_address(dst),
                                  6, len(tcp)))
    return tcp[:16] + struct.pack("!H", psum) + tcp[18:]


@pytest.mark.parametrize("kind", ["tap", "packet"])
def test_we_send_tso_frame_and_partial_checksum(make_netns: Callable[[str], Netns],
                                                 kind: str) -> None:
    """One 3000-byte TCP super-frame (gso_size 1000, NEEDS_CSUM) reaches a kernel socket."""
    n = 32 if kind == "tap" else 33
    ns, ep, kmac, kdev = _endpoint(kind, make_netns, n)
    us, kernel = US.format(n=n), KERNEL.format(n=n)
    try:
        ns.ip("neigh", "replace", us, "lladdr", ep.mac.hex(":"), "dev", kdev)
        server = ns.popen(["python3", "-c",
                           ("import socket\n"
                           "l=socket.socket();l.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                           f"l.bind(('{kernel}',6000));l.listen();print('up',flush=True)\n"
                           "c,_=l.accept();d=b''\n"
                           "while len(d)<3000:\n"
                           "    x=c.recv(65536)\n"
                           "    if not x: break\n"
                           "    d+=x\n"
                           "print(len(d),d==bytes(range(200))*15,flush=True)\n")],
                          stdout=-1)
        assert server.stdout is not None and server.stdout.readline().strip() == b"up"
        ip = IP(src=us, dst=kernel)
        syn = Ether(src=ep.mac, dst=kmac) / ip / TCP(sport=40000, dport=6000, flags="S",
                                                     seq=500, window=65535,
                                                     options=[("MSS", 1000)])
        ep.write_batch([Frame(bytes(syn))])
        synack = Ether(bytes(read_until(ep, lambda f: _tcp_flags(f) == "SA").data))
        ack = synack[TCP].seq + 1
        payload = bytes(range(200)) * 15
        tcp = bytes(TCP(sport=40000, dport=6000, flags="A", seq=501, ack=ack, window=65535,
                        chksum=0) / payload)
        tcp = _tcp_partial(us, kernel, tcp)
        ip_hdr = bytes(IP(src=us, dst=kernel, proto=6, len=20 + len(tcp)))[:20]
        eth = bytes(Ether(src=ep.mac, dst=kmac, type=0x0800))
        big = Frame(eth + ip_hdr + tcp, csum_start=34, csum_offset=16,
                    gso_type=GSO_TCPV4, gso_size=1000, hdr_len=54)
        assert len(big) > ep.mtu + 14  # only the GSO metadata lets this through
        assert ep.write_batch([big]) == 1
        assert ep.stats.tx_errors == 0  # type: ignore[attr-defined]
        out, _ = server.communicate(timeout=10)
        assert out.split() == [b"3000", b"True"]
    finally:
        ep.close()


def test_outgoing_filter_fallback(make_netns: Callable[[str], Netns]) -> None:
    """Where PACKET_IGNORE_OUTGOING is missing, our own frames are skipped by hand."""
    ns, kmac = veth_setup(make_netns, 22)
    with PacketEndpoint("nvlA", netns=ns.path, vnet_hdr=False) as ep:
        assert ep._sock is not None
        ep._sock.setsockopt(263, 23, 0)  # as on Linux < 4.20
        ep._filter_outgoing = True
        ns.ip("neigh", "replace", US.format(n=22), "lladdr", ep.mac.hex(":"), "dev", "nvlB")
        ping = (Ether(src=ep.mac, dst=kmac) / IP(src=US.format(n=22), dst=KERNEL.format(n=22))
                / ICMP(id=3, seq=1))
        ep.write_batch([Frame(bytes(ping))])
        reply = Ether(bytes(read_until(ep, lambda f: Ether(bytes(f.data)).haslayer(ICMP)).data))
        assert reply[ICMP].type == 0  # the echo reply, not our own request read back
