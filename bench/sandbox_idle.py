"""Supervisor memory with N idle connections to a sandboxed server (issue 4: 10,000 under 300 MB).

    python3 bench/sandbox_idle.py [--count 10000]

In a scratch namespace (prefix ``nvb``, removed at the end, also on failure),
``netvisor run`` serves a Python program that accepts and keeps ``--count``
connections; a kernel client in the same namespace opens them over the TAP
and keeps them idle. Prints the supervisor's (the ``netvisor run`` process)
resident memory before and with the connections held.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.nsutil import create_netns  # noqa: E402

SERVER = r'''
import socket, sys
n = int(sys.argv[1])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8000)); s.listen(4096)
print("ready", flush=True)
held = [s.accept()[0] for _ in range(n)]
print("held", len(held), flush=True)
sys.stdin.readline()
'''

CLIENT = r'''
import socket, sys
held = [socket.create_connection(("10.231.250.2", 8000), timeout=30)
        for _ in range(int(sys.argv[1]))]
print("connected", len(held), flush=True)
sys.stdin.readline()
'''


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
    return kib / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=10000)
    args = p.parse_args()
    ns = create_netns("nvb")
    tmp = Path(tempfile.mkdtemp(prefix="nv-idle-"))
    (tmp / "srv.py").write_text(SERVER)
    (tmp / "cl.py").write_text(CLIENT)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ns.run(["sysctl", "-w", "net.ipv4.ip_local_port_range=10000 60000"])
        srv = ns.popen([sys.executable, "-m", "netvisor", "run", "--address", "10.231.250.2/24",
                        "--gateway", "10.231.250.1", "--no-nat", "--",
                        sys.executable, str(tmp / "srv.py"), str(args.count)],
                       stdout=subprocess.PIPE, stdin=subprocess.PIPE)
        procs.append(srv)
        assert srv.stdout is not None and srv.stdout.readline() == b"ready\n"
        before = rss_mib(srv.pid)
        cl = ns.popen([sys.executable, str(tmp / "cl.py"), str(args.count)],
                      stdout=subprocess.PIPE, stdin=subprocess.PIPE)
        procs.append(cl)
        started = time.monotonic()
        assert cl.stdout is not None and cl.stdout.readline().startswith(b"connected")
        took = time.monotonic() - started
        assert srv.stdout.readline().startswith(b"held")
        time.sleep(2)   # let the last handshakes' buffers settle
        held = rss_mib(srv.pid)
        print(f"supervisor RSS: {before:.0f} MiB idle, {held:.0f} MiB with {args.count} "
              f"connections ({took:.1f} s to open them)")
    finally:
        for proc in reversed(procs):
            proc.kill()
            proc.wait()
        ns.delete()


if __name__ == "__main__":
    main()
