"""Testbench for the packet-level conformance suite (packetimpact style).

The testbench (TB) owns one end of a veth whose other end belongs to the device
under test (DUT). It speaks with scapy-built frames through an AF_PACKET socket
opened inside the TB namespace, and drives the DUT's socket calls through the
DUT command server (``dut/server.py``) over a unix socket.

Keeping the TB kernel quiet: the TB speaks from addresses *its kernel does not
own*. The TB veth has no IPv4 address and IPv6 disabled, and the TB frames use
a MAC address that is not the veth's, so every frame the DUT sends to the TB is
``PACKET_OTHERHOST`` for the TB kernel and is dropped before IP sees it (no RST,
no ICMP). Only the AF_PACKET socket sees it. This needs no firewall (no nftables
or iptables on the CI machine) and cannot leak through a missed rule. The DUT
learns the TB's MAC from a permanent neighbour entry (netvisor copies permanent
neighbours from the namespace it takes over) and, as a fallback, from a
responder thread here that answers ARP and NDP for the TB addresses.

Main API: :class:`Testbench` (``send``, ``expect``, ``expect_none``, builders
``ip4``/``ip6``/``ip``), :class:`TCPConn` (handshakes as client or server,
``send``/``expect`` with sequence numbers tracked), :class:`Dut` (remote socket
calls), :class:`DutError`.
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import queue
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw

CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35  # asm-generic/socket.h (SO_TIMESTAMPNS_OLD on 64-bit: struct timespec)

# Timeouts (seconds). A DUT that should answer at once gets EXPECT_TIMEOUT; an
# expect_none() that checks for the absence of a frame waits NONE_TIMEOUT. Both
# are short because the whole suite has a time budget (packetimpact uses 1 s).
EXPECT_TIMEOUT = 1.0
NONE_TIMEOUT = 0.5

_libc = ctypes.CDLL(None, use_errno=True)


def in_netns(ns_name: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on a fresh thread that has joined namespace ``ns_name``.

    Sockets keep the namespace they were created in, so this is how the
    testbench, running in the root namespace, opens sockets in the TB/DUT
    namespaces without moving any thread of its own (Python 3.11 has no
    ``os.setns``).
    """
    result: list[Any] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            fd = os.open(f"/run/netns/{ns_name}", os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns_name}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            error.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0] if result else None


# Legacy ethtool ioctls (linux/ethtool.h): no ethtool binary needed.
SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x17
ETHTOOL_STSO = 0x1F
ETHTOOL_SGSO = 0x24
ETHTOOL_SGRO = 0x2C


def ethtool_set(ns_name: str, ifname: str, cmd: int, value: int) -> None:
    """Set one legacy ethtool flag (TSO, GSO, GRO, TX checksum) in a namespace."""
    import fcntl

    def run() -> None:
        data = ctypes.create_string_buffer(struct.pack("II", cmd, value))
        ifr = struct.pack("16sP", ifname.encode(), ctypes.addressof(data)) + b"\0" * 16
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifr)

    in_netns(ns_name, run)


@dataclass(frozen=True)
class Topology:
    """Names and addresses of one TB/DUT pair (all inside our namespaces)."""

    tb_ns: str
    dut_ns: str
    tb_if: str
    dut_if: str
    dut_mac: str
    tb_mac: str = "02:4e:56:58:00:01"
    tb_ip4: str = "10.247.0.1"
    dut_ip4: str = "10.247.0.2"
    tb_ip6: str = "fd00:4e56:5800::1"
    dut_ip6: str = "fd00:4e56:5800::2"
    # Second TB addresses: no neighbour entry on the DUT and not answered by the
    # responder, so ARP/NDP cases can watch resolution happen.
    tb2_ip4: str = "10.247.0.3"
    tb2_ip6: str = "fd00:4e56:5800::3"
    prefix4: int = 24
    prefix6: int = 64
    dut_ll6: str = ""
    mtu: int = 1500

    def tb_ip(self, family: int) -> str:
        return self.tb_ip4 if family == 4 else self.tb_ip6

    def dut_ip(self, family: int) -> str:
        return self.dut_ip4 if family == 4 else self.dut_ip6

    def af(self, family: int) -> int:
        return socket.AF_INET if family == 4 else socket.AF_INET6


