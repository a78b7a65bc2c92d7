"""netvisor/services.py between two NetStacks on an in-memory cable (no namespaces).

The kernel-facing tests (tests/integration/test_tcp_interop.py) rely on these
protocols; here each is checked against an independent client written on the
stack's own sockets, including the digest of a corrupted or short stream.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import select
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio
import trio.testing

from netvisor import services
from netvisor.link.loopback import memory_pair
from netvisor.netstack import NetStack
from netvisor.tcpip.api import Socket
from netvisor.tcpip.errors import NetError

A, B = "10.97.0.1", "10.97.0.2"


async def _connect(ns: NetStack, port: int) -> Socket:
    s = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.connect((B, port))
    except NetError as exc:
        assert exc.errno == errno.EINPROGRESS
    ns.kick()
    await ns.wait(s, select.POLLOUT)
    return s


async def _read_all(ns: NetStack, s: Socket) -> bytes:
    out = bytearray()
    while data := await services._recv(ns, s, 1 << 16):
        out += data
    return bytes(out)


@asynccontextmanager
async def _pair() -> AsyncIterator[tuple[NetStack, NetStack]]:
    ea, eb = memory_pair()
    client, server = NetStack(seed=1), NetStack(seed=2)
    client.add_link(ea, name="eth0", addresses=[ipaddress.ip_interface(f"{A}/24")])
    server.add_link(eb, name="eth0", addresses=[ipaddress.ip_interface(f"{B}/24")])
    async with trio.open_nursery() as nursery:
        await nursery.start(client.serve)
        await nursery.start(server.serve)
        for port, name in ((7, "echo"), (9, "discard"), (19, "source")):
            await nursery.start(services.serve, server, port, services.SERVICES[name])
        yield client, server
        nursery.cancel_scope.cancel()


def run(test: Callable[[tuple[NetStack, NetStack]], Awaitable[None]]) -> None:
    """Run ``test`` with a client and a server stack (services on 7, 9, 19), MockClock."""
    async def main() -> None:
        async with _pair() as pair:
            await test(pair)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_stream_helpers_agree() -> None:
    data = services.stream_bytes(4, 0, 3 * services.BLOCK_SIZE // 2)
    assert hashlib.sha256(data).hexdigest() == services.expected_sha256(4, len(data))
    assert services.stream_bytes(4, 10, 5) == data[10:15]
    assert services.stream_block(4) != services.stream_block(5)


def test_discard_reports_count_and_sha256() -> None:
    run(_discard_reports_count_and_sha256)


async def _discard_reports_count_and_sha256(pair: tuple[NetStack, NetStack]) -> None:
    client, _ = pair
    payload = services.stream_bytes(7, 0, 300_000)
    with trio.fail_after(30):
        s = await _connect(client, 9)
        await services._send_all(client, s, payload)
        s.shutdown(socket.SHUT_WR)
        client.kick()
        report = await _read_all(client, s)
    count, digest = services.REPORT.unpack(report)
    assert count == len(payload)
    assert digest.hex() == services.expected_sha256(7, len(payload))


def test_source_writes_exactly_the_requested_stream() -> None:
    run(_source_writes_exactly_the_requested_stream)


async def _source_writes_exactly_the_requested_stream(pair: tuple[NetStack, NetStack]) -> None:
    client, _ = pair
    length = services.BLOCK_SIZE + 12345  # crosses the block boundary
    with trio.fail_after(30):
        s = await _connect(client, 19)
        await services._send_all(client, s, services.REQUEST.pack(length, 3))
        got = await _read_all(client, s)
    assert len(got) == length
    assert hashlib.sha256(got).hexdigest() == services.expected_sha256(3, length)
    assert hashlib.sha256(got[:-1] + b"\0").hexdigest() != services.expected_sha256(3, length)


def test_echo_returns_bytes_then_fin() -> None:
    run(_echo_returns_bytes_then_fin)


async def _echo_returns_bytes_then_fin(pair: tuple[NetStack, NetStack]) -> None:
    client, _ = pair
    payload = bytes(range(256)) * 800
    with trio.fail_after(30):
        s = await _connect(client, 7)
        await services._send_all(client, s, payload)
        s.shutdown(socket.SHUT_WR)
        client.kick()
        assert await _read_all(client, s) == payload


def test_stats_count_connections() -> None:
    run(_stats_count_connections)


async def _stats_count_connections(pair: tuple[NetStack, NetStack]) -> None:
    client, server = pair
    stats = services.ServiceStats()
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: services.serve(
            server, 1234, services.echo, stats=stats, task_status=task_status))
        with trio.fail_after(30):
            for _ in range(3):
                s = await _connect(client, 1234)
                await services._send_all(client, s, b"hi")
                s.shutdown(socket.SHUT_WR)
                client.kick()
                assert await _read_all(client, s) == b"hi"
                s.close()
                client.kick()
            while stats.completed < 3:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert stats.accepted == 3 and stats.failed == 0
