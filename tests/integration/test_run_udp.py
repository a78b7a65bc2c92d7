"""netvisor run: UDP details the supervisor must get right, compared with the kernel.

- SHUT_RD on a UDP socket: the receive pump must treat the stack's b"" as
  EOF (it used to forward empty datagrams in a loop that never awaited,
  stalling every other socket of the sandbox);
- an ICMP port unreachable on a connected UDP socket fails the next send
  and receive once with ECONNREFUSED (trapped sendmsg/recvmsg; plain
  send()/recv() on the pair cannot carry it, see ARCHITECTURE);
- IP_RECVTOS / IPV6_RECVTCLASS control messages next to PKTINFO and TTL;
- --netns applies the namespace's sysctls to the stack (port range here).
Each program runs directly in a test namespace first (the reference).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_run_basic import STACK, nv_run
from tests.nsutil import Netns, veth_pair

pytestmark = pytest.mark.namespaces

SHUT_RD_PROGRAM = r'''
import errno, select, socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
try:
    u.shutdown(socket.SHUT_RD)
except OSError as e:
    print("shutdown", errno.errorcode[e.errno])
p = select.poll(); p.register(u, select.POLLIN | select.POLLRDNORM | select.POLLRDHUP)
print("poll", [ev for _, ev in p.poll(2000)])   # POLLIN|POLLRDNORM|POLLRDHUP: EOF
print("recv", u.recv(10))            # blocking receive after SHUT_RD: 0 at once
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.bind(("127.0.0.1", 0))
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); b.settimeout(5)
b.sendto(b"ping", a.getsockname())
print("echo", a.recvfrom(10)[0])     # the rest of the sandbox still works
u.close()
'''

REFUSED_PROGRAM = r'''
import errno, socket, time
# Port 9 (discard): nothing listens in a fresh namespace. (A port freed by
# close() just before would race: close is untrapped, the stack socket goes
# when the supervisor sees the pair's HUP.)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.connect(("127.0.0.1", 9))
def attempt(name, fn):
    try:
        fn(); print(name, "ok")
    except OSError as e:
        print(name, errno.errorcode[e.errno])
attempt("send1", lambda: u.sendmsg([b"x"]))
time.sleep(0.3)
attempt("send2", lambda: u.sendmsg([b"y"]))     # ECONNREFUSED, once
attempt("send3", lambda: u.sendmsg([b"z"]))
time.sleep(0.3)
u.setblocking(False)
attempt("recv1", lambda: u.recvmsg(10))        # ECONNREFUSED (from send3's ICMP)
attempt("recv2", lambda: u.recvmsg(10))        # EAGAIN
print("so_error", u.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
'''

CMSG_PROGRAM = r'''
import socket, struct
IP_PKTINFO, IP_RECVTTL, IP_RECVTOS, IPV6_RECVTCLASS = 8, 12, 13, 66
for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    r = socket.socket(fam, socket.SOCK_DGRAM); r.bind((host, 0))
    if fam == socket.AF_INET:
        r.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        r.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        r.setsockopt(socket.IPPROTO_IP, IP_RECVTOS, 1)
    else:
        r.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        r.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        r.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVTCLASS, 1)
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if fam == socket.AF_INET:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x28)
    else:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, 0x28)
    s.sendto(b"meta", r.getsockname()[:2])
    data, anc, flags, addr = r.recvmsg(100, 256)
    print(fam, data, [(lvl, typ, len(d), d.hex()) for lvl, typ, d in anc])
'''

PORTS_PROGRAM = r'''
import socket
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 0))
print(u.getsockname()[1])
'''


def _compare(ns: Netns, tmp_path: Path, program: str, options: list[str]) -> str:
    prog = tmp_path / "prog.py"
    prog.write_text(program)
    ref = ns.run([sys.executable, str(prog)], timeout=30)
    got = nv_run(ns, [f"--stack={STACK}", *options], [sys.executable, str(prog)], timeout=30)
    assert got.returncode == 0, got.stderr
    assert got.stdout == ref.stdout
    return got.stdout


def test_shut_rd_udp_socket_is_eof_not_a_stall(make_netns: Callable[[str], Netns],
                                               tmp_path: Path) -> None:
    out = _compare(make_netns("nvq"), tmp_path, SHUT_RD_PROGRAM, ["--network=none"])
    # The pump used to forward the stack's b"" as empty datagrams (the pair
    # filled with them) instead of passing EOF on: no POLLRDHUP.
    assert "recv b''" in out and "echo b'ping'" in out


def test_connected_udp_refused_surfaces_on_send_and_recv(
        make_netns: Callable[[str], Netns], tmp_path: Path) -> None:
    out = _compare(make_netns("nvq"), tmp_path, REFUSED_PROGRAM, ["--network=none"])
    assert "send2 ECONNREFUSED" in out and "recv1 ECONNREFUSED" in out


def test_tos_and_tclass_control_messages(make_netns: Callable[[str], Netns],
                                         tmp_path: Path) -> None:
    out = _compare(make_netns("nvq"), tmp_path, CMSG_PROGRAM, ["--network=none"])
    assert "'28'" in out and "'28000000'" in out   # IP_TOS (1 byte), IPV6_TCLASS (int)


def test_netns_sysctls_apply_to_the_stack(make_netns: Callable[[str], Netns],
                                          tmp_path: Path) -> None:
    upstream, target = make_netns("nvq"), make_netns("nvq")
    veth_pair(upstream, "nvqu0", target, "nvqt0")
    target.ip("addr", "add", "10.231.252.2/24", "dev", "nvqt0")
    target.run(["sysctl", "-qw", "net.ipv4.ip_local_port_range=40000 40009"])
    prog = tmp_path / "ports.py"
    prog.write_text(PORTS_PROGRAM)
    r = nv_run(upstream, [f"--stack={STACK}", "--netns", target.path],
               [sys.executable, str(prog)], timeout=30)
    assert r.returncode == 0, r.stderr
    assert 40000 <= int(r.stdout) <= 40009