class ExpectError(AssertionError):
    """An expected frame did not come, or an unexpected one came."""


def _pcap_header() -> bytes:
    # pcap global header: magic, v2.4, tz 0, sigfigs 0, snaplen, LINKTYPE_ETHERNET
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)


def _pcap_record(ts: float, frame: bytes) -> bytes:
    sec = int(ts)
    usec = int((ts - sec) * 1e6)
    return struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame


def summarize(frame: bytes | Packet) -> str:
    pkt = frame if isinstance(frame, Packet) else Ether(frame)
    try:
        s = pkt.summary()
    except Exception:  # noqa: BLE001 - summaries are best effort
        s = repr(pkt)
    tcp = pkt.getlayer(TCP)
    if tcp is not None:
        s += f" seq={tcp.seq} ack={tcp.ack} win={tcp.window} len={len(tcp.payload)}"
        if tcp.options:
            s += f" opts={tcp.options}"
    return s


class Testbench:
    """Frames in and out of the TB end of the veth, with a pcap of everything.

    A reader thread receives every frame (except the TB kernel's own outgoing
    ones), writes it to the pcap, answers ARP/NDP for the addresses in
    ``answer`` and queues it for :meth:`expect`.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, topo: Topology, pcap_path: str) -> None:
        self.topo = topo
        self.pcap_path = pcap_path
        # address -> MAC the responder answers with
        self.answer: dict[str, str] = {topo.tb_ip4: topo.tb_mac, topo.tb_ip6: topo.tb_mac}
        self._q: queue.Queue[tuple[float, bytes]] = queue.Queue()
        self._pcap = open(pcap_path, "wb")  # noqa: SIM115 - closed in stop()
        self._pcap.write(_pcap_header())
        self._pcap_lock = threading.Lock()
        self._stop = threading.Event()
        self.seen: list[tuple[float, str]] = []  # (time, summary) of discarded frames

        def open_sock() -> socket.socket:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            s.bind((topo.tb_if, ETH_P_ALL))
            return s

        self.sock: socket.socket = in_netns(topo.tb_ns, open_sock)
        self.sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._reader, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ io
    def _record(self, frame: bytes, wall: float | None = None) -> None:
        with self._pcap_lock:
            if not self._pcap.closed:
                self._pcap.write(_pcap_record(time.time() if wall is None else wall, frame))

    def _reader(self) -> None:
        while not self._stop.is_set():
            try:
                data, anc, _flags, addr = self.sock.recvmsg(262144, 64)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            arrived = self._arrival(anc)
            self._record(data, arrived[1])
            try:
                if self._respond(data):
                    continue
            except Exception:  # noqa: BLE001 - a malformed frame is simply not answered
                pass
            self._q.put((arrived[0], data))

    @staticmethod
    def _arrival(anc: list[tuple[int, int, bytes]]) -> tuple[float, float]:
        """(monotonic, wall) arrival time, from the kernel's receive timestamp.

        Timing cases (RTO and probe backoff) compare gaps of a few hundred
        milliseconds; a kernel timestamp keeps a busy Python thread from
        skewing them. The wall-clock stamp is moved onto the monotonic clock.
        """
        now_mono, now_wall = time.monotonic(), time.time()
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(payload) >= 16:
                sec, nsec = struct.unpack_from("qq", payload)
                wall = sec + nsec / 1e9
                return now_mono - (now_wall - wall), wall
        return now_mono, now_wall

    def _respond(self, data: bytes) -> bool:
        """Answer ARP requests and neighbour solicitations for TB addresses."""
        if len(data) < 14:
            return False
        etype = struct.unpack_from("!H", data, 12)[0]
        if etype == 0x0806:
            pkt = Ether(data)
            arp = pkt[ARP]
            if arp.op == 1 and arp.pdst in self.answer:
                mac = self.answer[arp.pdst]
                self.send_raw(bytes(
                    Ether(src=mac, dst=arp.hwsrc)
                    / ARP(op=2, hwsrc=mac, psrc=arp.pdst, hwdst=arp.hwsrc, pdst=arp.psrc)))
                return True
        elif etype == 0x86DD and len(data) > 54 and data[20] == 58 and data[54] == 135:
            pkt = Ether(data)
            ns = pkt[ICMPv6ND_NS]
            if ns.tgt in self.answer and pkt[IPv6].src != "::":
                mac = self.answer[ns.tgt]
                self.send_raw(bytes(
                    Ether(src=mac, dst=pkt.src)
                    / IPv6(src=ns.tgt, dst=pkt[IPv6].src, hlim=255)
                    / ICMPv6ND_NA(tgt=ns.tgt, R=0, S=1, O=1)
                    / ICMPv6NDOptDstLLAddr(lladdr=mac)))
                return True
        return False

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()
        with self._pcap_lock:
            self._pcap.close()

    def send_raw(self, frame: bytes) -> None:
        self._record(frame)
        self.sock.send(frame)

    def send(self, pkt: Packet) -> Packet:
        """Send ``pkt``, adding an Ethernet header TB -> DUT if it has none."""
        if not isinstance(pkt, Ether):
            pkt = Ether(src=self.topo.tb_mac, dst=self.topo.dut_mac) / pkt
        self.send_raw(bytes(pkt))
        return pkt

    # ------------------------------------------------------------ builders
    def ip4(self, **kw: Any) -> IP:
        kw.setdefault("src", self.topo.tb_ip4)
        kw.setdefault("dst", self.topo.dut_ip4)
        return IP(**kw)

    def ip6(self, **kw: Any) -> IPv6:
        kw.setdefault("src", self.topo.tb_ip6)
        kw.setdefault("dst", self.topo.dut_ip6)
        return IPv6(**kw)

    def ip(self, family: int, **kw: Any) -> Packet:
        return self.ip4(**kw) if family == 4 else self.ip6(**kw)

    # -------------------------------------------------------------- expect
    def expect(self, match: Callable[[Packet], bool], timeout: float = EXPECT_TIMEOUT,
               desc: str = "frame") -> Packet:
        """The first frame (from now on) for which ``match`` is true.

        Frames that do not match are discarded (as in packetimpact) and listed
        in the failure message with the pcap path. The returned packet has
        ``.time`` set to its monotonic arrival time.
        """
        deadline = time.monotonic() + timeout
        skipped: list[str] = []
        while True:
            left = deadline - time.monotonic()
            try:
                ts, data = self._q.get(timeout=max(left, 0.0)) if left > 0 else self._q.get_nowait()
            except queue.Empty:
                raise ExpectError(
                    f"expected {desc} within {timeout:.2f}s; got none. Frames seen meanwhile "
                    f"({len(skipped)}): {skipped[-12:]}; pcap: {self.pcap_path}") from None
            pkt = Ether(data)
            pkt.time = ts
            try:
                ok = match(pkt)
            except (AttributeError, IndexError, TypeError):
                ok = False
            if ok:
                return pkt
            skipped.append(summarize(pkt))
            self.seen.append((ts, skipped[-1]))

    def expect_none(self, match: Callable[[Packet], bool], timeout: float = NONE_TIMEOUT,
                    desc: str = "frame") -> None:
        """Fail if a frame matching ``match`` arrives within ``timeout``."""
        try:
            pkt = self.expect(match, timeout, desc)
        except ExpectError:
            return
        raise ExpectError(f"unexpected {desc}: {summarize(pkt)}; pcap: {self.pcap_path}")

    def drain(self) -> None:
        """Forget frames received so far."""
        while True:
            try:
                self._q.get_nowait()
            except queue.Empty:
                return

    # ------------------------------------------------------- common matchers
    def from_dut(self, pkt: Packet, family: int | None = None) -> bool:
        if family in (None, 4) and IP in pkt and pkt[IP].src == self.topo.dut_ip4:
            return True
        return family in (None, 6) and IPv6 in pkt and pkt[IPv6].src == self.topo.dut_ip6

    def expect_udp(self, family: int, *, sport: int | None = None, dport: int | None = None,
                   payload: bytes | None = None, timeout: float = EXPECT_TIMEOUT) -> Packet:
        def m(p: Packet) -> bool:
            return (self.from_dut(p, family) and UDP in p
                    and (sport is None or p[UDP].sport == sport)
                    and (dport is None or p[UDP].dport == dport)
                    and (payload is None or bytes(p[UDP].payload) == payload))
        return self.expect(m, timeout, f"UDP/{family} sport={sport} dport={dport}")

    def expect_icmp(self, family: int, type_: int, code: int | None = None,
                    timeout: float = EXPECT_TIMEOUT) -> Packet:
        """An ICMP (v4) or ICMPv6 message of the given type from the DUT."""
        def m(p: Packet) -> bool:
            if not self.from_dut(p, family):
                return False
            if family == 4:
                return ICMP in p and p[ICMP].type == type_ and (code is None or p[ICMP].code == code)
            layer = p[IPv6].payload
            while layer is not None and not isinstance(layer, (Raw,)) and layer.name != "NoPayload":
                if getattr(layer, "type", None) == type_ and layer.__class__.__module__.endswith("inet6") \
                        and layer.__class__.__name__.startswith("ICMPv6"):
                    return code is None or getattr(layer, "code", 0) == code
                layer = layer.payload
            return False
        return self.expect(m, timeout, f"ICMPv{4 if family == 4 else 6} type={type_} code={code}")


# ---------------------------------------------------------------- TCP conn

# Fragment plans for the reassembly cases, the same for IPv4 and IPv6: name ->
# ([(start, end) byte ranges of a 64-byte datagram, in sending order],
# whether the DUT answers). A partial overlap discards the datagram on both
# (RFC 5722 for IPv6; Linux ip_frag_queue does the same for IPv4).
REASSEMBLY_CASES: dict[str, tuple[list[tuple[int, int]], bool]] = {
    "in-order": ([(0, 24), (24, 48), (48, 64)], True),
    "out-of-order": ([(48, 64), (0, 24), (24, 48)], True),
    "duplicate": ([(0, 24), (0, 24), (24, 48), (48, 64)], True),
    "subset": ([(0, 48), (8, 16), (48, 64)], True),
    "overlap": ([(0, 24), (16, 40), (40, 64)], False),
}


def seq_add(a: int, b: int) -> int:
    return (a + b) & 0xFFFFFFFF


def seq_diff(a: int, b: int) -> int:
    """a - b as a signed 32-bit sequence-space distance."""
    d = (a - b) & 0xFFFFFFFF
    return d - (1 << 32) if d >= 1 << 31 else d


# An abort's RST may carry ACK or not (RFC 9293 3.10.7); accept both where so.
RST = ("R", "RA")


def _flagset(flags: str | int) -> set[str]:
    if isinstance(flags, int):
        return {c for i, c in enumerate("FSRPAUEC") if flags & (1 << i)}
    return set(flags)


class TCPConn:
    """One TCP connection between the TB and the DUT, tracked by the TB.

    ``snd_nxt`` is the TB's next sequence number, ``rcv_nxt`` the next one
    expected from the DUT (both absolute); ``iss``/``irs`` are the initial ones,
    so ``rel_rcv(x)`` gives sequence numbers relative to the DUT's ISN.
    """

    def __init__(self, tb: Testbench, family: int = 4, *, dport: int, sport: int | None = None,
                 iss: int | None = None, src: str | None = None) -> None:
        self.tb = tb
        self.family = family
        self.dport = dport  # DUT port
        self.sport = sport if sport is not None else random.randint(20000, 60000)
        self.iss = iss if iss is not None else random.randint(0, 0xFFFFFFFF)
        self.snd_nxt = self.iss
        self.irs: int | None = None
        self.rcv_nxt = 0
        self.src = src
        self.ts_val = 1000
        self.peer_ts: int | None = None
        self.use_ts = False

    # ------------------------------------------------------------- sending
    def build(self, flags: str = "A", payload: bytes = b"", *, seq: int | None = None,
              ack: int | None = None, window: int = 65535, options: Sequence[Any] | None = None,
              ip_kw: dict[str, Any] | None = None, **tcp_kw: Any) -> Packet:
        """A segment of this connection (not sent)."""
        if seq is None:
            seq = self.snd_nxt
        if ack is None:
            ack = self.rcv_nxt if "A" in flags else 0
        if options is None:
            options = []
            if self.use_ts and "S" not in flags:
                options = [("NOP", None), ("NOP", None), ("Timestamp", (self.ts_val, self.peer_ts or 0))]
        ipk = dict(ip_kw or {})
        if self.src is not None:
            ipk.setdefault("src", self.src)
        ip = self.tb.ip(self.family, **ipk)
        seg = ip / TCP(sport=self.sport, dport=self.dport, flags=flags, seq=seq, ack=ack,
                       window=window, options=list(options), **tcp_kw)
        if payload:
            seg = seg / Raw(payload)
        return seg

    def send(self, flags: str = "A", payload: bytes = b"", **kw: Any) -> Packet:
        """Build and send; advances ``snd_nxt`` unless an explicit ``seq`` was given."""
        explicit = "seq" in kw and kw["seq"] is not None
        seg = self.build(flags, payload, **kw)
        self.tb.send(seg)
        if not explicit:
            self.snd_nxt = seq_add(self.snd_nxt, len(payload) + ("S" in flags) + ("F" in flags))
        self.ts_val += 1
        return seg

    # ----------------------------------------------------------- receiving
    def is_mine(self, p: Packet) -> bool:
        return (TCP in p and self.tb.from_dut(p, self.family)
                and (self.dport == 0 or p[TCP].sport == self.dport) and p[TCP].dport == self.sport)

    def match(self, p: Packet, flags: str | Sequence[str] | None = None, seq: int | None = None,
              ack: int | None = None, payload: bytes | None = None, window: int | None = None,
              plen: int | None = None) -> bool:
        if not self.is_mine(p):
            return False
        t = p[TCP]
        if flags is not None:
            # PSH and ECN bits are the DUT's choice; compare the rest exactly.
            # A tuple of flag strings accepts any of them (e.g. RST with or
            # without ACK on an abort, which RFC 9293 leaves open).
            got = _flagset(int(t.flags)) - {"P", "E", "C"}
            alts = (flags,) if isinstance(flags, str) else tuple(flags)
            if not any(got == set(f) - {"P"} for f in alts):
                return False
        if seq is not None and t.seq != seq & 0xFFFFFFFF:
            return False
        if ack is not None and t.ack != ack & 0xFFFFFFFF:
            return False
        data = bytes(t.payload)
        if payload is not None and data != payload:
            return False
        if plen is not None and len(data) != plen:
            return False
        return window is None or t.window == window

    def expect(self, flags: str | Sequence[str] | None = None, *, seq: int | None = None, ack: int | None = None,
               payload: bytes | None = None, window: int | None = None, plen: int | None = None,
               timeout: float = EXPECT_TIMEOUT, update: bool = True) -> Packet:
        """The next segment of this connection matching the given fields.

        With ``update`` (default), an in-order segment advances ``rcv_nxt``
        (SYN and FIN count one) and a SYN sets ``irs``.
        """
        desc = (f"TCP/{self.family} {self.dport}->{self.sport} flags={flags} seq={seq} ack={ack} "
                f"plen={plen if payload is None else len(payload)}")
        p = self.tb.expect(lambda x: self.match(x, flags, seq, ack, payload, window, plen),
                           timeout, desc)
        if update:
            self._update(p)
        return p

    def expect_none(self, flags: str | Sequence[str] | None = None, timeout: float = NONE_TIMEOUT,
                    **kw: Any) -> None:
        desc = f"TCP/{self.family} {self.dport}->{self.sport} flags={flags} {kw}"
        self.tb.expect_none(lambda x: self.match(x, flags, **kw), timeout, desc)

    def expect_nothing(self, timeout: float = NONE_TIMEOUT) -> None:
        """No segment at all on this connection within ``timeout``."""
        self.expect_none(None, timeout)

    def _update(self, p: Packet) -> None:
        t = p[TCP]
        fl = _flagset(int(t.flags))
        for kind, val in t.options:
            if kind == "Timestamp":
                self.peer_ts = val[0]
        if "S" in fl:
            self.irs = t.seq
            self.rcv_nxt = seq_add(t.seq, 1)
            return
        if t.seq == self.rcv_nxt:
            self.rcv_nxt = seq_add(self.rcv_nxt, len(t.payload) + ("F" in fl))

    def rel_rcv(self, seq: int) -> int:
        assert self.irs is not None
        return seq_diff(seq, self.irs)

    # ------------------------------------------------------------ handshakes
    def connect(self, *, window: int = 65535, options: Sequence[Any] | None = None,
                ack: bool = True) -> Packet:
        """Active open from the TB to a listening DUT; returns the SYN-ACK."""
        if options is None:
            options = [("MSS", 1460)]
        self.send("S", window=window, options=options)
        synack = self.expect("SA", ack=self.snd_nxt)
        if ack:
            self.send("A", window=window)
        return synack

    def accept(self, *, window: int = 65535, options: Sequence[Any] | None = None,
               timeout: float = 3.0) -> Packet:
        """Passive open: wait for the DUT's SYN, answer SYN-ACK, expect nothing back.

        ``self.sport`` must be the TB port the DUT connects to. Returns the SYN.
        """
        syn = self.expect("S", timeout=timeout)
        self.dport = syn[TCP].sport
        if options is None:
            options = [("MSS", 1460)]
        self.send("SA", window=window, options=options)
        return syn

    def receive_data(self, nbytes: int, *, timeout: float = 2.0, ack_each: bool = False,
                     window: int = 65535) -> bytes:
        """Collect ``nbytes`` of in-order data, optionally ACKing each segment."""
        got = b""
        deadline = time.monotonic() + timeout
        while len(got) < nbytes:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ExpectError(f"received {len(got)}/{nbytes} bytes; pcap: {self.tb.pcap_path}")
            p = self.expect(seq=self.rcv_nxt, timeout=left)
            got += bytes(p[TCP].payload)
            if ack_each and len(p[TCP].payload):
                self.send("A", window=window)
        return got


# -------------------------------------------------------------- DUT client

class DutError(OSError):
    """A DUT socket call failed; ``errno`` is the DUT's errno."""


