"""A signal while a trapped call blocks: EINTR (then CPython retries) or a
kernel restart (SA_RESTART); no connection is lost and connect completes;
no datagram or byte is lost around an interrupted recvfrom/recvmsg."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_run_basic import STACK, kernel_and_netvisor, nv_run
from tests.nsutil import Netns

pytestmark = pytest.mark.namespaces

ACCEPT_PROGRAM = r'''
import signal, socket, sys, threading, time
hits = []
signal.signal(signal.SIGALRM, lambda *a: hits.append(1))
if sys.argv[1] == "restart":
    signal.siginterrupt(signal.SIGALRM, False)   # SA_RESTART: the kernel re-issues accept
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
port = srv.getsockname()[1]
def client():
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
    time.sleep(1.0)
    c = socket.create_connection(("127.0.0.1", port)); c.sendall(b"ping"); c.close()
threading.Thread(target=client).start()
signal.setitimer(signal.ITIMER_REAL, 0.3, 0.2)
a, _ = srv.accept()
signal.setitimer(signal.ITIMER_REAL, 0)
print(len(hits) >= 1, a.recv(10))
'''

CONNECT_PROGRAM = r'''
import signal, socket, sys
hits = []
signal.signal(signal.SIGALRM, lambda *a: hits.append(1))
if sys.argv[1] == "restart":
    signal.siginterrupt(signal.SIGALRM, False)
signal.setitimer(signal.ITIMER_REAL, 0.3, 0.3)
c = socket.socket()
c.connect(("10.231.255.1", 9999))      # SYNs dropped for the first ~1.5 s
signal.setitimer(signal.ITIMER_REAL, 0)
c.sendall(b"hello")
print(len(hits) >= 1, c.recv(10))
'''

ECHO_SERVER = r'''
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.231.255.1", 9999)); s.listen()
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(c.recv(100)); c.close()
'''


@pytest.mark.parametrize("platform", ["seccomp", "ptrace"])
@pytest.mark.parametrize("mode", ["eintr", "restart"])
def test_signal_during_blocking_accept(make_netns: Callable[[str], Netns], tmp_path: Path,
                                       mode: str, platform: str) -> None:
    ns = make_netns("nvr")
    prog = tmp_path / "accept.py"
    prog.write_text(ACCEPT_PROGRAM)
    r = nv_run(ns, [f"--stack={STACK}", "--network=none", f"--platform={platform}"],
               [sys.executable, str(prog), mode])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "b'ping'"]


@pytest.mark.parametrize("platform", ["seccomp", "ptrace"])
@pytest.mark.parametrize("mode", ["eintr", "restart"])
def test_signal_during_blocking_connect(make_netns: Callable[[str], Netns], tmp_path: Path,
                                        mode: str, platform: str) -> None:
    ns = make_netns("nvr")
    ns.ip("addr", "add", "10.231.255.1/32", "dev", "lo")
    (tmp_path / "echo.py").write_text(ECHO_SERVER)
    server = ns.popen([sys.executable, str(tmp_path / "echo.py")], stdout=subprocess.PIPE)
    assert server.stdout is not None and server.stdout.readline() == b"ready\n"
    ns.run(["nft", "-f", "-"], input="add table inet nvrt\n"
           "add chain inet nvrt input { type filter hook input priority 0 ; }\n"
           "add rule inet nvrt input tcp dport 9999 tcp flags & (syn|ack) == syn drop\n")
    timer = threading.Timer(1.5, lambda: ns.run(["nft", "delete", "table", "inet", "nvrt"]))
    timer.start()
    prog = tmp_path / "connect.py"
    prog.write_text(CONNECT_PROGRAM)
    started = time.monotonic()
    try:
        r = nv_run(ns, [f"--stack={STACK}", f"--platform={platform}"],
                   [sys.executable, str(prog), mode])
    finally:
        timer.join()
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "b'hello'"]
    assert time.monotonic() - started > 1.5   # it really waited for the SYN retransmit


RECV_PROGRAM = r'''
import signal, socket, threading, time

class Interrupted(Exception):
    pass

def raise_handler(signum, frame):
    raise Interrupted()

hits = []
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(("127.0.0.1", 0))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
def later(delay, data):
    threading.Timer(delay, lambda: s.sendto(data, r.getsockname())).start()

# 1. SA_RESTART and a handler that returns: the kernel restarts recvfrom; the datagram arrives
signal.signal(signal.SIGALRM, lambda n, f: hits.append(n))
signal.siginterrupt(signal.SIGALRM, False)
signal.setitimer(signal.ITIMER_REAL, 0.3)
later(0.8, b"after-restart")
print("restart", r.recvfrom(100)[0], len(hits))

# 2. a handler that raises: the blocked call ends (EINTR seen by Python), nothing is lost
signal.signal(signal.SIGALRM, raise_handler)
signal.setitimer(signal.ITIMER_REAL, 0.3)
try:
    r.recvfrom(100)
    print("eintr", "not interrupted")
except Interrupted:
    print("eintr", "interrupted")
s.sendto(b"kept", r.getsockname())
print("eintr-next", r.recvfrom(100)[0])

# 3. TCP: a blocking recvmsg (trapped for TCP) interrupted, then the data still arrives whole
srv = socket.create_server(("127.0.0.1", 0))
c = socket.create_connection(srv.getsockname()); a, _ = srv.accept()
signal.setitimer(signal.ITIMER_REAL, 0.3)
try:
    a.recvmsg(100)
    print("tcp", "not interrupted")
except Interrupted:
    print("tcp", "interrupted")
c.sendall(b"tcp-kept")
print("tcp-next", a.recvmsg(100)[0])
signal.signal(signal.SIGALRM, lambda n, f: hits.append(n))
signal.setitimer(signal.ITIMER_REAL, 0.3)
threading.Timer(0.8, lambda: c.sendall(b"tcp-restart")).start()
print("tcp-restart", a.recvmsg(100)[0], len(hits))
'''


@pytest.mark.parametrize("platform", ["seccomp", "ptrace"])
def test_signal_during_blocking_receive_like_linux(make_netns: Callable[[str], Netns],
                                                   tmp_path: Path, platform: str) -> None:
    """UDP recvfrom and TCP recvmsg (trapped) interrupted by SIGALRM, restarted or
    ended by a raising handler: the same lines as on the kernel, nothing lost."""
    ns = make_netns("nvr")
    ref, got = kernel_and_netvisor(ns, tmp_path, RECV_PROGRAM,
                                   ("--network=none", f"--platform={platform}"))
    assert "interrupted" in ref.stdout and "tcp-restart b'tcp-restart' 2" in ref.stdout
    assert got.stdout.splitlines() == ref.stdout.splitlines()
