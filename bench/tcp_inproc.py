"""In-process TCP bulk transfer between two NetStacks over an in-memory cable.

No kernel, no namespaces: the stack, TCP and the trio driver alone, with the
offloads a TAP gives (checksum offload + 64 KB GSO frames passed whole, as
``memory_pair(offload=True)`` models a veth). Both stacks run in one process
and share its CPU, so the figure is "stack work per byte", the number the
per-segment Python overhead decides.

    python3 bench/tcp_inproc.py --mb 256            # MB/s, median of --runs
    python3 bench/tcp_inproc.py --mb 64 --profile   # plus the top cProfile entries
    python3 bench/tcp_inproc.py --no-offload        # 1500-byte frames, full checksums
    python3 bench/tcp_inproc.py --mode rr --count 5000 [--profile]   # sans-IO CPU
    python3 bench/tcp_inproc.py --mode crr --count 2000 [--profile]  # per 1-byte
        # round trip / per connection (cps.py's loop), two Stacks, no driver
"""

from __future__ import annotations

import argparse
import cProfile
import ipaddress
import pstats
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netvisor.frame import Frame
from netvisor.link.loopback import memory_pair
from netvisor.netstack import NetStack
from netvisor.tcpip.errors import NetError

POLLIN, POLLOUT = 1, 4
CHUNK = 256 * 1024


