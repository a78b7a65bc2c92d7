"""Supervisor CPU per TCP connection set up inside the sandbox.

    python3 bench/sandbox_connect_cpu.py [--count 1000] [--root REPO] [--netns NAME]

Runs ``netvisor run --network=none`` (from ``--root``'s checkout) on a Python
program that connects, accepts and closes ``--count`` loopback connections,
twice (20 connections, then 20 + count) inside a scratch network namespace,
and prints the CPU of everything but the program (``os.wait4`` rusage of
netvisor and its descendants minus the program's own getrusage), per
connection from the difference of the two runs (so startup cancels out).
Compare two checkouts in the same minute: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

PROGRAM = r'''
import resource, socket, sys
n = int(sys.argv[1])
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(128); addr = srv.getsockname()
for _ in range(n):
    c = socket.socket(); c.connect(addr); a, _ = srv.accept(); c.close(); a.close()
ru = resource.getrusage(resource.RUSAGE_SELF)
print(ru.ru_utime + ru.ru_stime)
'''


def _run(root: str, netns: str, prog: str, n: int) -> float:
    env = dict(os.environ, PYTHONPATH=root)
    p = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-m", "netvisor", "run",
                          "--network=none", "--", sys.executable, prog, str(n)],
                         env=env, cwd=root, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    if status != 0:
        raise SystemExit(f"netvisor run failed ({status})")
    return ru.ru_utime + ru.ru_stime - float(out.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--netns", default=f"nvbench{os.getpid()}")
    args = ap.parse_args()
    subprocess.run(["ip", "netns", "add", args.netns], check=True)
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".py") as f:
            f.write(PROGRAM)
            f.flush()
            base = _run(args.root, args.netns, f.name, 20)
            full = _run(args.root, args.netns, f.name, 20 + args.count)
        per = (full - base) / args.count
        print(f"supervisor CPU per connection: {per * 1e3:.3f} ms "
              f"(startup {base:.3f} s, {args.count} connections {full - base:.3f} s)")
    finally:
        subprocess.run(["ip", "netns", "del", args.netns], check=False)


if __name__ == "__main__":
    main()
