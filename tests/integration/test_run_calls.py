"""A Python program exercising the emulated calls and their errnos, run under
netvisor and directly in a kernel namespace (the reference): same results."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_run_basic import STACK, kernel_and_netvisor, nv_run
from tests.nsutil import Netns

pytestmark = pytest.mark.namespaces

CALLS_PROGRAM = r'''
import errno, select, socket, struct, sys, time, os

results = []
def rec(name, fn):
    try:
        v = fn()
        results.append((name, "ok", v))
    except OSError as e:
        results.append((name, "err", errno.errorcode.get(e.errno, e.errno)))

def S(fam=socket.AF_INET, t=socket.SOCK_STREAM):
    return socket.socket(fam, t)

def opt(s, lvl, o):
    return s.getsockopt(lvl, o)

# basic options
t = S()
rec("so_type", lambda: opt(t, socket.SOL_SOCKET, socket.SO_TYPE))
rec("so_domain", lambda: opt(t, socket.SOL_SOCKET, socket.SO_DOMAIN))
rec("so_protocol", lambda: opt(t, socket.SOL_SOCKET, socket.SO_PROTOCOL))
rec("so_error", lambda: opt(t, socket.SOL_SOCKET, socket.SO_ERROR))
rec("so_acceptconn", lambda: opt(t, socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
rec("nodelay_set", lambda: t.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1))
rec("nodelay_get", lambda: opt(t, socket.IPPROTO_TCP, socket.TCP_NODELAY))
rec("reuse_set", lambda: t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1))
rec("reuse_get", lambda: opt(t, socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0)
rec("keepalive_get", lambda: opt(t, socket.SOL_SOCKET, socket.SO_KEEPALIVE))
rec("getpeername_fresh", lambda: t.getpeername())
rec("getsockname_fresh", lambda: t.getsockname())
rec("shutdown_fresh", lambda: t.shutdown(socket.SHUT_RDWR))
rec("listen_udp", lambda: S(t=socket.SOCK_DGRAM).listen(1))
rec("accept_unlistened", lambda: t.accept())
rec("bind_nonlocal", lambda: S().bind(("10.9.9.9", 0)))
rec("bind_badfamily", lambda: S(socket.AF_INET6).bind(("127.0.0.1", 0)))
rec("socketpair_inet", lambda: socket.socketpair(socket.AF_INET, socket.SOCK_STREAM))
rec("sock_seqpacket_inet", lambda: socket.socket(socket.AF_INET, socket.SOCK_SEQPACKET))
rec("sock_stream_udpproto", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM, 17))

# listener
srv = S(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
rec("bind", lambda: srv.bind(("127.0.0.1", 0)))
port = srv.getsockname()[1]
rec("bind_again", lambda: srv.bind(("127.0.0.1", 0)))
rec("bind_inuse", lambda: S().bind(("127.0.0.1", port)))
rec("listen", lambda: srv.listen(8))
rec("acceptconn", lambda: opt(srv, socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
srv.setblocking(False)
rec("accept_empty_nb", lambda: srv.accept())
srv.setblocking(True)
rec("connect_listening", lambda: srv.connect(("127.0.0.1", port)))

c = S()
rec("connect", lambda: c.connect(("127.0.0.1", port)))
rec("connect_again", lambda: c.connect(("127.0.0.1", port)))
rec("peer_port", lambda: c.getpeername() == ("127.0.0.1", port))
rec("listener_readable", lambda: select.select([srv], [], [], 2)[0] == [srv])
a, addr = srv.accept()
rec("accepted_addr", lambda: addr == c.getsockname())
rec("accepted_name", lambda: a.getsockname() == ("127.0.0.1", port))
rec("send", lambda: c.send(b"hello"))
rec("recv", lambda: a.recv(100))
rec("tcp_sendto_addr", lambda: c.sendto(b"addr-ignored", ("127.0.0.9", 9)))
rec("tcp_sendmsg_addr", lambda: c.sendmsg([b"-msg"], [], 0, ("127.0.0.9", 9)))
rec("recv_sent_with_addr", lambda: (time.sleep(0.1), a.recv(100))[1])
a.settimeout(0.3)
rec("recv_timeout", lambda: a.recv(100))
a.settimeout(None)
rec("shut_wr", lambda: c.shutdown(socket.SHUT_WR))
rec("send_after_shut", lambda: c.send(b"x", socket.MSG_NOSIGNAL))
rec("eof", lambda: a.recv(100))
rec("a_send", lambda: a.send(b"back"))
rec("c_recv", lambda: c.recv(100))
a.close()
rec("c_eof", lambda: c.recv(100))
c.close()

# refused: blocking and non-blocking
r = S()
rec("connect_refused", lambda: r.connect(("127.0.0.1", 1)))
r2 = S(); r2.setblocking(False)
rec("connect_nb", lambda: r2.connect(("127.0.0.1", 1)))
def wait_out():
    p = select.poll(); p.register(r2, select.POLLOUT)
    return bool(p.poll(3000))
rec("connect_nb_pollout", wait_out)
rec("connect_nb_soerror", lambda: opt(r2, socket.SOL_SOCKET, socket.SO_ERROR))
r3 = S(); r3.setblocking(False)
rec("connect_nb_ok", lambda: r3.connect_ex(("127.0.0.1", port)) in (0, errno.EINPROGRESS))
rec("connect_nb_ok_poll", lambda: bool(select.select([], [r3], [], 3)[1]))
rec("connect_nb_ok_err", lambda: opt(r3, socket.SOL_SOCKET, socket.SO_ERROR))
rec("connect_nb_again", lambda: r3.connect(("127.0.0.1", port)))

# UDP
u1 = S(t=socket.SOCK_DGRAM); u1.bind(("127.0.0.1", 0))
u2 = S(t=socket.SOCK_DGRAM); u2.bind(("127.0.0.1", 0))
rec("udp_sendto", lambda: u2.sendto(b"datagram", u1.getsockname()))
rec("udp_recvfrom", lambda: u1.recvfrom(100) == (b"datagram", u2.getsockname()))
rec("udp_trunc", lambda: (u2.sendto(b"0123456789", u1.getsockname()), u1.recvfrom(4)[0]))
rec("udp_connect", lambda: u2.connect(u1.getsockname()))
rec("udp_send", lambda: u2.send(b"conn"))
rec("udp_recv", lambda: u1.recv(100))
rec("udp_peer", lambda: u2.getpeername() == u1.getsockname())
def recvmsg_case():
    u2.send(b"msg")
    data, anc, flags, addr = u1.recvmsg(100, 1024)
    return data, flags, addr == u2.getsockname()
rec("udp_recvmsg", recvmsg_case)
def sendmsg_case():
    n = u1.sendmsg([b"ab", b"cd"], [], 0, u2.getsockname())
    return n, u2.recv(10)
rec("udp_sendmsg", sendmsg_case)
u1.settimeout(0.3)
rec("udp_timeout", lambda: u1.recvfrom(10))
u1.setblocking(False)
rec("udp_nb_empty", lambda: u1.recvfrom(10))
rec("udp_fionread", lambda: (u2.send(b"12345"), time.sleep(0.1),
                             __import__("fcntl").ioctl(u1, 0x541B, b"\0\0\0\0"))[2])
rec("udp_empty_dgram", lambda: (u2.send(b""), time.sleep(0.1), u1.recvfrom(10)[0])[2])

# IPv6
s6 = S(socket.AF_INET6)
rec("v6only", lambda: opt(s6, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
rec("v6_bind", lambda: s6.bind(("::1", 0)))
rec("v6_name", lambda: s6.getsockname()[0])
u6 = S(socket.AF_INET6, socket.SOCK_DGRAM); u6.bind(("::1", 0))
u7 = S(socket.AF_INET6, socket.SOCK_DGRAM)
rec("v6_udp", lambda: (u7.sendto(b"six", u6.getsockname()), u6.recvfrom(10)[0]))

for name, kind, v in results:
    print(name, kind, repr(v))
'''


def test_calls_match_the_kernel(make_netns: Callable[[str], Netns], tmp_path: Path) -> None:
    ns = make_netns("nvr")
    ref, got = kernel_and_netvisor(ns, tmp_path, CALLS_PROGRAM)
    assert len(ref.stdout.splitlines()) > 60
    assert got.stdout.splitlines() == ref.stdout.splitlines()


RST_PROGRAM = r'''
import socket, struct, time, errno
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
c = socket.create_connection(srv.getsockname())
a, _ = srv.accept()
a.sendall(b"before")
time.sleep(0.2)
a.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); a.close()
time.sleep(0.3)
for i in range(3):
    try: print("recv", c.recv(100))
    except OSError as e: print("recv", errno.errorcode[e.errno])
try: print("send", c.send(b"x", socket.MSG_NOSIGNAL))
except OSError as e: print("send", errno.errorcode[e.errno])
'''


def test_reset_reaches_the_program_like_linux(make_netns: Callable[[str], Netns],
                                              tmp_path: Path) -> None:
    """SO_LINGER 0 close -> RST: queued data first, then ECONNRESET once, then EOF, EPIPE."""
    ns = make_netns("nvr")
    ref, got = kernel_and_netvisor(ns, tmp_path, RST_PROGRAM)
    assert ref.stdout.splitlines()[1] == "recv ECONNRESET"
    assert got.stdout.splitlines() == ref.stdout.splitlines()


SHARING_PROGRAM = r'''
import os, socket, threading, array, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
port = srv.getsockname()[1]
# 1. a forked child accepts on the inherited listener and serves
pid = os.fork()
if pid == 0:
    c, _ = srv.accept()
    c.sendall(b"from-child:" + c.recv(10)); c.close(); os._exit(0)
cl = socket.create_connection(("127.0.0.1", port)); cl.sendall(b"ping")
print(cl.recv(100)); os.waitpid(pid, 0)
# 2. a socket passed over SCM_RIGHTS to another process keeps working
a, b = socket.socketpair()
cl2 = socket.create_connection(("127.0.0.1", port))
srv_side, _ = srv.accept()
pid = os.fork()
if pid == 0:
    msg, anc, flags, addr = a.recvmsg(10, socket.CMSG_LEN(4))
    fd = array.array("i", anc[0][2])[0]
    s = socket.socket(fileno=fd)
    s.sendall(b"via-scm-rights"); print("peer", s.getpeername()[1] == port, flush=True); os._exit(0)
b.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [cl2.fileno()]))])
cl2.close()   # the child's copy keeps the connection
os.waitpid(pid, 0)
print(srv_side.recv(100))
# 3. a dup of the listener, accepting in a thread while the main thread connects
d = os.dup(srv.fileno()); ds = socket.socket(fileno=d)
print("dup name", ds.getsockname()[1] == port)
got = []
t = threading.Thread(target=lambda: got.append(ds.accept()[0].recv(10))); t.start()
c4 = socket.create_connection(("127.0.0.1", port)); c4.sendall(b"thread"); t.join()
print(got)
'''


def test_fork_scm_rights_dup_threads(make_netns: Callable[[str], Netns], tmp_path: Path) -> None:
    """Emulated sockets keep their identity across fork, SCM_RIGHTS, dup and threads."""
    ns = make_netns("nvr")
    ref, got = kernel_and_netvisor(ns, tmp_path, SHARING_PROGRAM)
    assert len(ref.stdout.splitlines()) == 5
    assert got.stdout.splitlines() == ref.stdout.splitlines()


HALF_CLOSE_PROGRAM = r'''
import socket, time, errno
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
c = socket.create_connection(srv.getsockname()); a, _ = srv.accept()
c.shutdown(socket.SHUT_WR)
print("eof", a.recv(10))
c.close()               # full close after a half close: the stack socket must go
time.sleep(0.3)
for i in range(3):
    try:
        a.send(b"x", socket.MSG_NOSIGNAL); print("send ok")
    except OSError as e:
        print("send", errno.errorcode[e.errno])
    time.sleep(0.3)
'''


def test_close_after_half_close_resets_like_linux(make_netns: Callable[[str], Netns],
                                                  tmp_path: Path) -> None:
    """shutdown(SHUT_WR) then close(): the stack socket goes, the peer's next write
    draws an RST, and the write after that fails with EPIPE, as on Linux."""
    ns = make_netns("nvr")
    ref, got = kernel_and_netvisor(ns, tmp_path, HALF_CLOSE_PROGRAM)
    assert ref.stdout.splitlines() == ["eof b''", "send ok", "send EPIPE", "send EPIPE"]
    assert got.stdout.splitlines() == ref.stdout.splitlines()
    assert got.stderr == ""


PENDING_CONNECT_PROGRAM = r'''
import errno, select, socket, struct, time
PEER = ("10.231.254.1", 9)          # SYNs to it are dropped by the test's nft rule
out = []
def rec(name, fn):
    try:
        out.append((name, "ok", fn()))
    except OSError as e:
        out.append((name, "err", errno.errorcode.get(e.errno, e.errno)))

s = socket.socket(); s.setblocking(False)
rec("nb_connect", lambda: s.connect(PEER))
rec("nb_connect_again", lambda: s.connect(PEER))
def poll_pending():
    p = select.poll()
    p.register(s, select.POLLIN | select.POLLOUT)
    return p.poll(500)
rec("poll_pending", poll_pending)
rec("so_error_pending", lambda: s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
rec("getpeername_pending", lambda: s.getpeername())
rec("send_pending", lambda: s.send(b"x"))
rec("recv_pending", lambda: s.recv(10))
s.close()

b = socket.socket()
b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 0, 500000))
rec("connect_sndtimeo", lambda: b.connect(PEER))
rec("connect_sndtimeo_again", lambda: b.connect(PEER))
b.close()

t = socket.socket()
t.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, 1)
start = time.monotonic()
rec("connect_syncnt_1", lambda: t.connect(PEER))
rec("syncnt_waited_for_the_retransmission", lambda: time.monotonic() - start > 2)
rec("so_error_after", lambda: t.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
for name, kind, v in out:
    print(name, kind, repr(v))
'''


def test_pending_connect_like_linux(make_netns: Callable[[str], Netns], tmp_path: Path) -> None:
    """A handshake that gets no answer: EINPROGRESS/EALREADY, poll, ENOTCONN,
    EAGAIN, SO_SNDTIMEO's expiry (EINPROGRESS, then EALREADY) and TCP_SYNCNT's
    ETIMEDOUT, the same under netvisor (TAP to the test namespace) as on the
    kernel (the peer on its lo); the peer's SYNs are dropped by nftables."""
    ns = make_netns("nvr")
    ns.run(["nft", "-f", "-"], input="add table inet nvrt\n"
           "add chain inet nvrt input { type filter hook input priority 0 ; }\n"
           "add rule inet nvrt input tcp dport 9 drop\n")
    prog = tmp_path / "pending.py"
    prog.write_text(PENDING_CONNECT_PROGRAM)
    got = nv_run(ns, [f"--stack={STACK}", "--address", "10.231.254.2/30",
                      "--gateway", "10.231.254.1", "--no-nat"], [sys.executable, str(prog)])
    ns.ip("addr", "add", "10.231.254.1/32", "dev", "lo")   # after the TAP that had it is gone
    ref = ns.run([sys.executable, str(prog)], timeout=60)
    assert got.returncode == 0, got.stderr
    assert "connect_syncnt_1 err 'ETIMEDOUT'" in ref.stdout
    assert got.stdout.splitlines() == ref.stdout.splitlines()


