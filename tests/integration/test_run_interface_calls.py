"""Interface queries, data-call flags and control messages, run under
`netvisor run --network=none` and directly in a kernel namespace with only lo
(the reference): the same results, line by line.

Covers what the main calls program does not: if_nameindex and the SIOCGIF*
ioctls (answered from the stack), getaddrinfo with AI_ADDRCONFIG, sendfile,
SIOCOUTQ/FIONREAD, MSG_PEEK/DONTWAIT/WAITALL, SO_RCVTIMEO, EPIPE after the
peer's close, and the UDP control messages of IPv4 and IPv6.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_run_basic import STACK, kernel_and_netvisor, nv_run
from tests.nsutil import Netns

pytestmark = pytest.mark.namespaces

PROGRAM = r'''
import array, ctypes, errno, fcntl, os, select, socket, struct, sys, time

results = []
def rec(name, fn):
    try:
        results.append((name, "ok", fn()))
    except OSError as e:
        results.append((name, "err", errno.errorcode.get(e.errno, e.errno)))

def ifreq(name, data=b""):
    return struct.pack("16s16s", name.encode(), data)

u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
# interface names and indexes (netlink and ioctls answered from the stack)
rec("if_nameindex", lambda: socket.if_nameindex())
rec("if_nametoindex", lambda: socket.if_nametoindex("lo"))
rec("if_indextoname", lambda: socket.if_indextoname(1))
rec("if_nametoindex_missing", lambda: socket.if_nametoindex("nosuch0"))
def ifconf():
    buf = array.array("B", bytes(40 * 8))
    addr, _ = buf.buffer_info()
    n = struct.unpack("iL", fcntl.ioctl(u, 0x8912, struct.pack("iL", len(buf), addr)))[0]
    raw = buf.tobytes()[:n]
    return [(raw[i:i + 16].rstrip(b"\0").decode(), socket.inet_ntoa(raw[i + 20:i + 24]))
            for i in range(0, n, 40)]
rec("SIOCGIFCONF", ifconf)
rec("SIOCGIFADDR", lambda: socket.inet_ntoa(fcntl.ioctl(u, 0x8915, ifreq("lo"))[20:24]))
rec("SIOCGIFNETMASK", lambda: socket.inet_ntoa(fcntl.ioctl(u, 0x891b, ifreq("lo"))[20:24]))
rec("SIOCGIFINDEX", lambda: struct.unpack("i", fcntl.ioctl(u, 0x8933, ifreq("lo"))[16:20])[0])
rec("SIOCGIFFLAGS", lambda: hex(struct.unpack("H", fcntl.ioctl(u, 0x8913, ifreq("lo"))[16:18])[0]))
rec("SIOCGIFMTU", lambda: struct.unpack("i", fcntl.ioctl(u, 0x8921, ifreq("lo"))[16:20])[0])
rec("SIOCGIFHWADDR", lambda: fcntl.ioctl(u, 0x8927, ifreq("lo"))[16:24].hex())
rec("SIOCGIFNAME", lambda: fcntl.ioctl(u, 0x8910, struct.pack("16si12x", b"", 1))[:16].rstrip(b"\0"))
rec("SIOCGIFADDR_missing", lambda: fcntl.ioctl(u, 0x8915, ifreq("nosuch0")))
rec("SIOCGIFINDEX_v6sock", lambda: struct.unpack("i", fcntl.ioctl(u6, 0x8933, ifreq("lo"))[16:20])[0])
# getaddrinfo with AI_ADDRCONFIG: only families with a non-loopback address count (none here)
rec("gai_addrconfig", lambda: sorted({a[4][0] for a in socket.getaddrinfo(
    "localhost", 80, type=socket.SOCK_STREAM, flags=socket.AI_ADDRCONFIG)}))
rec("gai_numeric", lambda: [a[4] for a in socket.getaddrinfo("::1", 80, type=socket.SOCK_STREAM)])

# TCP data calls beyond plain send/recv
srv = socket.create_server(("127.0.0.1", 0))
c = socket.create_connection(srv.getsockname())
a, _ = srv.accept()
with open(sys.argv[0], "rb") as f:
    size = os.fstat(f.fileno()).st_size
    rec("sendfile", lambda: os.sendfile(c.fileno(), f.fileno(), 0, size) == size)
def recv_exactly(s, n):
    got = b""
    while len(got) < n:
        got += s.recv(n - len(got))
    return got
rec("sendfile_data", lambda: recv_exactly(a, size) == open(sys.argv[0], "rb").read())
rec("siocoutq_idle", lambda: (time.sleep(0.2), struct.unpack("i", fcntl.ioctl(c, 0x5411, b"\0" * 4))[0])[1])
c.sendall(b"peekaboo")
time.sleep(0.2)
rec("fionread", lambda: struct.unpack("i", fcntl.ioctl(a, 0x541B, b"\0" * 4))[0])
rec("msg_peek", lambda: a.recv(4, socket.MSG_PEEK))
rec("msg_dontwait", lambda: a.recv(100, socket.MSG_DONTWAIT))
rec("msg_dontwait_empty", lambda: a.recv(100, socket.MSG_DONTWAIT))
rec("recvmsg_tcp", lambda: (c.send(b"via recvmsg"), time.sleep(0.1), a.recvmsg(100)[:3])[2])
a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 200000))
rec("so_rcvtimeo_get", lambda: struct.unpack("ll", a.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)))
rec("so_rcvtimeo_recv", lambda: a.recv(10))
def threading_send(s, data):
    import threading
    threading.Timer(0.2, lambda: s.send(data)).start()
a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 0))
rec("waitall", lambda: (c.send(b"12"), threading_send(c, b"34"), a.recv(4, socket.MSG_WAITALL))[2])
c.close()
time.sleep(0.2)
rec("after_peer_close_recv", lambda: a.recv(10))
rec("after_peer_close_send1", lambda: (a.send(b"x"), time.sleep(0.2))[0])
rec("after_peer_close_send2", lambda: a.send(b"x"))  # EPIPE (SIGPIPE ignored by Python)

# UDP control messages
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(("127.0.0.1", 0))
for o in (8, 12, 13):  # IP_PKTINFO, IP_RECVTTL, IP_RECVTOS
    r.setsockopt(socket.IPPROTO_IP, o, 1)
r.setsockopt(socket.SOL_SOCKET, 29, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 33)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x20)
s.sendto(b"cmsg", r.getsockname())
def cmsgs():
    data, anc, flags, addr = r.recvmsg(100, 1024)
    out = []
    for lvl, typ, val in anc:
        if (lvl, typ) == (socket.SOL_SOCKET, 29):
            sec = struct.unpack("ll", val)[0]
            out.append(("SO_TIMESTAMP", abs(sec - time.time()) < 5))
        elif (lvl, typ) == (socket.IPPROTO_IP, 8):
            idx, spec, dst = struct.unpack("i4s4s", val)
            out.append(("IP_PKTINFO", idx, socket.inet_ntoa(spec), socket.inet_ntoa(dst)))
        else:
            out.append((lvl, typ, val.hex()))
    return data, sorted(map(str, out)), flags
rec("udp_cmsgs", cmsgs)
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
r6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); r6.bind(("::1", 0))
for o in (socket.IPV6_RECVPKTINFO, socket.IPV6_RECVHOPLIMIT, socket.IPV6_RECVTCLASS):
    r6.setsockopt(socket.IPPROTO_IPV6, o, 1)
s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 7)
s6.sendto(b"six", r6.getsockname())
rec("udp6_cmsgs", lambda: (lambda m: (m[0], sorted((l, t, v.hex()) for l, t, v in m[1]), m[2]))(r6.recvmsg(100, 1024)))

for name, kind, v in results:
    print(name, kind, repr(v))
'''


def test_interface_and_data_calls_match_the_kernel(make_netns: Callable[[str], Netns],
                                                   tmp_path: Path) -> None:
    ns = make_netns("nvr")
    ref, got = kernel_and_netvisor(ns, tmp_path, PROGRAM)
    assert len(ref.stdout.splitlines()) > 30
    assert got.stdout.splitlines() == ref.stdout.splitlines()


NAMES_PROGRAM = r'''
import array, fcntl, socket, struct
names = socket.if_nameindex()
print(names)
# glibc asks an AF_UNIX socket for these (SIOCGIFINDEX / SIOCGIFNAME)
print([(socket.if_nametoindex(name), socket.if_indextoname(i)) for i, name in names])
u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
buf = array.array("B", bytes(40 * 8))
n = struct.unpack("iL", fcntl.ioctl(u, 0x8912, struct.pack("iL", len(buf), buf.buffer_info()[0])))[0]
raw = buf.tobytes()[:n]
print([(raw[i:i + 16].rstrip(b"\0").decode(), socket.inet_ntoa(raw[i + 20:i + 24]))
       for i in range(0, n, 40)])
# AI_ADDRCONFIG: glibc asks NETLINK_ROUTE which families have a non-loopback address
print(sorted({a[4][0] for a in socket.getaddrinfo(None, 80, type=socket.SOCK_STREAM,
                                                   flags=socket.AI_ADDRCONFIG | socket.AI_PASSIVE)}))
'''


def test_interface_queries_on_unix_sockets_see_the_stacks_nic(
        make_netns: Callable[[str], Netns], tmp_path: Path) -> None:
    """if_nametoindex()/if_indextoname() go through an AF_UNIX socket in glibc:
    answered from the stack, whose NIC the sandbox's own namespace lacks; and
    getaddrinfo's AI_ADDRCONFIG sees the stack's address families."""
    ns = make_netns("nvr")
    prog = tmp_path / "names.py"
    prog.write_text(NAMES_PROGRAM)
    got = nv_run(ns, [f"--stack={STACK}", "--address", "10.231.254.2/30",
                      "--gateway", "10.231.254.1", "--no-nat"], [sys.executable, str(prog)])
    assert got.returncode == 0, got.stderr
    names, lookups, ifconf, addrconfig = got.stdout.splitlines()
    # the NIC's link-local IPv6 address counts, as on Linux; the sandbox's
    # own namespace (lo only) has no address that counts
    assert addrconfig == "['0.0.0.0', '::']"
    assert names == "[(1, 'lo'), (2, 'eth0')]"
    assert lookups == "[(1, 'lo'), (2, 'eth0')]"
    assert ifconf == "[('lo', '127.0.0.1'), ('eth0', '10.231.254.2')]"
