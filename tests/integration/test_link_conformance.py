"""One conformance test run against every endpoint and every wrapper.

Each case gets a :class:`Harness`: the endpoint under test, a way to make
frames arrive at it (``inject``) and a way to see what it transmitted
(``collect``). For TAP and AF_PACKET the far side is a raw packet socket on
the kernel's side of the link, inside a namespace made by the test; for
in-memory endpoints it is the queue itself or the other end of the pair;
wrappers are tested around a loopback endpoint, whose queue is the far side.
Test frames carry the local experimental EtherType 0x88B5 (IEEE 802) and a
sequence number, so kernel chatter (IPv6 RS/MLD) is told apart.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

from netvisor.frame import Frame
from netvisor.link.endpoint import LinkEndpoint
from netvisor.link.faults import FaultConfig, FaultInjector
from netvisor.link.loopback import LoopbackEndpoint, memory_pair
from netvisor.link.netns import in_netns
from netvisor.link.packet import PacketEndpoint
from netvisor.link.pcap import PcapSniffer
from netvisor.link.shaper import EgressShaper, ShaperConfig
from netvisor.link.tap import TapEndpoint
from tests.nsutil import Netns, create_netns, veth_pair

ETHERTYPE_TEST = 0x88B5
ETH_P_ALL = 3


def probe_frame(seq: int, src: bytes = b"\x02\x00\x00\x00\x00\x01") -> bytes:
    payload = b"nvl-conformance" + struct.pack("!I", seq)
    return b"\xff" * 6 + src + struct.pack("!H", ETHERTYPE_TEST) + payload.ljust(46, b".")


def seq_of(data: bytes | bytearray | memoryview) -> int | None:
    raw = bytes(data)
    if len(raw) < 33 or struct.unpack_from("!H", raw, 12)[0] != ETHERTYPE_TEST:
        return None
    return int(struct.unpack_from("!I", raw, 14 + 15)[0])


@dataclass
class Harness:
    ep: LinkEndpoint
    inject: Callable[[list[bytes]], None]
    collect_raw: Callable[[], list[bytes]]
    loops_back: bool = False
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def collect(self, n: int, timeout: float = 3.0) -> list[int]:
        """Sequence numbers of up to ``n`` test frames the far side received."""
        got: list[int] = []
        deadline = time.monotonic() + timeout
        while len(got) < n and time.monotonic() < deadline:
            for raw in self.collect_raw():
                s = seq_of(raw)
                if s is not None:
                    got.append(s)
            if len(got) < n:
                time.sleep(0.005)
        return got

    def read_test_frames(self, n: int, max_frames: int = 64, timeout: float = 3.0) -> list[int]:
        got: list[int] = []
        deadline = time.monotonic() + timeout
        fd = self.ep.fileno()
        while len(got) < n and time.monotonic() < deadline:
            if fd is not None:
                select.select([fd], [], [], 0.05)
            else:
                time.sleep(0.005)
            batch = self.ep.read_batch(min(max_frames, n - len(got)))
            assert len(batch) <= max_frames
            for frame in batch:
                s = seq_of(frame.data)
                if s is not None:
                    got.append(s)
        return got


class RawPeer:
    """A packet socket on the kernel's side of the link (in the test namespace)."""

    def __init__(self, ifname: str, ns: Netns) -> None:
        with in_netns(ns.path):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            self.sock.setsockopt(263, 23, 1)  # PACKET_IGNORE_OUTGOING
            self.sock.bind((ifname, ETH_P_ALL))
        self.sock.setblocking(False)

    def inject(self, frames: list[bytes]) -> None:
        for f in frames:
            self.sock.send(f)

    def collect_raw(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(70000))
            except BlockingIOError:
                return out


def _memory_harness(ep: LinkEndpoint, far: LinkEndpoint, loops_back: bool) -> Harness:
    return Harness(ep, lambda fs: _must_take(far, fs),
                   lambda: [bytes(f.data) for f in far.read_batch(10_000)], loops_back)


def _must_take(ep: LinkEndpoint, frames: list[bytes]) -> None:
    assert ep.write_batch([Frame(f) for f in frames]) == len(frames)


def _quiet(ns: Netns, ifname: str) -> None:
    ns.run(["sysctl", "-qw", f"net.ipv6.conf.{ifname}.disable_ipv6=1"], check=False)