async def transfer(total: int, offload: bool, v6: bool) -> tuple[float, dict[str, int]]:
    a_ep, b_ep = memory_pair(offload=offload)
    a, b = NetStack(seed=1), NetStack(seed=2)
    ip = ipaddress.ip_interface
    a.add_link(a_ep, name="eth0", addresses=[ip("10.0.0.1/24"), ip("fd00::1/64")], dad=False)
    b.add_link(b_ep, name="eth0", addresses=[ip("10.0.0.2/24"), ip("fd00::2/64")], dad=False)
    fam = socket.AF_INET6 if v6 else socket.AF_INET
    dst = "fd00::2" if v6 else "10.0.0.2"
    block = bytes(range(256)) * (CHUNK // 256)
    received = 0
    async with trio.open_nursery() as n:
        await n.start(a.serve)
        await n.start(b.serve)
        ls = b.socket(fam, socket.SOCK_STREAM)
        ls.bind((dst, 5001))
        ls.listen(4)
        cli = a.socket(fam, socket.SOCK_STREAM)
        try:
            cli.connect((dst, 5001))
        except NetError:
            pass
        a.kick()
        await b.wait(ls, POLLIN)
        srv, _ = ls.accept()
        await a.wait(cli, POLLOUT)

        async def sender() -> None:
            sent = 0
            while sent < total:
                try:
                    sent += cli.send(memoryview(block)[:min(CHUNK, total - sent)])
                    a.kick()
                except NetError:
                    await a.wait(cli, POLLOUT)
            cli.shutdown(socket.SHUT_WR)
            a.kick()

        t0 = time.perf_counter()
        n.start_soon(sender)
        while True:
            try:
                d = srv.recv(1 << 20)
            except NetError:
                await b.wait(srv, POLLIN)
                continue
            b.kick()
            if not d:
                break
            received += len(d)
        elapsed = time.perf_counter() - t0
        stats = {k: v for k, v in a.stack.counters.snapshot().items() if k.startswith("drop")}
        retrans = cli.conn.total_retrans  # type: ignore[attr-defined]
        stats["retrans"] = retrans
        n.cancel_scope.cancel()
    assert received == total, (received, total)
    return elapsed, stats


# --------------------------------------------------------------------------
# Sans-IO per-operation costs: two Stacks wired directly, no trio, no driver.
# The loop calls the stack the way NetStack does per turn (frames in,
# handle_timer, frames_to_send, next_deadline) and per socket call (the call,
# then kick's frames_to_send + next_deadline). CPU time is counted for the
# client stack "a" only (the netvisor side of the sandbox benchmark, whose
# server is the kernel); "b" plays the kernel.

MAC_A, MAC_B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


class _Side:
    """One Stack plus its NIC and the CPU seconds spent inside it."""

    def __init__(self, seed: int, mac: bytes, addr: str, peer: str, peer_mac: bytes,
                 offload: bool) -> None:
        import random

        from netvisor.tcpip.config import StackConfig
        from netvisor.tcpip.stack import Stack

        cfg = StackConfig(rng=random.Random(seed))
        cfg.dad_transmits = 0
        cfg.router_solicitations = 0
        self.stack = Stack(cfg)
        self.now = 1.0
        self.stack.now = self.now
        self.nic = self.stack.add_nic("eth0", mac, 1500, checksum_offload=offload,
                                      rx_checksum_offload=offload,
                                      gso_max_size=65536 if offload else 0)
        self.stack.add_address(self.nic, ipaddress.ip_interface(addr))
        self.stack.add_neighbor(self.nic, ipaddress.ip_interface(peer).ip, peer_mac)
        self.cpu = 0.0
        self.turn([])

    def turn(self, frames: list[Frame]) -> list[Frame]:
        """A driver turn: feed ``frames``, run timers, take output, read the deadline."""
        t0 = time.process_time()
        st = self.stack
        st.now = self.now
        for f in frames:
            st.handle_frame(self.nic, f, self.now)
        st.handle_timer(self.now)
        out = st.frames_to_send(self.nic)
        st.next_deadline()
        self.cpu += time.process_time() - t0
        return out

    def call(self, fn: Callable[..., Any], *args: Any) -> tuple[Any, list[Frame]]:
        """A socket call followed by what ``kick()`` does; returns (result, frames)."""
        t0 = time.process_time()
        st = self.stack
        st.now = self.now
        try:
            res = fn(*args)
        except NetError as exc:
            res = exc
        out = st.frames_to_send(self.nic)
        st.next_deadline()
        self.cpu += time.process_time() - t0
        return res, out


def _wire(frames: list[Frame]) -> list[Frame]:
    """What a veth/TAP with offloads hands the other side (``memory_pair``'s rule)."""
    return [Frame(f.data, f.csum_start, f.csum_offset, f.csum_start >= 0 or f.csum_valid,
                  f.gso_type, f.gso_size, f.hdr_len) for f in frames]


def _exchange(a: _Side, b: _Side, fa: list[Frame], fb: list[Frame]) -> None:
    """Carry frames both ways (b's turns uncounted for a) until both are quiet."""
    for _ in range(100):
        if not fa and not fb:
            return
        fa, fb = _wire(fa), _wire(fb)
        a.now += 25e-6
        b.now += 25e-6
        nb = b.turn(fa) if fa else []
        na = a.turn(fb) if fb else []
        fa, fb = na, nb
    raise RuntimeError("no quiescence")


def sansio(mode: str, count: int, offload: bool, v6: bool = False) -> tuple[float, float]:
    """Run ``count`` operations; returns CPU µs per operation for (a, b)."""
    if v6:
        fam, pfx, ip_a, ip_b = socket.AF_INET6, 64, "fd00::1", "fd00::2"
    else:
        fam, pfx, ip_a, ip_b = socket.AF_INET, 24, "10.0.0.1", "10.0.0.2"
    a = _Side(1, MAC_A, f"{ip_a}/{pfx}", f"{ip_b}/{pfx}", MAC_B, offload)
    b = _Side(2, MAC_B, f"{ip_b}/{pfx}", f"{ip_a}/{pfx}", MAC_A, offload)
    ls = b.stack.socket(fam, socket.SOCK_STREAM)
    ls.bind((ip_b, 5001))
    ls.listen(1024)

    def connect() -> tuple[Any, Any]:
        c = a.stack.socket(fam, socket.SOCK_STREAM)
        _, out = a.call(c.connect, (ip_b, 5001))
        _exchange(a, b, out, [])
        s, _ = ls.accept()
        return c, s

    if mode == "rr":
        c, s = connect()
        a.cpu = b.cpu = 0.0
        for _ in range(count):
            _, out = a.call(c.send, b"x")
            _exchange(a, b, out, [])
            assert s.recv(1) == b"x"
            _, out = b.call(s.send, b"y")
            _exchange(a, b, [], out)
            res, _ = a.call(c.recv, 1)
            assert res == b"y", res
    elif mode == "crr":
        # bench/tools/cps.py: connect, send 1 byte, the server reads it and
        # closes, the client reads EOF and closes.
        a.cpu = b.cpu = 0.0
        for _ in range(count):
            c, s = connect()
            _, out = a.call(c.send, b"x")
            _exchange(a, b, out, [])
            assert s.recv(1) == b"x"
            _, out = b.call(s.close)
            _exchange(a, b, [], out)
            res, _ = a.call(c.recv, 1)
            assert res == b"", res
            _, out = a.call(c.close)
            _exchange(a, b, out, [])
            # TIME-WAIT sits on the client side; let time pass so ports recycle
            # at the rate a real run would (1 ms per connection).
            a.now += 1e-3
            b.now += 1e-3
    else:
        raise ValueError(mode)
    return a.cpu / count * 1e6, b.cpu / count * 1e6


def sansio_main(args: argparse.Namespace) -> None:
    for i in range(args.runs):
        prof = cProfile.Profile() if args.profile and i == 0 else None
        if prof:
            prof.enable()
        ca, cb = sansio(args.mode, args.count, not args.no_offload, args.v6)
        if prof:
            prof.disable()
        print(f"run {i}: {args.mode} x{args.count}: client stack {ca:.1f} µs CPU/op, "
              f"server stack {cb:.1f} µs CPU/op{' (under cProfile)' if prof else ''}")
        if prof:
            pstats.Stats(prof).sort_stats(args.sort).print_stats(args.top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-offload", action="store_true")
    ap.add_argument("--v6", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumulative)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--mode", choices=("bulk", "rr", "crr"), default="bulk",
                    help="rr/crr: sans-IO CPU per 1-byte round trip / per connection")
    ap.add_argument("--count", type=int, default=5000, help="operations for rr/crr")
    args = ap.parse_args()
    if args.mode != "bulk":
        sansio_main(args)
        return
    total = args.mb << 20
    rates = []
    for i in range(args.runs):
        prof = cProfile.Profile() if args.profile and i == 0 else None
        if prof:
            prof.enable()
        elapsed, stats = trio.run(transfer, total, not args.no_offload, args.v6)
        if prof:
            prof.disable()
        rate = total / elapsed / 1e6
        rates.append(rate)
        print(f"run {i}: {args.mb} MiB in {elapsed:.2f} s = {rate:.1f} MB/s "
              f"({rate * 8 / 1000:.2f} Gbit/s) {stats}")
        if prof:
            pstats.Stats(prof).sort_stats(args.sort).print_stats(args.top)
    print(f"median {statistics.median(rates):.1f} MB/s")


if __name__ == "__main__":
    main()