TCP_RECVERR_PROGRAM = r'''
import errno, socket
def rec(name, fn):
    try: print(name, "ok", fn())
    except OSError as e: print(name, "err", errno.errorcode[e.errno])
for fam, lvl, opt in ((socket.AF_INET, 0, 11), (socket.AF_INET6, 41, 25), (socket.AF_INET6, 0, 11)):
    s = socket.socket(fam, socket.SOCK_STREAM)
    rec(f"{fam}-{opt}-default", lambda: s.getsockopt(lvl, opt))
    rec(f"{fam}-{opt}-set", lambda: s.setsockopt(lvl, opt, 7))
    rec(f"{fam}-{opt}-get", lambda: s.getsockopt(lvl, opt))
    rec(f"{fam}-{opt}-set0", lambda: s.setsockopt(lvl, opt, 0))
    rec(f"{fam}-{opt}-get0", lambda: s.getsockopt(lvl, opt))
    rec(f"{fam}-{opt}-short", lambda: s.setsockopt(lvl, opt, b"\x01"))
    rec(f"{fam}-{opt}-getshort", lambda: s.getsockopt(lvl, opt))
'''


def test_tcp_recverr_option_like_linux(make_netns: Callable[[str], Netns],
                                       tmp_path: Path) -> None:
    """IP_RECVERR / IPV6_RECVERR on TCP sockets: accepted, read back, and
    short values treated as Linux does (IPv4 takes one byte, IPv6 an int)."""
    ns = make_netns("nvr")
    ref, got = kernel_and_netvisor(ns, tmp_path, TCP_RECVERR_PROGRAM)
    assert "2-11-get ok 1" in ref.stdout
    assert got.stdout.splitlines() == ref.stdout.splitlines()
