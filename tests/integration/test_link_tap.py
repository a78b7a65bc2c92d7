"""TAP endpoint against the Linux kernel in a namespace made by the test.

The TAP is created inside the namespace (``TapEndpoint(netns=...)``), its
kernel side addressed 10.199.x.1/24; the test plays the host 10.199.x.2
and checks the kernel's ARP and ICMP answers, and GSO frames with offloads.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import ARP, Ether

from netvisor.frame import GSO_NONE, GSO_TCPV4, Frame
from netvisor.link.endpoint import LinkEndpoint
from netvisor.link.tap import TapEndpoint
from tests.nsutil import Netns

pytestmark = pytest.mark.namespaces


def read_until(ep: LinkEndpoint, want: Callable[[Frame], object], timeout: float = 3.0) -> Frame:
    deadline = time.monotonic() + timeout
    fd = ep.fileno()
    assert fd is not None
    while time.monotonic() < deadline:
        select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        for frame in ep.read_batch(64):
            if want(frame):
                return frame
    raise AssertionError("expected frame never came")


def make_tap(ns: Netns, subnet: int, **kwargs: object) -> TapEndpoint:
    tap = TapEndpoint("nvltap0", netns=ns.path, **kwargs)  # type: ignore[arg-type]
    ns.ip("addr", "add", f"10.199.{subnet}.1/24", "dev", tap.name)
    return tap


@pytest.mark.parametrize("vnet_hdr", [False, True], ids=["plain", "vnet"])
def test_arp_and_ping_through_tap(make_netns: Callable[[str], Netns], vnet_hdr: bool) -> None:
    ns = make_netns("nvl")
    tap = make_tap(ns, 10, vnet_hdr=vnet_hdr)
    try:
        assert tap.name == "nvltap0" and tap.ifindex > 0 and len(tap.kernel_mac) == 6
        assert tap.capabilities.vnet_hdr == vnet_hdr
        assert tap.capabilities.gso_max_size == (65536 if vnet_hdr else 0)
        assert tap.mtu == 1500
        req = Ether(src=tap.mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
            op=1, hwsrc=tap.mac, psrc="10.199.10.2", pdst="10.199.10.1")
        assert tap.write_batch([Frame(bytes(req))]) == 1
        reply = Ether(bytes(read_until(tap, lambda f: Ether(bytes(f.data)).haslayer(ARP)).data))
        assert reply[ARP].op == 2 and reply[ARP].hwsrc == tap.kernel_mac.hex(":")
        assert reply.dst == tap.mac.hex(":")

        pings = [bytes(Ether(src=tap.mac, dst=tap.kernel_mac) / IP(src="10.199.10.2",
                       dst="10.199.10.1") / ICMP(id=7, seq=i) / (b"x" * 100)) for i in range(5)]
        assert tap.write_batch([Frame(p) for p in pings]) == 5
        seqs: set[int] = set()
        deadline = time.monotonic() + 3
        while len(seqs) < 5 and time.monotonic() < deadline:
            select.select([tap.fileno() or -1], [], [], 0.5)
            for f in tap.read_batch(64):
                pkt = Ether(bytes(f.data))
                if pkt.haslayer(ICMP) and pkt[ICMP].type == 0:
                    seqs.add(pkt[ICMP].seq)
        assert seqs == set(range(5))
        assert tap.stats.tx_frames == 6
    finally:
        tap.close()
    # The device we created goes away with its fd.
    assert "nvltap0" not in ns.ip("link", "show")


def test_attach_to_existing_persistent_tap(make_netns: Callable[[str], Netns]) -> None:
    ns = make_netns("nvl")
    ns.ip("tuntap", "add", "dev", "nvltapP", "mode", "tap")
    tap = TapEndpoint("nvltapP", netns=ns.path, mtu=9000)
    try:
        assert tap.mtu == 9000 and "mtu 9000" in ns.ip("link", "show", "nvltapP")
    finally:
        tap.close()
    assert "nvltapP" in ns.ip("link", "show")  # persistent: still there


def test_kernel_tcp_burst_arrives_as_gso_frames(make_netns: Callable[[str], Netns]) -> None:
    """With vnet_hdr + TUNSETOFFLOAD the kernel hands us TSO super-frames."""
    ns = make_netns("nvl")
    tap = make_tap(ns, 11, vnet_hdr=True)
    peer_mac = tap.mac.hex(":")
    ns.ip("neigh", "add", "10.199.11.2", "lladdr", peer_mac, "dev", tap.name)
    # A kernel TCP client connects to our fake peer; we answer the handshake
    # with scapy-built frames and a large window, then watch its data.
    script = ("import socket,time\n"
              "s=socket.create_connection(('10.199.11.2',5001),timeout=5)\n"
              "s.sendall(b'z'*400000)\n"
              "time.sleep(2)\n")
    client = ns.popen(["python3", "-c", script])
    try:
        syn = Ether(bytes(read_until(tap, lambda f: _is_tcp(f, "S")).data))
        seq = 1000
        synack = (Ether(src=tap.mac, dst=tap.kernel_mac)
                  / IP(src="10.199.11.2", dst="10.199.11.1")
                  / TCP(sport=5001, dport=syn[TCP].sport, flags="SA", seq=seq,
                        ack=syn[TCP].seq + 1, window=65535,
                        options=[("MSS", 1460), ("WScale", 10)]))
        tap.write_batch([Frame(bytes(synack))])
        gso = read_until(tap, lambda f: f.gso_type != GSO_NONE, timeout=5)
        assert gso.gso_type == GSO_TCPV4
        assert len(gso.data) > 1514 and 0 < gso.gso_size <= 1460
        assert gso.csum_start == 34 and gso.csum_offset == 16 and gso.csum_valid
        # No TCP options after the handshake (no timestamps offered): 14+20+20.
        assert gso.hdr_len == 54 and gso.gso_size == 1460
    finally:
        client.kill()
        client.wait()
        tap.close()


def _is_tcp(frame: Frame, flags: str) -> bool:
    pkt = Ether(bytes(frame.data))
    return bool(pkt.haslayer(TCP)) and str(pkt[TCP].flags) == flags


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        TapEndpoint("x" * 20)
    with pytest.raises(ValueError):
        TapEndpoint("nvlbad", mac=b"12")
