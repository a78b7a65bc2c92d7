"""netvisor run after the program exits: what its TCP connections owe still goes out.

BUGS-H9 B5: a program that writes into its socket and exits at once (the
socketpair took the bytes) lost whatever the stack had not sent yet, and the
peer hung with neither data nor FIN. Now the stack keeps running until the
data and FIN are acknowledged (capped by --drain-timeout), then resets what
is left.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_run_basic import STACK, nv_run
from tests.nsutil import Netns

pytestmark = pytest.mark.namespaces

GW, ADDR = "10.231.251.1", "10.231.251.2/30"
PORT = 5201

RECEIVER = r'''
import socket, sys, time
rcvbuf, delay = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if rcvbuf:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
s.bind(("0.0.0.0", int(sys.argv[3]))); s.listen(); print("listening", flush=True)
c, _ = s.accept(); c.settimeout(20)
time.sleep(delay)
n, end = 0, "eof"
try:
    while d := c.recv(1 << 16):
        n += len(d)
except ConnectionResetError:
    end = "reset"
except socket.timeout:
    end = "hang"
print(n, end, flush=True)
'''

SENDER = r'''
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
if sys.argv[3] == "fill":   # as much as the buffers take without waiting
    s.setblocking(False)
    try:
        while True:
            s.send(b"z" * 65536)
    except BlockingIOError:
        pass
else:
    s.sendall(b"z" * int(sys.argv[3]))
s.close()
'''


def _receiver(ns: Netns, tmp_path: Path, rcvbuf: int, delay: float):  # type: ignore[no-untyped-def]
    (tmp_path / "recv.py").write_text(RECEIVER)
    import subprocess
    proc = ns.popen([sys.executable, str(tmp_path / "recv.py"), str(rcvbuf), str(delay),
                     str(PORT)],
                    stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "listening\n"
    return proc


def _send(ns: Netns, tmp_path: Path, size: int | str, options: list[str]
          ) -> tuple[int, float]:
    (tmp_path / "send.py").write_text(SENDER)
    t0 = time.monotonic()
    r = nv_run(ns, [f"--stack={STACK}", "--address", ADDR, "--gateway", GW, "--no-nat",
                    *options],
               [sys.executable, str(tmp_path / "send.py"), GW, str(PORT), str(size)],
               timeout=60)
    assert r.returncode == 0, r.stderr
    return r.returncode, time.monotonic() - t0


def test_data_written_before_exit_is_delivered_with_fin(
        make_netns: Callable[[str], Netns], tmp_path: Path) -> None:
    ns = make_netns("nvq")
    recv = _receiver(ns, tmp_path, 0, 0.0)
    size = 2 << 20
    # 2 MiB at 16 Mbit/s: ~1 s on the wire, far longer than the program lives.
    _send(ns, tmp_path, size, ["--egress-rate", "16mbit", "--egress-burst", "64kb"])
    out, _ = recv.communicate(timeout=30)
    assert out.split() == [str(size), "eof"]


def test_what_is_left_after_the_drain_timeout_is_reset(
        make_netns: Callable[[str], Netns], tmp_path: Path) -> None:
    ns = make_netns("nvq")
    # The receiver does not read for 3 s with a small buffer: the stack cannot
    # send everything within --drain-timeout 0.5 and resets the connection.
    recv = _receiver(ns, tmp_path, 32768, 3.0)
    _, elapsed = _send(ns, tmp_path, "fill", ["--drain-timeout", "0.5"])
    assert elapsed < 2.9  # left after the drain timeout, not when the peer read
    out, _ = recv.communicate(timeout=30)
    assert out.split()[1] == "reset"
