"""In-process TCP bulk transfer between two NetStacks over an in-memory cable.

No kernel, no namespaces: the stack, TCP and the trio driver alone, with the
offloads a TAP gives (checksum offload + 64 KB GSO frames passed whole, as
``memory_pair(offload=True)`` models a veth). Both stacks run in one process
and share its CPU, so the figure is "stack work per byte", the number the
per-segment Python overhead decides.

    python3 bench/tcp_inproc.py --mb 256            # MB/s, median of --runs
    python3 bench/tcp_inproc.py --mb 64 --profile   # plus the top cProfile entries
    python3 bench/tcp_inproc.py --no-offload        # 1500-byte frames, full checksums
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
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-offload", action="store_true")
    ap.add_argument("--v6", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumulative)")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
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
