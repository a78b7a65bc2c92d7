"""Helpers for the ``netvisor run`` integration tests (helper H5's area)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.nsutil import Netns

REPO = Path(__file__).resolve().parents[2]
PROGRAMS = Path(__file__).resolve().parent / "run_programs"


def run_argv(*options: str) -> list[str]:
    """argv of ``netvisor run OPTIONS``; the caller appends ``--`` and the command."""
    return [sys.executable, "-m", "netvisor", "run", *options]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + (":" + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def nv_run(ns: Netns, options: list[str], cmd: list[str], *, timeout: float = 60,
           **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``netvisor run OPTIONS -- CMD`` inside test namespace ``ns``."""
    return subprocess.run(ns.argv([*run_argv(*options), "--", *cmd]), capture_output=True,
                          text=True, timeout=timeout, env=env(), cwd=REPO,
                          **kwargs)  # type: ignore[call-overload]


def nv_popen(ns: Netns, options: list[str], cmd: list[str], **kwargs: object
             ) -> subprocess.Popen[str]:
    proc = subprocess.Popen(ns.argv([*run_argv(*options), "--", *cmd]), text=True,
                            env=env(), cwd=REPO, **kwargs)  # type: ignore[call-overload]
    ns.processes.append(proc)  # type: ignore[arg-type]
    return proc


# ---------------------------------------------------------------- the tests
import hashlib  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import pytest  # noqa: E402

pytestmark = pytest.mark.namespaces

# The stack that serves the sandbox: netvisor's (default) or "kernel", the
# test double (the supervisor's own kernel sockets, in the test namespace).
STACK = os.environ.get("NETVISOR_TEST_STACK", "netstack")


def kernel_and_netvisor(ns: Netns, tmp_path: Path, program: str,
                        options: tuple[str, ...] = ("--network=none",)
                        ) -> tuple[subprocess.CompletedProcess[str],
                                   subprocess.CompletedProcess[str]]:
    """Run ``program`` directly in ``ns`` (the reference, which must succeed)
    and under ``netvisor run OPTIONS`` (which must exit 0): both results."""
    prog = tmp_path / "program.py"
    prog.write_text(program)
    ref = ns.run([sys.executable, str(prog)], timeout=60)
    got = nv_run(ns, [f"--stack={STACK}", *options], [sys.executable, str(prog)])
    assert got.returncode == 0, got.stderr
    return ref, got

LOOPBACK_PROGRAM = r'''
import socket, sys, threading
fam = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
host = "::1" if fam == socket.AF_INET6 else "127.0.0.1"
srv = socket.socket(fam, socket.SOCK_STREAM)
srv.bind((host, 0)); srv.listen()
port = srv.getsockname()[1]
def serve():
    c, _ = srv.accept()
    data = b""
    while (d := c.recv(65536)):
        data += d
    c.sendall(data[::-1]); c.close()
t = threading.Thread(target=serve); t.start()
cl = socket.create_connection((host, port))
assert cl.getpeername()[1] == port
payload = bytes(range(256)) * 4000
cl.sendall(payload); cl.shutdown(socket.SHUT_WR)
got = b""
while (d := cl.recv(65536)):
    got += d
t.join()
print("ok" if got == payload[::-1] else "mismatch", len(got))
'''


@pytest.fixture
def ns(make_netns: Callable[[str], Netns]) -> Netns:
    return make_netns("nvr")


def test_exit_status_is_the_programs(ns: Netns) -> None:
    assert nv_run(ns, [f"--stack={STACK}"], ["true"]).returncode == 0
    assert nv_run(ns, [f"--stack={STACK}"], ["sh", "-c", "exit 7"]).returncode == 7
    r = nv_run(ns, [f"--stack={STACK}"], ["sh", "-c", "kill -TERM $$"])
    assert r.returncode == 128 + signal.SIGTERM


