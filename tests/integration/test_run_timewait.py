"""A new run reusing a 4-tuple that a kernel server holds in TIME-WAIT.

TCP counts ISNs and timestamps on the host's clock with one secret per
boot (as Linux does), so a later `netvisor run` toward the same peer sends
a TSval above the earlier run's and the server's TIME-WAIT takes the SYN.
With a clock and secret per run, about half the reconnects were PAWS-rejected
(TcpExtPAWSTimewait) and waited for the SYN's retransmission.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_run_basic import STACK, nv_run
from tests.nsutil import Netns

pytestmark = pytest.mark.namespaces

SERVER = r'''
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.231.253.1", 9000)); s.listen()
print("ready", flush=True)
while True:
    c, _ = s.accept(); c.sendall(b"x"); c.close()   # the server closes first: its TIME-WAIT
'''

CLIENT = r'''
import socket
c = socket.socket()
c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
c.bind(("0.0.0.0", 40000))                          # the same 4-tuple every run
c.connect(("10.231.253.1", 9000))
print(c.recv(10).decode())
'''


def _tcpext(ns: Netns, name: str) -> int:
    lines = [ln.split() for ln in ns.run(["cat", "/proc/net/netstat"]).stdout.splitlines()
             if ln.startswith("TcpExt:")]
    return int(dict(zip(lines[0], lines[1], strict=True))[name])


def test_reconnect_into_a_servers_time_wait(make_netns: Callable[[str], Netns],
                                            tmp_path: Path) -> None:
    ns = make_netns("nvr")
    ns.ip("addr", "add", "10.231.253.1/32", "dev", "lo")
    (tmp_path / "srv.py").write_text(SERVER)
    (tmp_path / "cl.py").write_text(CLIENT)
    srv = ns.popen([sys.executable, str(tmp_path / "srv.py")], stdout=subprocess.PIPE)
    try:
        assert srv.stdout is not None and srv.stdout.readline() == b"ready\n"
        for _ in range(6):
            r = nv_run(ns, [f"--stack={STACK}", "--address", "10.231.252.2/30",
                            "--gateway", "10.231.252.1", "--no-nat"],
                       [sys.executable, str(tmp_path / "cl.py")])
            assert (r.returncode, r.stdout) == (0, "x\n"), r.stderr
        assert _tcpext(ns, "PAWSTimewait") == 0
    finally:
        srv.kill()
        srv.wait()
