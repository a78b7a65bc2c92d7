"""Benchmark runner: netvisor next to its peers, measured in the same run.

    python3 bench/run.py sandbox [--seconds 5] [--repeat 3] [--setups veth,slirp4netns,netvisor]
                                 [--tests iperf,rr,cps] [--profile DIR]

``sandbox``: the same unmodified client programs (iperf3, a 1-byte ping-pong,
a connect/close loop from bench/tools/) run against a kernel server:
  veth        client in its own namespace, plain veth to the server's: the physical limit
  slirp4netns client namespace wired by slirp4netns, server on the "host" loopback
  netvisor    client under `netvisor run` (default TAP wiring) in the server's namespace
and the table shows each figure and its ratio to slirp4netns and to veth.

Every namespace is made here and removed at the end (also on failure or
Ctrl-C); servers listen only inside them; nothing is routed off the machine.
Figures are medians of --repeat runs. Results also go to bench/results/*.json.

For netvisor the table adds the supervisor's own CPU time (user+system, from
the program's start to its exit) per operation: per round trip, per
connection, per MB moved by iperf3. Unlike the rates it hardly depends on
what else the (shared) machine runs. ``--profile DIR`` also writes a
cProfile of each netvisor client run to DIR (``python3 -m pstats``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.nsutil import Netns, create_netns, sh, veth_pair  # noqa: E402

TOOLS = ROOT / "bench" / "tools"
IPERF_PORT, RR_PORT, CPS_PORT = 5201, 5301, 5401


@dataclass
class Setup:
    """Where the client runs and what address reaches the server's namespace."""

    name: str
    server_ns: Netns
    client_prefix: list[str]
    target: str
    cleanup: list[Callable[[], None]] = field(default_factory=list)
    cpu_report: bool = False
    """The client prefix is ``netvisor run ... --``: it takes --cpu-report/--profile."""


@contextlib.contextmanager
def veth_setup() -> Iterator[Setup]:
    server, client = create_netns("nvbS"), create_netns("nvbC")
    try:
        veth_pair(server, "nvb0", client, "nvb1")
        server.ip("addr", "add", "10.250.0.1/24", "dev", "nvb0")
        client.ip("addr", "add", "10.250.0.2/24", "dev", "nvb1")
        yield Setup("veth", server, ["ip", "netns", "exec", client.name], "10.250.0.1")
    finally:
        client.delete()
        server.delete()


