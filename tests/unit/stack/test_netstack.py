"""The trio driver: two NetStacks over an in-memory cable, trio's MockClock as the only clock."""

from __future__ import annotations

import errno
import ipaddress
import select
import socket
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from netvisor.link.loopback import memory_pair
from netvisor.netstack import NetStack
from netvisor.tcpip.errors import NetError

ip_if = ipaddress.ip_interface


def run(fn: Callable[[NetStack, NetStack], Awaitable[None]], **pair_kw: object) -> None:
    async def main() -> None:
        a_ep, b_ep = memory_pair(**pair_kw)  # type: ignore[arg-type]
        a, b = NetStack(seed=1), NetStack(seed=2)
        a.add_link(a_ep, name="eth0", addresses=[ip_if("10.0.0.1/24"), ip_if("fd00::1/64")])
        b.add_link(b_ep, name="eth0", addresses=[ip_if("10.0.0.2/24"), ip_if("fd00::2/64")])
        async with trio.open_nursery() as n:
            await n.start(a.serve)
            await n.start(b.serve)
            await a.wait_addresses_ready()
            await b.wait_addresses_ready()
            with trio.fail_after(120):
                await fn(a, b)
            n.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def echo_once(a: NetStack, b: NetStack, dst: str, size: int) -> None:
    srv = b.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    srv.bind(("::", 7))
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    cli = a.socket(fam, socket.SOCK_DGRAM)
    payload = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    cli.sendto(payload, 0, (dst, 7))
    a.kick()
    await b.wait(srv, select.POLLIN)
    data, addr = srv.recvfrom(70000)
    assert data == payload
    srv.sendto(data, 0, addr)
    b.kick()
    await a.wait(cli, select.POLLIN)
    assert cli.recv(70000) == payload
    srv.close()


@pytest.mark.parametrize("dst", ["10.0.0.2", "fd00::2"])
@pytest.mark.parametrize("size", [1, 1472, 65000])
def test_udp_echo_between_two_stacks(dst: str, size: int) -> None:
    run(lambda a, b: echo_once(a, b, dst, size))


def test_dad_takes_the_time_rfc4862_says() -> None:
    async def check(a: NetStack, b: NetStack) -> None:
        # Random delay up to 1 s, then one NS and RetransTimer (1 s).
        assert 1.0 <= trio.current_time() <= 2.1

    run(check)


def test_port_unreachable_and_unreachable_neighbour() -> None:
    async def check(a: NetStack, b: NetStack) -> None:
        c = a.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.connect(("10.0.0.2", 9))
        c.send(b"a")
        a.kick()
        assert await a.wait(c, select.POLLIN) & select.POLLERR
        with pytest.raises(NetError) as e:
            c.recv(10)
        assert e.value.errno == errno.ECONNREFUSED
        d = a.socket(socket.AF_INET, socket.SOCK_DGRAM)
        d.connect(("10.0.0.99", 9))
        d.send(b"a")
        a.kick()
        t0 = trio.current_time()
        await a.wait(d, select.POLLIN)
        assert trio.current_time() - t0 == pytest.approx(3.0)  # 3 ARP requests, 1 s apart
        with pytest.raises(NetError) as e:
            d.recv(10)
        assert e.value.errno == errno.EHOSTUNREACH

    run(check)


def test_loopback_only_stack() -> None:
    async def main() -> None:
        ns = NetStack(seed=3)
        assert ns.add_loopback() == 1
        async with trio.open_nursery() as n:
            await n.start(ns.serve)
            s = ns.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            s.bind(("::1", 5555))
            c = ns.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            c.sendto(b"lo", 0, ("::1", 5555))
            ns.kick()
            with trio.fail_after(1):
                await ns.wait(s, select.POLLIN)
            assert s.recvfrom(10) == (b"lo", ("::1", c.getsockname()[1], 0, 0))
            n.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_backpressure_keeps_frames_until_link_takes_them() -> None:
    async def check(a: NetStack, b: NetStack) -> None:
        srv = b.socket(socket.AF_INET, socket.SOCK_DGRAM)
        srv.bind(("0.0.0.0", 8))
        srv.setsockopt(1, 8, (1 << 20).to_bytes(4, "little"))
        cli = a.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(40):
            cli.sendto(i.to_bytes(2, "big") * 100, 0, ("10.0.0.2", 8))
        a.kick()
        got = []
        while len(got) < 40:
            await b.wait(srv, select.POLLIN)
            got.append(srv.recv(1000))
        assert [int.from_bytes(g[:2], "big") for g in got] == list(range(40))

    run(check, queue_limit=4)


def test_wait_is_a_checkpoint_even_when_ready() -> None:
    """A loop over an always-ready socket must let other tasks run (trio convention)."""
    async def main() -> None:
        ns = NetStack(seed=4)
        ran = []
        async with trio.open_nursery() as n:
            await n.start(ns.serve)
            s = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            with pytest.raises(NetError):
                s.shutdown(socket.SHUT_RD)  # ENOTCONN, but EOF from now on (Linux)

            async def other() -> None:
                ran.append(True)

            n.start_soon(other)
            for _ in range(10):
                assert await ns.wait(s, select.POLLIN) & select.POLLIN
                assert s.recv(10) == b""
            assert ran
            n.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_config_from_sysctls(tmp_path: object) -> None:
    from pathlib import Path

    from netvisor.netstack import config_from_sysctls

    root = Path(str(tmp_path))
    values = {
        "net/ipv4/ipfrag_time": "2", "net/ipv6/ip6frag_time": "3",
        "net/ipv4/icmp_ratelimit": "0", "net/ipv4/ip_local_port_range": "40000\t40100",
        "net/ipv6/conf/all/accept_dad": "0", "net/ipv6/conf/default/accept_dad": "0",
        "net/ipv4/neigh/default/retrans_time_ms": "500", "net/ipv4/ip_default_ttl": "garbage",
    }
    for rel, text in values.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text + "\n")
    cfg = config_from_sysctls(str(root))
    assert (cfg.ipv4_frag_timeout, cfg.ipv6_frag_timeout) == (2.0, 3.0)
    assert cfg.icmp_ratelimit_interval == 0 and cfg.dad_transmits == 0
    assert (cfg.ephemeral_low, cfg.ephemeral_high) == (40000, 40100)
    assert cfg.retrans_timer == 0.5 and cfg.default_ttl == 64  # unreadable: Linux default


def test_tcp_connect_to_silent_neighbour_fails_with_ehostunreach() -> None:
    """Both families: 3 solicitations 1 s apart, then the local host-unreachable
    (Linux ip_link_failure / ip6_link_failure) ends the SYN-SENT connection."""
    async def check(a: NetStack, b: NetStack) -> None:
        for fam, dst in ((socket.AF_INET, "10.0.0.99"), (socket.AF_INET6, "fd00::99")):
            try:
                c = a.socket(fam, socket.SOCK_STREAM)
            except NetError:
                pytest.skip("no TCP transport")
            t0 = trio.current_time()
            with pytest.raises(NetError):
                c.connect((dst, 80))  # EINPROGRESS
            a.kick()
            await a.wait(c, select.POLLOUT)
            assert int.from_bytes(c.getsockopt(1, 4, 4), "little") == errno.EHOSTUNREACH
            assert trio.current_time() - t0 == pytest.approx(3.0)

    run(check)
