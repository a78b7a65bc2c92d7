"""The driver and an egress shaper: serve() started by NetStack, backpressure seen by TCP.

BUGS-H9 B4: ``netvisor run --egress-rate`` wrapped the NIC in an
``EgressShaper`` whose ``serve()`` nobody started, so queued frames left only
when another write pumped them and TCP crawled. These tests run two
NetStacks on an in-memory cable under trio's MockClock (deterministic time).
"""

from __future__ import annotations

import errno
import io
import ipaddress
import select
import socket

import trio
import trio.testing

from netvisor import services
from netvisor.frame import Frame
from netvisor.link.loopback import memory_pair
from netvisor.link.pcap import PcapSniffer
from netvisor.link.shaper import EgressShaper, ShaperConfig
from netvisor.netstack import NetStack
from netvisor.tcpip.errors import NetError

A, B = "10.97.1.1", "10.97.1.2"
RATE = 10e6 / 8          # 10 Mbit/s in bytes/s
BURST = 16 * 1024


def _shaped_pair(pcap: bool) -> tuple[NetStack, NetStack, EgressShaper]:
    ea, eb = memory_pair()
    shaper = EgressShaper(ea, ShaperConfig(RATE, BURST))
    ep = PcapSniffer(shaper, io.BytesIO()) if pcap else shaper
    client, server = NetStack(seed=1), NetStack(seed=2)
    client.add_link(ep, name="eth0", addresses=[ipaddress.ip_interface(f"{A}/24")])
    server.add_link(eb, name="eth0", addresses=[ipaddress.ip_interface(f"{B}/24")])
    return client, server, shaper


def _transfer(pcap: bool) -> tuple[float, int, EgressShaper, NetStack]:
    size = 1 << 20
    out: dict[str, float] = {}

    async def main() -> None:
        client, server, shaper = _shaped_pair(pcap)
        async with trio.open_nursery() as nursery:
            await nursery.start(client.serve)
            await nursery.start(server.serve)
            await nursery.start(services.serve, server, 9, services.SERVICES["discard"])
            s = client.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.connect((B, 9))
            except NetError as exc:
                assert exc.errno == errno.EINPROGRESS
            client.kick()
            await client.wait(s, select.POLLOUT)
            t0 = trio.current_time()
            with trio.move_on_after(30):
                await services._send_all(client, s, services.stream_bytes(1, 0, size))
                s.shutdown(socket.SHUT_WR)
                client.kick()
                report = bytearray()
                while data := await services._recv(client, s, 1 << 16):
                    report += data
                out["count"] = services.REPORT.unpack(bytes(report))[0]
            out["elapsed"] = trio.current_time() - t0
            out["shaper"] = shaper  # type: ignore[assignment]
            out["client"] = client  # type: ignore[assignment]
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return (out["elapsed"], int(out.get("count", -1)), out["shaper"],  # type: ignore[return-value]
            out["client"])  # type: ignore[return-value]


def _check_transfer(pcap: bool) -> None:
    elapsed, count, shaper, client = _transfer(pcap)
    assert count == 1 << 20
    # 1 MiB at 10 Mbit/s is 0.84 s of wire time (+ headers); without the
    # shaper's serve() it took more than the 30 s cap.
    ideal = (1 << 20) / RATE
    assert ideal * 0.9 < elapsed < ideal * 1.5, elapsed
    # Backpressure: the shaper refuses frames TCP would otherwise pile up in
    # the stack's transmit queue; none were dropped there.
    assert client.stack.counters.snapshot().get("drop.tx_queue_full", 0) == 0
    assert shaper.stats.dropped_frames == 0


def test_shaped_tcp_transfer_runs_at_the_configured_rate() -> None:
    _check_transfer(pcap=False)


def test_shaper_under_pcap_is_served_and_shapes() -> None:
    _check_transfer(pcap=True)


def test_egress_has_room_reflects_the_shaper_through_pcap() -> None:
    async def main() -> None:
        client, _server, shaper = _shaped_pair(pcap=True)
        nic = 2
        async with trio.open_nursery() as nursery:
            await nursery.start(client.serve)
            assert client.stack.egress_has_room(nic)
            frame = Frame(b"\x02\x00\x00\x00\x00\x0b" + b"\x02\x00\x00\x00\x00\x0a"
                          + b"\x08\x00" + bytes(1486))
            while shaper.has_room():
                assert shaper.write_batch([frame]) == 1
            # The stack's own queue is empty, but the link below refuses:
            assert not client.stack.egress_has_room(nic)
            await trio.sleep(1.0)  # the shaper's serve() drains its queue
            assert shaper.has_room()
            assert client.stack.egress_has_room(nic)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