def _enc(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        return {"b64": base64.b64encode(bytes(v)).decode()}
    if isinstance(v, (list, tuple)):
        return [_enc(x) for x in v]
    return v


def _dec(v: Any) -> Any:
    if isinstance(v, dict) and "b64" in v:
        return base64.b64decode(v["b64"])
    if isinstance(v, list):
        return [_dec(x) for x in v]
    return v


@dataclass
class Dut:
    """Client of the DUT command server; one method per socket call.

    Methods return the call's result or raise :class:`DutError` with the DUT's
    errno. ``background(op, *args)`` runs a call on its own control connection
    and returns a Future, for calls that block (accept, recv, connect).
    """

    name: str
    sock_path: str
    topo: Topology
    # A call that takes longer is a wedged DUT (blocking calls a case expects
    # to wait go through background() and are bounded by the case itself).
    call_timeout: float = 5.0
    wedged: bool = False  # a control call timed out: the DUT needs a restart
    _conn: socket.socket | None = field(default=None, repr=False)
    _rf: Any = field(default=None, repr=False)

    def _connect(self) -> tuple[socket.socket, Any]:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.call_timeout)
        s.connect(self.sock_path)
        return s, s.makefile("rb")

    def call(self, op: str, *args: Any) -> Any:
        if self.wedged:
            raise DutError(110, f"DUT call {op}: not sent, an earlier call timed out")
        if self._conn is None:
            self._conn, self._rf = self._connect()
        return self._roundtrip(self._conn, self._rf, op, args)

    def _roundtrip(self, conn: socket.socket, rf: Any, op: str, args: Sequence[Any]) -> Any:
        conn.sendall(json.dumps({"op": op, "args": [_enc(a) for a in args]}).encode() + b"\n")
        try:
            line = rf.readline()
        except TimeoutError:
            if conn is self._conn:
                self.wedged = True
            raise DutError(110, f"DUT call {op}{tuple(args)!r} timed out "
                                f"after {self.call_timeout:.0f}s (DUT wedged?)") from None
        if not line:
            raise DutError(104, f"DUT server closed the control connection during {op}")
        reply = json.loads(line)
        if reply["errno"]:
            raise DutError(reply["errno"], f"{op}: {reply.get('error', '')}")
        return _dec(reply["ret"])

    def background(self, op: str, *args: Any) -> Future[Any]:
        fut: Future[Any] = Future()

        def run() -> None:
            try:
                conn, rf = self._connect()
                with conn:
                    fut.set_result(self._roundtrip(conn, rf, op, args))
            except BaseException as exc:  # noqa: BLE001 - delivered via the future
                fut.set_exception(exc)

        threading.Thread(target=run, daemon=True).start()
        return fut

    def close_control(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ---- thin wrappers
    def socket(self, family: int, type_: int, proto: int = 0) -> int:
        return int(self.call("socket", family, type_, proto))

    def bind(self, fd: int, addr: tuple[Any, ...]) -> None:
        self.call("bind", fd, list(addr))

    def listen(self, fd: int, backlog: int = 16) -> None:
        self.call("listen", fd, backlog)

    def accept(self, fd: int) -> tuple[int, Any]:
        r = self.call("accept", fd)
        return int(r[0]), r[1]

    def connect(self, fd: int, addr: tuple[Any, ...]) -> None:
        self.call("connect", fd, list(addr))

    def send(self, fd: int, data: bytes, flags: int = 0) -> int:
        return int(self.call("send", fd, data, flags))

    def sendto(self, fd: int, data: bytes, addr: tuple[Any, ...], flags: int = 0) -> int:
        return int(self.call("sendto", fd, data, list(addr), flags))

    def recv(self, fd: int, n: int, flags: int = 0) -> bytes:
        return bytes(self.call("recv", fd, n, flags))

    def recvfrom(self, fd: int, n: int, flags: int = 0) -> tuple[bytes, Any]:
        r = self.call("recvfrom", fd, n, flags)
        return bytes(r[0]), r[1]

    def setsockopt(self, fd: int, level: int, name: int, value: int | bytes) -> None:
        self.call("setsockopt", fd, level, name, value)

    def getsockopt(self, fd: int, level: int, name: int, buflen: int = 0) -> Any:
        return self.call("getsockopt", fd, level, name, buflen)

    def shutdown(self, fd: int, how: int) -> None:
        self.call("shutdown", fd, how)

    def close(self, fd: int) -> None:
        self.call("close", fd)

    def poll(self, fd: int, events: int, timeout_ms: int) -> int:
        return int(self.call("poll", fd, events, timeout_ms))

    def setnonblocking(self, fd: int, on: bool = True) -> None:
        self.call("setnonblocking", fd, on)

    def getsockname(self, fd: int) -> Any:
        return self.call("getsockname", fd)

    def getpeername(self, fd: int) -> Any:
        return self.call("getpeername", fd)

    def linger(self, fd: int, onoff: int, seconds: int) -> None:
        self.call("linger", fd, onoff, seconds)

    # ---- composite helpers
    def addr(self, family: int, port: int, host: str | None = None) -> tuple[Any, ...]:
        """A socket address on the DUT side for ``family`` (4 or 6)."""
        if host is None:
            host = self.topo.dut_ip(family)
        return (host, port) if family == 4 else (host, port, 0, 0)

    def tb_addr(self, family: int, port: int) -> tuple[Any, ...]:
        return self.addr(family, port, self.topo.tb_ip(family))

    def tcp_listener(self, family: int = 4, backlog: int = 16,
                     opts: Sequence[tuple[int, int, int]] = ()) -> tuple[int, int]:
        """A listening TCP socket on the DUT address; returns (fd, port)."""
        fd = self.socket(self.topo.af(family), socket.SOCK_STREAM)
        self.setsockopt(fd, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for level, name, value in opts:
            self.setsockopt(fd, level, name, value)
        self.bind(fd, self.addr(family, 0))
        self.listen(fd, backlog)
        return fd, int(self.getsockname(fd)[1])

    def udp_socket(self, family: int = 4, host: str | None = None, port: int = 0) -> tuple[int, int]:
        fd = self.socket(self.topo.af(family), socket.SOCK_DGRAM)
        self.bind(fd, self.addr(family, port, host))
        return fd, int(self.getsockname(fd)[1])


def tcp_established(tb: Testbench, dut: Dut, family: int = 4, *, window: int = 65535,
                    options: Sequence[Any] | None = None, backlog: int = 16,
                    listener_opts: Sequence[tuple[int, int, int]] = ()) -> tuple[TCPConn, int, int]:
    """TB connects to a DUT listener and the DUT accepts.

    Returns (conn, accepted fd, listener fd).
    """
    lfd, port = dut.tcp_listener(family, backlog, listener_opts)
    conn = TCPConn(tb, family, dport=port)
    conn.connect(window=window, options=options)
    afd, _ = dut.accept(lfd)
    return conn, afd, lfd


def tcp_established_active(tb: Testbench, dut: Dut, family: int = 4, *, window: int = 65535,
                           options: Sequence[Any] | None = None,
                           opts: Sequence[tuple[int, int, int]] = ()) -> tuple[TCPConn, int]:
    """The DUT connects to the TB (TB answers as a server). Returns (conn, fd)."""
    fd = dut.socket(dut.topo.af(family), socket.SOCK_STREAM)
    for level, name, value in opts:
        dut.setsockopt(fd, level, name, value)
    conn = TCPConn(tb, family, dport=0, sport=random.randint(20000, 60000))
    fut = dut.background("connect", fd, list(dut.tb_addr(family, conn.sport)))
    conn.accept(window=window, options=options)
    conn.expect("A", ack=conn.snd_nxt)
    fut.result(timeout=5)
    return conn, fd


TCP_INFO_FMT = "B" * 8 + "I" * 24
TCP_INFO_FIELDS = ["state", "ca_state", "retransmits", "probes", "backoff", "options", "wscale", "flags", "rto", "ato", "snd_mss", "rcv_mss", "unacked", "sacked", "lost", "retrans", "fackets", "last_data_sent", "last_ack_sent", "last_data_recv", "last_ack_recv", "pmtu", "rcv_ssthresh", "rtt", "rttvar", "snd_ssthresh", "snd_cwnd", "advmss", "reordering", "rcv_rtt", "rcv_space", "total_retrans"]


def tcp_info(dut: Dut, fd: int) -> dict[str, int]:
    """The DUT's struct tcp_info (first 104 bytes, the fields all kernels have)."""
    raw = dut.getsockopt(fd, socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    vals = struct.unpack_from(TCP_INFO_FMT, raw.ljust(104, b"\0"))
    return dict(zip(TCP_INFO_FIELDS, vals))
