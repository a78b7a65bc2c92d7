"""A/B of the supervisor's CPU per operation: two source trees, interleaved.

    python3 bench/ab.py [--rounds 5] [--seconds 3] [--tests rr,cps] TREE_A TREE_B

Each TREE is a checkout (``git archive REV | tar -x -C DIR`` plus the built
``netvisor/tcpip/wire/_checksum_c.abi3.so``); its client runs are ``netvisor
run`` with ``PYTHONPATH=TREE``. Rounds alternate A and B in the same minutes
(the VM's shared cores move rates 2-4x; CPU per operation moves far less),
and every client run gets a fresh ``bench/run.py`` server namespace: a
kernel server keeps a TIME-WAIT per ``cps.py`` connection, and a later run
whose SYN meets one with a newer TS.Recent is PAWS-rejected and waits 1 s
(docs/ARCHITECTURE.md, "A new run into a server's TIME-WAIT": fixed since,
but trees from before the fix still meet it). Prints each run
and the medians and minima: CPU (user+system, and user) per round trip /
connection.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench.run as br  # noqa: E402

TESTS = {"rr": ("rr.py", br.RR_PORT, "round_trips_per_s"),
         "cps": ("cps.py", br.CPS_PORT, "connections_per_s")}


def one_run(tree: str, test: str, seconds: float) -> tuple[float, float, float]:
    """(operations/s, CPU us per operation, user CPU us per operation)."""
    tool, port, key = TESTS[test]
    with br.netvisor_setup() as setup:
        br._start_servers(setup)
        fd, report = tempfile.mkstemp(prefix="nvcpu-", suffix=".json")
        os.close(fd)
        try:
            prefix = list(setup.client_prefix)
            cut = prefix.index("--")
            prefix[cut:cut] = ["--cpu-report", report]
            proc = subprocess.run(
                prefix + [sys.executable, str(br.TOOLS / tool), "client", setup.target,
                          str(port), str(seconds)],
                capture_output=True, text=True, timeout=seconds + 60, check=False,
                env=dict(os.environ, PYTHONPATH=tree))
            if proc.returncode != 0:
                raise RuntimeError(f"{tree} {test}: {proc.stderr.strip()[-500:]}")
            cpu = json.loads(Path(report).read_text())
        finally:
            Path(report).unlink(missing_ok=True)
    rate = json.loads(proc.stdout)[key]
    n = rate * seconds
    return rate, (cpu["user"] + cpu["system"]) / n * 1e6, cpu["user"] / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs=2, metavar="TREE")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--tests", default="rr,cps")
    args = ap.parse_args()
    tests = [t for t in args.tests.split(",") if t]
    if set(tests) - set(TESTS):
        ap.error(f"tests are {sorted(TESTS)}")
    res: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for _ in range(args.rounds):
        for tree in args.trees:
            for test in tests:
                r = one_run(tree, test, args.seconds)
                res.setdefault((tree, test), []).append(r)
                print(f"{tree:24s} {test:4s} {r[0]:8.0f}/s  CPU {r[1]:7.1f} us  "
                      f"(user {r[2]:6.1f})", flush=True)
    # Contention only adds CPU per operation (cache, wakeups), so the minimum
    # is the steadier estimate of the cost itself; the median is shown beside.
    print("medians | minima:")
    for (tree, test), runs in res.items():
        med = [statistics.median(x[i] for x in runs) for i in range(3)]
        low = [min(x[i] for x in runs) for i in (1, 2)]
        print(f"{tree:24s} {test:4s} {med[0]:8.0f}/s  CPU {med[1]:7.1f} us  (user {med[2]:6.1f})"
              f"  | CPU {low[0]:7.1f} us  (user {low[1]:6.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