def test_command_not_found_is_127_with_one_line(ns: Netns) -> None:
    r = nv_run(ns, [f"--stack={STACK}"], ["nvr-no-such-command"])
    assert r.returncode == 127
    assert r.stderr.strip() == "netvisor: nvr-no-such-command: command not found"


def test_missing_command_is_a_usage_error(ns: Netns) -> None:
    r = nv_run(ns, [], [])
    assert r.returncode == 2 and "missing CMD" in r.stderr


def test_program_runs_in_empty_namespaces(ns: Netns) -> None:
    r = nv_run(ns, [f"--stack={STACK}"],
               ["sh", "-c", "echo $$; ls /sys/class/net; cat /proc/net/dev | wc -l"])
    pid, *ifaces, devlines = r.stdout.split()
    assert pid == "2"            # PID 1 is netvisor's init in the new PID namespace
    assert ifaces == ["lo"]      # a fresh network namespace
    assert r.returncode == 0


def test_signal_forwarded_and_descendants_die(ns: Netns, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    # Durations unique to this run: pgrep sees every process of the machine.
    tag = f"{os.getpid() % 1000:03d}{time.monotonic_ns() % 1000:03d}"
    proc = nv_popen(ns, [f"--stack={STACK}"],
                    ["sh", "-c", f"sleep 300.{tag} & sleep 301.{tag} & touch {marker}; wait"])
    deadline = time.monotonic() + 20
    while not marker.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    left = subprocess.run(["pgrep", "-f", f"sleep 30[01].{tag}"], capture_output=True, text=True)
    assert left.stdout.strip() == ""


DIES_MID_CALL = r'''
import os, signal, socket, threading, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
srv = socket.create_server(("127.0.0.1", 0))
c = socket.create_connection(srv.getsockname()); a, _ = srv.accept()
c.sendall(b"x" * 100000)
threading.Thread(target=u.recvfrom, args=(100,), daemon=True).start()
threading.Thread(target=srv.accept, daemon=True).start()
threading.Thread(target=lambda: c.sendall(b"y" * 10_000_000), daemon=True).start()
time.sleep(0.5)
print("dying", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
'''


@pytest.mark.parametrize("platform", ["seccomp", "ptrace"])
def test_program_killed_during_blocking_calls(ns: Netns, tmp_path: Path, platform: str) -> None:
    """SIGKILL while threads block in recvfrom and accept and one sends into a
    full connection: netvisor reports 128+9, no internal error, nothing hangs."""
    prog = tmp_path / "dies.py"
    prog.write_text(DIES_MID_CALL)
    r = nv_run(ns, [f"--stack={STACK}", "--network=none", f"--platform={platform}"],
               [sys.executable, str(prog)])
    assert (r.returncode, r.stdout, r.stderr) == (128 + signal.SIGKILL, "dying\n", "")


@pytest.mark.parametrize("family", ["4", "6"])
def test_loopback_client_server(ns: Netns, tmp_path: Path, family: str) -> None:
    prog = tmp_path / "loop.py"
    prog.write_text(LOOPBACK_PROGRAM)
    r = nv_run(ns, [f"--stack={STACK}", "--network=none"], [sys.executable, str(prog), family])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok", "1024000"]


def _http_server(ns: Netns, root: Path, bind: str, port: int) -> None:
    server = ns.popen([sys.executable, "-m", "http.server", "-d", str(root), "-b", bind,
                       str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while ns.run(["sh", "-c", f"ss -ltn | grep -q :{port}"], check=False).returncode:
        assert time.monotonic() < deadline and server.poll() is None
        time.sleep(0.1)


ACCEPTANCE_BLOB = 100 << 20  # the download size for curl and wget


@pytest.mark.parametrize("family", ["4", "6"])
def test_curl_fetches_from_kernel_http_server(ns: Netns, tmp_path: Path, family: str) -> None:
    """Default wiring: TAP + /30 + ULA; the server is in the surrounding test namespace."""
    blob = os.urandom(ACCEPTANCE_BLOB)
    (tmp_path / "blob.bin").write_bytes(blob)
    ns.ip("addr", "add", "10.231.255.1/32", "dev", "lo")
    ns.ip("-6", "addr", "add", "fd6e:7672:ffff::1/128", "dev", "lo", "nodad")
    _http_server(ns, tmp_path, "::", 8080)
    host = "10.231.255.1" if family == "4" else "[fd6e:7672:ffff::1]"
    out = tmp_path / "out.bin"
    r = nv_run(ns, [f"--stack={STACK}"],
               ["curl", "-sS", "-g", "-o", str(out), f"http://{host}:8080/blob.bin"])
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(blob).hexdigest()
    r = nv_run(ns, [f"--stack={STACK}"], ["curl", "-sS", "-g", f"http://{host}:8081/"])
    assert r.returncode == 7  # ECONNREFUSED through a non-blocking connect
    # The per-sandbox TAP and nftables table are gone afterwards.
    assert "nvr" not in ns.ip("-o", "link")
    assert "nvr" not in ns.run(["nft", "list", "tables"]).stdout


def test_wget_fetches(ns: Netns, tmp_path: Path) -> None:
    blob = os.urandom(ACCEPTANCE_BLOB)
    (tmp_path / "blob.bin").write_bytes(blob)
    ns.ip("addr", "add", "10.231.255.1/32", "dev", "lo")
    _http_server(ns, tmp_path, "0.0.0.0", 8080)
    out = tmp_path / "out.bin"
    r = nv_run(ns, [f"--stack={STACK}"],
               ["wget", "-q", "-O", str(out), "http://10.231.255.1:8080/blob.bin"])
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(blob).hexdigest()


SLOW_PEER_SERVER = r'''
import hashlib, socket, sys, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(); print("ready", flush=True)
blob = bytes(range(256)) * (64 << 12)              # 16 MiB
for mode in ("up", "down"):
    c, _ = srv.accept()
    if mode == "up":                                # read only after the window closed
        time.sleep(1.0)
        h = hashlib.sha256()
        while (d := c.recv(1 << 16)):
            h.update(d)
        c.sendall(h.hexdigest().encode())
    else:
        c.sendall(blob)
    c.close()
'''

SLOW_PEER_CLIENT = r'''
import hashlib, socket, sys, time
blob = bytes(range(256)) * (64 << 12)
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
c.sendall(blob); c.shutdown(socket.SHUT_WR)
up = c.recv(100).decode() == hashlib.sha256(blob).hexdigest()
c.close()
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
time.sleep(1.0)                                     # the pair and the stack fill up first
h = hashlib.sha256()
while (d := c.recv(1 << 16)):
    h.update(d)
print("up", up, "down", h.hexdigest() == hashlib.sha256(blob).hexdigest())
'''


def test_bulk_both_ways_with_a_slow_reader(ns: Netns, tmp_path: Path) -> None:
    """16 MiB each way while the reader sleeps first: the stack's send buffer and
    the pair fill, the syscall plane stops reading (window closed) and resumes
    from the stack's readiness; every byte arrives, in order."""
    (tmp_path / "srv.py").write_text(SLOW_PEER_SERVER)
    (tmp_path / "cl.py").write_text(SLOW_PEER_CLIENT)
    ns.ip("addr", "add", "10.231.255.1/32", "dev", "lo")
    srv = ns.popen([sys.executable, str(tmp_path / "srv.py"), "10.231.255.1", "8090"],
                   stdout=subprocess.PIPE, text=True)
    assert srv.stdout is not None and srv.stdout.readline().strip() == "ready"
    r = nv_run(ns, [f"--stack={STACK}"],
               [sys.executable, str(tmp_path / "cl.py"), "10.231.255.1", "8090"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["up", "True", "down", "True"]
