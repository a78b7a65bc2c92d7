"""Loopback and in-memory pair endpoints: queues, readiness fd, offload handling."""

from __future__ import annotations

import select
import struct

import pytest
import trio
import trio.testing

from netvisor.frame import GSO_TCPV4, Frame
from netvisor.link.endpoint import LinkEndpoint
from netvisor.link.loopback import LoopbackEndpoint, memory_pair
from netvisor.tcpip.wire.checksum import checksum


def _readable(fd: int | None) -> bool:
    assert fd is not None
    p = select.poll()
    p.register(fd, select.POLLIN)
    return bool(p.poll(0))


def test_loopback_is_an_endpoint_and_reads_back() -> None:
    lo = LoopbackEndpoint()
    assert isinstance(lo, LinkEndpoint)
    assert lo.capabilities.is_loopback and lo.mtu == 65536 and lo.mac == bytes(6)
    assert lo.read_batch(10) == [] and not _readable(lo.fileno())
    buf = bytearray(b"abc" * 20)
    assert lo.write_batch([Frame(buf), Frame(b"x" * 60)]) == 2
    buf[0] = 0  # the endpoint copied: later changes by the writer do not show
    assert _readable(lo.fileno())
    first = lo.read_batch(1)
    assert [bytes(f.data) for f in first] == [b"abc" * 20]
    assert _readable(lo.fileno())  # one still queued
    assert [bytes(f.data) for f in lo.read_batch(10)] == [b"x" * 60]
    assert not _readable(lo.fileno())
    assert lo.stats.tx_frames == 2 and lo.stats.rx_frames == 2 and lo.stats.rx_bytes == 120
    lo.close()
    lo.close()  # idempotent
    assert lo.fileno() is None


def test_queue_bound_is_backpressure() -> None:
    lo = LoopbackEndpoint(queue_limit=3)
    frames = [Frame(bytes([i]) * 60) for i in range(5)]
    assert lo.write_batch(frames) == 3
    assert lo.write_batch(frames[3:]) == 0
    assert len(lo.read_batch(2)) == 2
    assert lo.write_batch(frames[3:]) == 2
    assert [f.data[0] for f in lo.read_batch(10)] == [2, 3, 4]
    lo.close()


def _udp_frame_with_partial_checksum() -> tuple[bytes, int]:
    # Ethernet + IPv4 + UDP, checksum field holding the pseudo-header sum.
    payload = b"hello world!"
    ulen = 8 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 0, 0, 64, 17, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    pseudo = bytes([10, 0, 0, 1, 10, 0, 0, 2, 0, 17]) + struct.pack("!H", ulen)
    psum = (~checksum(pseudo)) & 0xFFFF
    udp = struct.pack("!HHHH", 1000, 2000, ulen, psum) + payload
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    full_pseudo_udp = pseudo + struct.pack("!HHHH", 1000, 2000, ulen, 0) + payload
    return eth + ip + udp, checksum(full_pseudo_udp)


def test_pair_without_offload_completes_checksums_and_drops_gso() -> None:
    a, b = memory_pair()
    assert not a.capabilities.checksum_offload_tx and a.capabilities.gso_max_size == 0
    data, want = _udp_frame_with_partial_checksum()
    assert a.write_batch([Frame(data, csum_start=34, csum_offset=6),
                          Frame(data, gso_type=GSO_TCPV4, gso_size=100)]) == 2
    assert a.stats.tx_dropped == 1
    got = b.read_batch(10)
    assert len(got) == 1 and not got[0].csum_valid
    assert struct.unpack_from("!H", got[0].data, 40)[0] == want
    assert a.read_batch(10) == []  # nothing loops back on a pair
    a.close()
    b.close()


def test_pair_with_offload_passes_metadata() -> None:
    a, b = memory_pair(offload=True)
    data, _ = _udp_frame_with_partial_checksum()
    a.write_batch([Frame(data, csum_start=34, csum_offset=6, gso_type=GSO_TCPV4,
                         gso_size=1448, hdr_len=54)])
    (f,) = b.read_batch(10)
    assert (f.csum_start, f.csum_offset, f.csum_valid, f.gso_type, f.gso_size, f.hdr_len) == \
        (34, 6, True, GSO_TCPV4, 1448, 54)
    assert bytes(f.data) == data


def test_bad_config_rejected() -> None:
    with pytest.raises(ValueError):
        memory_pair(mac_a=b"\x01")
    with pytest.raises(ValueError):
        LoopbackEndpoint(queue_limit=0)


def test_wait_readable_and_writable() -> None:
    trio.run(_wait_readable_and_writable)


async def _wait_readable_and_writable() -> None:
    a, b = memory_pair(queue_limit=1)
    events: list[str] = []

    async def reader() -> None:
        await b.wait_readable()
        events.append("readable")
        b.read_batch(10)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert events == []
        assert a.write_batch([Frame(b"1" * 60), Frame(b"2" * 60)]) == 1
    assert events == ["readable"]
    a.write_batch([Frame(b"3" * 60)])
    with trio.move_on_after(1) as scope:
        async with trio.open_nursery() as nursery:
            async def writer() -> None:
                await a.wait_writable()
                events.append("writable")
            nursery.start_soon(writer)
            await trio.testing.wait_all_tasks_blocked()
            assert events == ["readable"]
            b.read_batch(1)
    assert not scope.cancelled_caught
    assert events == ["readable", "writable"]
