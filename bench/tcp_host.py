"""TCP benchmark: the Linux kernel against ``netvisor host``, next to kernel-to-kernel (issue 3).

    python3 bench/tcp_host.py [--size-mib 256] [--rr-seconds 5] [--repeat 3]
                              [--idle 10000] [--setups veth,tap-offload,tap,packet]

Setups (each in namespaces made here, prefix ``nvi``, removed at the end):
  veth         kernel <-> kernel over a veth pair between two namespaces, same tools
  veth-iperf3  the same link with iperf3 (C, no hashing): the link's own limit
  tap-offload  kernel <-> ``netvisor host --tap --offload`` (virtio-net header, TSO/GSO)
  tap          kernel <-> ``netvisor host --tap`` (1500-byte frames, checksums in Python)
  packet       kernel in one namespace <-> ``netvisor host --packet`` on a veth (AF_PACKET)

For each: bulk Gbit/s kernel -> peer (discard service, SHA-256 checked) and
peer -> kernel (source service), and 1-byte round trips per second against
the echo service (TCP_NODELAY on the kernel side); for netvisor setups also
the netvisor process's CPU (user + system, /proc/PID/stat) per MiB each way
and per round trip, the figure to compare across runs on a shared, noisy
machine. The kernel baseline's
servers are tests/integration/tcp_peer.py ``serve`` (same protocols, same
Python client with SHA-256, so ratios compare like with like; on this
machine the Python tools, not the veth, limit that row, hence veth-iperf3). With
``--idle N``: N idle established connections from the kernel to netvisor
(tap-offload) and the netvisor process's resident memory before and after.

Prints a table with the ratio of each figure to the veth one, and writes
bench/results/tcp_host-<time>.json. Figures are medians of --repeat runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.test_host_tap import start_host, stop
from tests.nsutil import Netns, create_netns, veth_pair

PEER = str(ROOT / "tests" / "integration" / "tcp_peer.py")
OUR, KERN = "10.94.0.2", "10.94.0.1"
DISCARD, SOURCE, ECHO = 9, 19, 7
MiB = 1 << 20


@dataclass
class Target:
    """Where the kernel client runs and what it connects to."""

    name: str
    client: Netns
    host: str
    ports: tuple[int, int, int]  # discard, source, echo
    pid: int | None = None  # the netvisor process, for memory figures
    namespaces: list[Netns] = field(default_factory=list)


def peer(ns: Netns, *args: object, timeout: float = 300) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NV_PEER_TIMEOUT="120")
    proc = ns.run([sys.executable, PEER, *map(str, args)], check=False, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"tcp_peer {args}: {proc.stderr[-1500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _host_args() -> list[str]:
    return ["--address", f"{OUR}/24", "--seed", "3", "--echo", str(ECHO),
            "--discard", str(DISCARD), "--source", str(SOURCE)]


@contextlib.contextmanager
def setup(name: str) -> Iterator[Target]:
    made: list[Netns] = []
    proc: subprocess.Popen[bytes] | None = None
    try:
        if name == "veth":
            a, b = create_netns("nvi"), create_netns("nvi")
            made += [a, b]
            veth_pair(a, "nvik0", b, "nvis0")
            a.ip("addr", "add", f"{KERN}/24", "dev", "nvik0")
            b.ip("addr", "add", f"{OUR}/24", "dev", "nvis0")
            srv = b.popen([sys.executable, PEER, "serve", "0.0.0.0", "9"],
                          stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=str(ROOT)))
            assert srv.stdout is not None
            if srv.stdout.readline().strip() != b"ready":
                raise RuntimeError("kernel baseline server did not start")
            yield Target(name, a, OUR, (9, 10, 11), None, made)
        elif name == "veth-iperf3":
            a, b = create_netns("nvi"), create_netns("nvi")
            made += [a, b]
            veth_pair(a, "nvik0", b, "nvis0")
            a.ip("addr", "add", f"{KERN}/24", "dev", "nvik0")
            b.ip("addr", "add", f"{OUR}/24", "dev", "nvis0")
            b.popen(["iperf3", "-s", "-p", "5201"], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            yield Target(name, a, OUR, (0, 0, 0), None, made)
        elif name in ("tap-offload", "tap"):
            ns = create_netns("nvi")
            made.append(ns)
            extra = ["--offload"] if name == "tap-offload" else []
            proc = start_host(ns, "--tap", "nvi0", "--peer-address", f"{KERN}/24",
                              *_host_args(), *extra)
            yield Target(name, ns, OUR, (DISCARD, SOURCE, ECHO), proc.pid, made)
        elif name == "packet":
            a, b = create_netns("nvi"), create_netns("nvi")
            made += [a, b]
            veth_pair(a, "nvik0", b, "nvin0")
            a.ip("addr", "add", f"{KERN}/24", "dev", "nvik0")
            proc = start_host(b, "--packet", "nvin0", *_host_args())
            yield Target(name, a, OUR, (DISCARD, SOURCE, ECHO), proc.pid, made)
        else:
            raise ValueError(f"unknown setup {name!r}")
    finally:
        if proc is not None:
            with contextlib.suppress(Exception):
                stop(proc)
        for ns in reversed(made):
            ns.delete()


def cpu_seconds(pid: int | None) -> tuple[float, float]:
    """(user, system) CPU seconds of process ``pid`` so far (/proc/PID/stat), or zeros."""
    if pid is None:
        return (0.0, 0.0)
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    hz = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) / hz, int(fields[12]) / hz)


def measure(t: Target, size: int, rr_seconds: float) -> dict[str, float]:
    if t.name == "veth-iperf3":
        return measure_iperf3(t, rr_seconds)
    d, s, e = t.ports
    c0 = cpu_seconds(t.pid)
    sent = peer(t.client, "send", t.host, d, size, 5)
    c1 = cpu_seconds(t.pid)
    got = peer(t.client, "recv", t.host, s, size, 6)
    c2 = cpu_seconds(t.pid)
    for r in (sent, got):
        if r["sha256"] != r["expected"]:
            raise RuntimeError(f"{t.name}: SHA-256 mismatch {r}")
    rr = peer(t.client, "rr", t.host, e, rr_seconds)
    c3 = cpu_seconds(t.pid)
    out = {"kernel->peer Gbit/s": sent["gbit_s"], "peer->kernel Gbit/s": got["gbit_s"],
           "round trips/s": rr["round_trips_per_s"], "rtt p50 us": rr["p50_us"]}
    if t.pid is not None:
        # The netvisor process's CPU per unit of work (user + system; the
        # system part is mostly the TAP/packet socket writes and reads).
        mib = size / MiB
        trips = rr["round_trips_per_s"] * rr_seconds
        out["netvisor CPU ms/MiB in"] = (sum(c1) - sum(c0)) * 1e3 / mib
        out["netvisor CPU ms/MiB out"] = (sum(c2) - sum(c1)) * 1e3 / mib
        out["netvisor CPU us/round trip"] = (sum(c3) - sum(c2)) * 1e6 / max(trips, 1)
        out["netvisor user us/round trip"] = (c3[0] - c2[0]) * 1e6 / max(trips, 1)
    return out


def measure_iperf3(t: Target, seconds: float) -> dict[str, float]:
    """Kernel-to-kernel with iperf3 (C, no hashing): the link's limit, not the tools'."""
    out: dict[str, float] = {}
    for label, extra in (("kernel->peer Gbit/s", []), ("peer->kernel Gbit/s", ["-R"])):
        proc = t.client.run(["iperf3", "-c", t.host, "-p", "5201", "-t", str(seconds), "-J",
                             *extra], timeout=seconds + 60)
        out[label] = json.loads(proc.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9
    out["round trips/s"] = float("nan")
    out["rtt p50 us"] = float("nan")
    return out


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def idle_connections(n: int) -> dict[str, float]:
    """``n`` idle established connections to netvisor (tap-offload): RSS before/after."""
    with setup("tap-offload") as t:
        assert t.pid is not None
        peer(t.client, "send", t.host, DISCARD, 4096, 1)  # warm up
        before = rss_kib(t.pid)
        env = dict(os.environ, PYTHONPATH=str(ROOT), NV_PEER_TIMEOUT="120")
        holder = t.client.popen([sys.executable, PEER, "idle", t.host, str(DISCARD), str(n)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert holder.stdout is not None and holder.stdin is not None
        line = holder.stdout.readline()
        if not line:
            raise RuntimeError("idle client failed")
        res = json.loads(line)
        time.sleep(2)  # let delayed ACKs and accept tasks settle
        after = rss_kib(t.pid)
        established = int(t.client.run(["sh", "-c", (f"ss -Htn state established dst {OUR} "
                                        "| wc -l")]).stdout.strip() or 0)
        holder.stdin.close()
        holder.wait(timeout=60)
        return {"connections": res["established"], "kernel-side established": established,
                "connect seconds": res["seconds"], "rss before MiB": before / 1024,
                "rss after MiB": after / 1024,
                "KiB per connection": (after - before) / max(1, res["established"])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--size-mib", type=int, default=256)
    p.add_argument("--rr-seconds", type=float, default=5)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--idle", type=int, default=0, help="also hold N idle connections")
    p.add_argument("--setups", default="veth-iperf3,veth,tap-offload,tap,packet")
    args = p.parse_args(argv)
    names = [n for n in args.setups.split(",") if n]
    results: dict[str, dict[str, float]] = {}
    for name in names:
        runs: list[dict[str, float]] = []
        with setup(name) as t:
            for _ in range(args.repeat):
                runs.append(measure(t, args.size_mib * MiB, args.rr_seconds))
        results[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{name}: {results[name]}", flush=True)
    base = results.get("veth")
    keys = ["kernel->peer Gbit/s", "peer->kernel Gbit/s", "round trips/s", "rtt p50 us"]
    print()
    print(f"bulk {args.size_mib} MiB each way, SHA-256 checked; rr {args.rr_seconds:g} s; "
          f"median of {args.repeat}")
    print(f"{'setup':<12}" + "".join(f"{k:>22}" for k in keys))
    for name, r in results.items():
        cells = []
        for k in keys:
            if r[k] != r[k]:  # NaN: not measured for this setup
                cells.append("-")
                continue
            ratio = f" ({r[k] / base[k]:.2f}x)" if base and base.get(k) else ""
            cells.append(f"{r[k]:.3g}{ratio}" if k != "rtt p50 us" else f"{r[k]:.0f}{ratio}")
        print(f"{name:<12}" + "".join(f"{c:>22}" for c in cells))
    out: dict[str, Any] = {"bulk_mib": args.size_mib, "results": results}
    if args.idle:
        idle = idle_connections(args.idle)
        out["idle"] = idle
        print()
        print(f"idle connections to netvisor (tap-offload): {json.dumps(idle)}")
    path = ROOT / "bench" / "results" / f"tcp_host-{int(time.time())}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwritten {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