@contextlib.contextmanager
def slirp_setup() -> Iterator[Setup]:
    if not shutil.which("slirp4netns"):
        raise RuntimeError("slirp4netns is not installed (apt-get install slirp4netns)")
    server, client = create_netns("nvbS"), create_netns("nvbC")
    try:
        slirp = server.popen(["slirp4netns", "--configure", "--mtu=65520", "--disable-dns",
                              "--netns-type=path", client.path, "tap0"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if _tap_exists(client) and "10.0.2.100" in client.ip("-4", "addr", "show", "dev", "tap0"):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError(f"slirp4netns did not configure tap0 (exit {slirp.poll()})")
        # slirp adds a default route: remove it so nothing can leave the machine.
        client.ip("route", "del", "default")
        yield Setup("slirp4netns", server, ["ip", "netns", "exec", client.name], "10.0.2.2")
    finally:
        client.delete()
        server.delete()


def _tap_exists(ns: Netns) -> bool:
    return sh(["ip", "-n", ns.name, "link", "show", "tap0"], check=False).returncode == 0


@contextlib.contextmanager
def netvisor_setup() -> Iterator[Setup]:
    server = create_netns("nvbS")
    try:
        prefix = ["ip", "netns", "exec", server.name, sys.executable, "-m", "netvisor", "run",
                  "--address", "10.252.0.2/24", "--gateway", "10.252.0.1", "--"]
        yield Setup("netvisor", server, prefix, "10.252.0.1", cpu_report=True)
    finally:
        server.delete()


SETUPS: dict[str, Callable[[], contextlib.AbstractContextManager[Setup]]] = {
    "veth": veth_setup, "slirp4netns": slirp_setup, "netvisor": netvisor_setup,
}


def _start_servers(setup: Setup) -> None:
    ns = setup.server_ns
    ns.popen(["iperf3", "-s", "-B", "0.0.0.0", "-p", str(IPERF_PORT)],
             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for tool, port in (("rr.py", RR_PORT), ("cps.py", CPS_PORT)):
        proc = ns.popen([sys.executable, str(TOOLS / tool), "server", "0.0.0.0", str(port)],
                        stdout=subprocess.PIPE)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"{tool} server did not start")
    time.sleep(0.3)  # iperf3 prints nothing reliable when ready


PROFILE_DIR: Path | None = None
"""--profile: where the netvisor client runs' cProfile files go."""


def _client(setup: Setup, argv: list[str], timeout: float, tag: str = "") -> tuple[str, float]:
    """The client's stdout, and (netvisor) the supervisor's CPU seconds (else nan)."""
    prefix = list(setup.client_prefix)
    report = None
    if setup.cpu_report:
        fd, report = tempfile.mkstemp(prefix="nvcpu-", suffix=".json")
        os.close(fd)
        extra = ["--cpu-report", report]
        if PROFILE_DIR is not None and tag:
            extra += ["--profile", str(PROFILE_DIR / f"{tag}-{int(time.time())}.prof")]
        cut = prefix.index("--")
        prefix[cut:cut] = extra
    try:
        proc = subprocess.run(prefix + argv, capture_output=True, text=True, timeout=timeout,
                              check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{setup.name}: {' '.join(argv[:2])} failed: "
                               f"{proc.stderr.strip()[-500:]}")
        cpu = float("nan")
        if report is not None:
            data = json.loads(Path(report).read_text() or "{}")
            if data:
                cpu = data["user"] + data["system"]
        return proc.stdout, cpu
    finally:
        if report is not None:
            Path(report).unlink(missing_ok=True)


TESTS = ("iperf", "rr", "cps")


def measure(setup: Setup, seconds: float, tests: tuple[str, ...] = TESTS) -> dict[str, float]:
    out: dict[str, float] = {}
    nan = float("nan")
    if "iperf" in tests:
        for label, extra, tag in (("iperf3 client->server Gbit/s", [], "iperf-up"),
                                  ("iperf3 server->client Gbit/s", ["-R"], "iperf-down")):
            text, cpu = _client(setup, ["iperf3", "-c", setup.target, "-p", str(IPERF_PORT),
                                        "-t", str(seconds), "-J", *extra],
                                timeout=seconds + 60, tag=tag)
            report = json.loads(text)
            out[label] = report["end"]["sum_received"]["bits_per_second"] / 1e9
            moved = report["end"]["sum_received"]["bytes"] / 1e6
            out[label.replace("Gbit/s", "CPU us/MB")] = cpu / moved * 1e6 if moved else nan
    if "rr" in tests:
        text, cpu = _client(setup, [sys.executable, str(TOOLS / "rr.py"), "client",
                                    setup.target, str(RR_PORT), str(seconds)],
                            timeout=seconds + 60, tag="rr")
        rr = json.loads(text)
        out["round trips/s"] = rr["round_trips_per_s"]
        out["round trip p50 us"] = rr["p50_us"]
        out["CPU us per round trip"] = cpu / (rr["round_trips_per_s"] * seconds) * 1e6
    if "cps" in tests:
        text, cpu = _client(setup, [sys.executable, str(TOOLS / "cps.py"), "client",
                                    setup.target, str(CPS_PORT), str(seconds)],
                            timeout=seconds + 60, tag="cps")
        cps = json.loads(text)
        out["connections/s"] = cps["connections_per_s"]
        out["CPU us per connection"] = cpu / (cps["connections_per_s"] * seconds) * 1e6
    return out


def run_sandbox(names: list[str], seconds: float, repeat: int,
                tests: tuple[str, ...] = TESTS) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for name in names:
        runs = []
        try:
            with SETUPS[name]() as setup:
                _start_servers(setup)
                for _ in range(repeat):
                    runs.append(measure(setup, seconds, tests))
        except Exception as exc:  # a peer that fails is reported, the others still run
            print(f"{name}: FAILED: {exc}", file=sys.stderr)
            continue
        results[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return results


def print_table(results: dict[str, dict[str, float]]) -> None:
    if not results:
        print("no results")
        return
    metrics = list(next(iter(results.values())))
    width = max(len(m) for m in metrics) + 2
    print(f"{'metric':<{width}}" + "".join(f"{n:>16}" for n in results)
          + "".join(f"{'nv/' + ref:>16}" for ref in ("slirp4netns", "veth") if ref in results
                    and "netvisor" in results))
    for metric in metrics:
        row = f"{metric:<{width}}" + "".join(
            f"{results[n].get(metric, float('nan')):>16.3f}" for n in results)
        if "netvisor" in results:
            for ref in ("slirp4netns", "veth"):
                if ref in results:
                    base = results[ref].get(metric, float("nan"))
                    row += f"{results['netvisor'][metric] / base if base else float('nan'):>16.2f}"
        print(row)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", choices=["sandbox"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--setups", default="veth,slirp4netns,netvisor")
    parser.add_argument("--tests", default=",".join(TESTS),
                        help="which measurements (iperf, rr, cps; comma-separated)")
    parser.add_argument("--profile", metavar="DIR",
                        help="write a cProfile of every netvisor client run to DIR")
    args = parser.parse_args()
    tests = tuple(t for t in args.tests.split(",") if t)
    if set(tests) - set(TESTS):
        parser.error(f"unknown test(s) {sorted(set(tests) - set(TESTS))}; choose from {TESTS}")
    global PROFILE_DIR
    if args.profile:
        PROFILE_DIR = Path(args.profile).resolve()
        PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.setups.split(",") if n]
    unknown = [n for n in names if n not in SETUPS]
    if unknown:
        parser.error(f"unknown setup(s) {unknown}; choose from {sorted(SETUPS)}")
    results = run_sandbox(names, args.seconds, args.repeat, tests)
    print_table(results)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"{args.suite}-{int(time.time())}.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