@contextlib.contextmanager
def make_harness(kind: str) -> Iterator[Harness]:
    ns: Netns | None = None
    try:
        if kind == "loopback":
            lo = LoopbackEndpoint()
            h = _memory_harness(lo, lo, True)
        elif kind == "memory-pair":
            a, b = memory_pair()
            h = _memory_harness(a, b, False)
        elif kind.startswith("tap"):
            ns = create_netns("nvl")
            tap = TapEndpoint("nvlct0", netns=ns.path, vnet_hdr=kind == "tap-vnet")
            _quiet(ns, tap.name)
            peer = RawPeer(tap.name, ns)
            h = Harness(tap, peer.inject, peer.collect_raw, False, [peer.sock.close])
        elif kind.startswith("packet"):
            ns = create_netns("nvl")
            veth_pair(ns, "nvlcA", ns, "nvlcB")
            _quiet(ns, "nvlcA")
            _quiet(ns, "nvlcB")
            ep = PacketEndpoint("nvlcA", netns=ns.path, vnet_hdr=kind == "packet-vnet")
            peer = RawPeer("nvlcB", ns)
            h = Harness(ep, peer.inject, peer.collect_raw, False, [peer.sock.close])
        else:
            lo = LoopbackEndpoint()
            wrapped: LinkEndpoint
            if kind == "pcap(loopback)":
                import io
                wrapped = PcapSniffer(lo, io.BytesIO())
            elif kind == "faults(loopback)":
                wrapped = FaultInjector(lo, FaultConfig(seed=1))
            elif kind == "shaper(loopback)":
                # Fast enough that nothing waits, so no serve() task is needed.
                wrapped = EgressShaper(lo, ShaperConfig(1e12, 1 << 30), clock=time.monotonic,
                                       allow_loopback=True)
            else:
                raise AssertionError(kind)
            h = _memory_harness(wrapped, lo, False)
        # Let the kernel's link-up chatter pass, then start from empty.
        if ns is not None:
            time.sleep(0.05)
            h.ep.read_batch(10_000)
            h.collect_raw()
        yield h
    finally:
        with contextlib.suppress(Exception):
            for c in h.cleanups:
                c()
            h.ep.close()
        if ns is not None:
            ns.delete()


KINDS = ["loopback", "memory-pair", "tap", "tap-vnet", "packet", "packet-vnet",
         "pcap(loopback)", "faults(loopback)", "shaper(loopback)"]


@pytest.fixture(params=KINDS)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    if request.param.startswith(("tap", "packet")):
        request.getfixturevalue("need_root")
    with make_harness(request.param) as h:
        yield h


def test_shape_of_the_endpoint(harness: Harness) -> None:
    ep = harness.ep
    assert isinstance(ep, LinkEndpoint)
    assert isinstance(ep.mac, bytes) and len(ep.mac) == 6
    assert ep.mtu >= 1280
    caps = ep.capabilities
    if caps.gso_max_size:
        # GSO implies the device completes checksums (virtio needs NEEDS_CSUM).
        assert caps.checksum_offload_tx and caps.gso_max_size > ep.mtu
    assert caps.is_loopback == (harness.ep.mac == bytes(6))


def test_read_is_nonblocking_and_empty(harness: Harness) -> None:
    assert [f for f in harness.ep.read_batch(64) if seq_of(f.data) is not None] == []


def test_write_batch_reaches_far_side_in_order(harness: Harness) -> None:
    frames = [Frame(probe_frame(i, harness.ep.mac)) for i in range(20)]
    assert harness.ep.write_batch(frames) == 20
    assert harness.ep.write_batch([]) == 0
    assert harness.collect(20) == list(range(20))
    if not harness.loops_back:
        # Nothing we sent comes back to us (PACKET_IGNORE_OUTGOING, TAP semantics).
        time.sleep(0.02)
        assert [f for f in harness.ep.read_batch(64) if seq_of(f.data) is not None] == []


def test_read_batch_respects_max_frames_and_drains(harness: Harness) -> None:
    harness.inject([probe_frame(i) for i in range(10)])
    first = harness.read_test_frames(3, max_frames=3)
    assert first == [0, 1, 2]
    rest = harness.read_test_frames(7, max_frames=64)
    assert rest == list(range(3, 10))
    assert harness.ep.read_batch(0) == []


def test_received_frames_own_their_bytes(harness: Harness) -> None:
    harness.inject([probe_frame(1), probe_frame(2)])
    got: list[Frame] = []
    deadline = time.monotonic() + 3
    while len(got) < 2 and time.monotonic() < deadline:
        got += [f for f in harness.ep.read_batch(1) if seq_of(f.data) is not None]
        time.sleep(0.002)
    # Reading more must not overwrite frames already handed out (reused buffers).
    harness.inject([probe_frame(3)])
    harness.read_test_frames(1)
    assert [seq_of(f.data) for f in got] == [1, 2]


def test_fileno_polls_readable(harness: Harness) -> None:
    fd = harness.ep.fileno()
    if fd is None:
        pytest.skip("endpoint has no readiness fd (wait_readable only)")
    harness.inject([probe_frame(5)])
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    assert poller.poll(3000), "fd never became readable"
    assert harness.read_test_frames(1) == [5]


def test_wait_readable_and_writable_in_trio(harness: Harness) -> None:
    async def main() -> list[int]:
        got: list[int] = []

        async def reader() -> None:
            while not got:
                await harness.ep.wait_readable()
                got.extend(s for f in harness.ep.read_batch(64)
                           if (s := seq_of(f.data)) is not None)

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(reader)
                await trio.sleep(0.01)
                await harness.ep.wait_writable()
                harness.inject([probe_frame(9)])
        return got

    assert trio.run(main) == [9]


def test_close_is_idempotent(harness: Harness) -> None:
    harness.ep.close()
    harness.ep.close()
    assert harness.ep.read_batch(10) == []
