"""Escape attempts: each fails under netvisor, and (where this kernel allows
it) the same attempt works without netvisor, which proves the test."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_run_basic import STACK, nv_run
from tests.nsutil import Netns

pytestmark = pytest.mark.namespaces

ESCAPE_PROGRAM = r'''
import ctypes, errno, mmap, os, socket, struct, sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
mode = sys.argv[1]

def result(r):
    if r < 0:
        e = ctypes.get_errno()
        print("fail", errno.errorcode.get(e, e))
    else:
        print("ok")

if mode == "io_uring":
    params = ctypes.create_string_buffer(120)
    result(libc.syscall(425, 4, params))
elif mode == "x32":
    result(libc.syscall(0x40000000 | 41, 2, 1, 0))
elif mode == "packet":
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)); print("ok")
    except OSError as e:
        print("fail", errno.errorcode[e.errno])
elif mode == "raw":
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); print("ok")
    except OSError as e:
        print("fail", errno.errorcode[e.errno])
elif mode == "setns":
    fd = os.open(sys.argv[2], os.O_RDONLY)
    result(libc.setns(fd, 0x40000000))
elif mode == "int80":
    # socketcall(SYS_SOCKET, {AF_INET, SOCK_STREAM, 0}) through the i386 entry point.
    MAP_32BIT = 0x40
    mem = mmap.mmap(-1, 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_32BIT,
                    prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    base = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    assert base < 2**32
    args = base + 2048
    code = (b"\x53" + b"\xb8" + struct.pack("<I", 102) + b"\xbb" + struct.pack("<I", 1)
            + b"\xb9" + struct.pack("<I", args) + b"\xcd\x80" + b"\x5b\xc3")
    mem[0:len(code)] = code
    mem[2048:2060] = struct.pack("<III", 2, 1, 0)
    fn = ctypes.CFUNCTYPE(ctypes.c_int)(base)
    r = fn()
    print("ok" if r >= 0 else f"fail {errno.errorcode.get(-r, -r)}")
elif mode in ("ifmtu", "ifmtu_dead"):
    # SIOCSIFMTU on lo through an AF_INET socket (under netvisor: an emulated
    # one, or one whose connection died and was torn down).
    import fcntl
    s = socket.socket()
    if mode == "ifmtu_dead":
        srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
        s.connect(srv.getsockname()); a, _ = srv.accept()
        a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); a.close()
        import time; time.sleep(0.3)
        try: s.recv(1)
        except OSError: pass
    try:
        fcntl.ioctl(s.fileno(), 0x8922, struct.pack("16si12x", b"lo", 1280)); print("ok")
    except OSError as e:
        print("fail", errno.errorcode[e.errno])
elif mode == "skns":
    import fcntl
    try:
        s = socket.socket()
        fd = fcntl.ioctl(s.fileno(), 0x894C)
        print("ok", os.readlink(f"/proc/self/fd/{fd}") == os.readlink("/proc/self/ns/net"))
    except OSError as e:
        print("fail", errno.errorcode[e.errno])
'''


@pytest.fixture
def escape(make_netns: Callable[[str], Netns], tmp_path: Path
           ) -> Callable[[str, bool], tuple[str, int, str]]:
    ns = make_netns("nvr")
    prog = tmp_path / "escape.py"
    prog.write_text(ESCAPE_PROGRAM)

    def attempt(mode: str, sandboxed: bool, *extra: str) -> tuple[str, int, str]:
        cmd = [sys.executable, str(prog), mode, *extra]
        if sandboxed:
            r = nv_run(ns, [f"--stack={STACK}", "--network=none"], cmd)
        else:
            r = ns.run(cmd, check=False)
        return r.stdout.strip(), r.returncode, ns.path
    return attempt  # type: ignore[return-value]


@pytest.mark.parametrize("mode,errno_name", [
    ("io_uring", "ENOSYS"), ("packet", "EPERM"), ("raw", "EPERM")])
def test_refused_with_errno(escape: Callable[..., tuple[str, int, str]], mode: str,
                            errno_name: str) -> None:
    assert escape(mode, False)[0] == "ok"       # possible without netvisor
    out, code, _ = escape(mode, True)
    assert (out, code) == (f"fail {errno_name}", 0)


@pytest.mark.parametrize("mode", ["int80", "x32"])
def test_foreign_entry_points_kill(escape: Callable[..., tuple[str, int, str]],
                                   mode: str) -> None:
    out, code, _ = escape(mode, True)
    assert code == 128 + signal.SIGSYS and out == ""
    if mode == "int80":
        # IA32 emulation is on here: the i386 socketcall works without netvisor.
        ref = escape(mode, False)[0]
        assert ref == "ok" or ref.startswith("fail"), ref


def test_setns_into_another_namespace_refused(escape: Callable[..., tuple[str, int, str]]
                                              ) -> None:
    ns_path = escape("setns", False, "/proc/self/ns/net")[2]
    assert escape("setns", False, ns_path)[0] == "ok"
    assert escape("setns", True, ns_path)[0] == "fail EPERM"


def test_netlink_shows_the_stack_and_refuses_changes(make_netns: Callable[[str], Netns]
                                                     ) -> None:
    ns = make_netns("nvr")
    r = nv_run(ns, [f"--stack={STACK}"], ["ip", "-o", "addr"])
    assert r.returncode == 0, r.stderr
    assert "eth0" in r.stdout and "inet 10.231." in r.stdout and "fd6e:7672:" in r.stdout
    r = nv_run(ns, [f"--stack={STACK}"], ["ip", "addr", "add", "10.9.9.9/32", "dev", "eth0"])
    assert r.returncode != 0
    r = nv_run(ns, [f"--stack={STACK}"], [sys.executable, "-c",
               "import socket; s = socket.socket(); s.bind(('10.9.9.9', 0))"])
    assert "EADDRNOTAVAIL" in r.stderr or "assign requested address" in r.stderr
    assert "10.9.9.9" not in ns.ip("addr")


def _lo_mtu(ns_path: str) -> str:
    import subprocess
    out = subprocess.run(["nsenter", f"--net={ns_path}", "ip", "-o", "link", "show", "lo"],
                         capture_output=True, text=True, check=True).stdout
    return out.split(" mtu ")[1].split()[0]


@pytest.mark.parametrize("mode", ["ifmtu", "ifmtu_dead"])
def test_device_ioctls_never_reach_the_supervisors_namespace(
        escape: Callable[..., tuple[str, int, str]], mode: str) -> None:
    """An emulated socket is created in the supervisor's namespace: a device
    ioctl continued to the kernel on it would reconfigure that namespace."""
    ns_path = escape("skns", False)[2]
    before = _lo_mtu(ns_path)
    out, code, _ = escape(mode, True)
    assert (out, code) == ("fail EPERM", 0)
    assert _lo_mtu(ns_path) == before != "1280"
    assert escape("ifmtu", False)[0] == "ok"      # possible without netvisor (own namespace)
    assert _lo_mtu(ns_path) == "1280"


def test_socket_namespace_handle_not_given(escape: Callable[..., tuple[str, int, str]]) -> None:
    assert escape("skns", False)[0] == "ok True"
    assert escape("skns", True)[0] == "fail EPERM"
