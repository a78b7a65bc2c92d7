"""IP_RECVERR / IPV6_RECVERR and MSG_ERRQUEUE, under netvisor and in a kernel namespace.

The same program runs directly in a kernel namespace (the reference) and
under ``netvisor run``; the outputs must be equal. It sends datagrams to a
closed UDP port with IP_RECVERR (AF_INET), IPV6_RECVERR (AF_INET6) and
IP_RECVERR on an AF_INET6 socket sending to a v4-mapped address, then reads
the error queue: payload, ``struct sock_extended_err`` (errno, origin, type,
code, info, data), the offender (the ICMP sender), msg_name (the original
destination), msg_flags (MSG_ERRQUEUE, MSG_TRUNC), and how sk_err follows
the queue (SO_ERROR, the next send/recv, re-armed by a dequeue while entries
remain, kept when the option is turned off and the queue purged), and the
ICMP message's own IP_PKTINFO/IP_TTL/IP_TOS (IPv6: PKTINFO, HOPLIMIT, TCLASS)
before the IP_RECVERR control message. Also:
recvfrom()/recv() with MSG_ERRQUEUE (trapped for that flag), TCP's empty
error queue (EAGAIN, not the stream), and ping sockets (the quoted echo
request, port 0 in the name), and a traceroute probe (TTL / hop limit 1:
time exceeded from the router), and a send over the path MTU with DF (a
local entry, ee_info = the MTU). Against loopback (--network=none: the stack answers with
port unreachable) and against a kernel peer behind a taken-over veth (--netns:
the kernel answers, also with admin-prohibited from an nft reject rule).

Plain send()/recv() without an address go through the AF_UNIX pair and
cannot carry sk_err (docs/ARCHITECTURE.md), so the program uses the calls
that trap: sendto/sendmsg/recvmsg. POLLERR is not compared: the pair cannot
show it (see ARCHITECTURE, "Departures").
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_run_basic import STACK, nv_run
from tests.nsutil import Netns, veth_pair

pytestmark = pytest.mark.namespaces

PROGRAM = r'''
import errno, socket, struct, sys, time
IP_RECVERR, IPV6_RECVERR, MSG_ERRQUEUE = 11, 25, 0x2000
W = 0.3   # for the ICMP error to come back
def E(fn):
    try: return fn()
    except OSError as e: return errno.errorcode.get(e.errno, e.errno)
def ee(anc):
    out = []
    for lvl, typ, d in anc:
        if (lvl, typ) in ((socket.IPPROTO_IP, IP_RECVERR), (socket.IPPROTO_IPV6, IPV6_RECVERR)):
            err, origin, etype, code, pad, info, data = struct.unpack_from("=IBBBBII", d)
            fam, port = struct.unpack_from("=HH", d, 16)
            off = socket.inet_ntop(fam, d[20:24] if fam == socket.AF_INET else d[24:40])
            out.append((lvl, typ, len(d), errno.errorcode.get(err, err), origin, etype, code,
                        pad, info, data, fam, off, port))
        else:
            out.append((lvl, typ, d.hex()))
    return out
def show(tag, s, bufsize=2048, head=None):
    try:
        data, anc, flags, addr = s.recvmsg(bufsize, 512, MSG_ERRQUEUE | socket.MSG_DONTWAIT)
    except OSError as e:
        print(tag, "errq", errno.errorcode.get(e.errno, e.errno)); return
    if head is not None:    # ping: the quoted echo header carries a random identifier
        data = (data[:2].hex(), data[head:])
    print(tag, "errq", len(data), data if head is not None else data[:12], hex(flags), addr,
          ee(anc))

def udp(host, port, mapped, label):
    fam = socket.AF_INET6 if ":" in host or mapped else socket.AF_INET
    dst = ("::ffff:" + host if mapped else host, port)
    lvl, opt = (socket.IPPROTO_IPV6, IPV6_RECVERR) if fam == socket.AF_INET6 and not mapped \
        else (socket.IPPROTO_IP, IP_RECVERR)
    P = label + " "
    s = socket.socket(fam, socket.SOCK_DGRAM); s.setblocking(False)
    print(P + "opt", s.getsockopt(lvl, opt), end=" ")
    s.setsockopt(lvl, opt, 1)
    print(s.getsockopt(lvl, opt))
    show(P + "empty", s)
    s.sendto(b"first-datagram", dst); time.sleep(W)
    print(P + "soerr", s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    show(P + "one", s)
    show(P + "none", s)
    s.sendto(b"second", dst); time.sleep(W)
    print(P + "recvmsg", E(lambda: s.recvmsg(100)))
    s.sendto(b"third", dst); time.sleep(W)
    print(P + "recvmsg", E(lambda: s.recvmsg(100)))
    print(P + "recvmsg", E(lambda: s.recvmsg(100)))
    show(P + "two", s)     # the next entry re-arms sk_err
    print(P + "soerr", s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    show(P + "three", s)   # the last one clears it
    print(P + "soerr", s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    s.sendto(b"y" * 1400, dst); time.sleep(W)
    print(P + "sendto", E(lambda: s.sendto(b"x", dst)))
    print(P + "sendto", E(lambda: s.sendto(b"x", dst)))
    time.sleep(W)
    show(P + "trunc", s, 10)
    show(P + "x", s)
    if port != 7:   # (nft's reject ignores a fragment: its UDP checksum cannot be checked)
        s.sendto(b"y" * 3000, dst); time.sleep(W)
        data, _, flags, _ = s.recvmsg(65536, 0, MSG_ERRQUEUE)
        print(P + "quoted", len(data), hex(flags))      # as much as the ICMP quoted
    s.sendto(b"rfrom", dst); time.sleep(W)
    print(P + "recvfrom", E(lambda: s.recvfrom(100, MSG_ERRQUEUE)))
    s.sendto(b"plainrecv", dst); time.sleep(W)
    print(P + "recv", E(lambda: s.recv(100, MSG_ERRQUEUE)))
    s.sendto(b"purge", dst); time.sleep(W)
    s.setsockopt(lvl, opt, 0); s.setsockopt(lvl, opt, 1)
    show(P + "purged", s)
    print(P + "soerr", s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    s.close()
    c = socket.socket(fam, socket.SOCK_DGRAM); c.setblocking(False)
    c.setsockopt(lvl, opt, 1); c.connect(dst)
    c.sendmsg([b"conn"]); time.sleep(W)
    print(P + "csend", E(lambda: c.sendmsg([b"c2"])))
    time.sleep(W)
    show(P + "conn", c)
    print(P + "csoerr", c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    show(P + "conn2", c)
    print(P + "crecvmsg", E(lambda: c.recvmsg(100)))
    u = socket.socket(fam, socket.SOCK_DGRAM); u.setblocking(False)
    u.sendto(b"plain", dst); time.sleep(W)
    show(P + "off", u)
    print(P + "off soerr", u.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    if mapped:   # IPV6_RECVERR alone: an IPv4 error checks IP_RECVERR (ignored, unconnected)
        u.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        u.sendto(b"v6opt", dst); time.sleep(W)
        show(P + "v6opt", u)
        print(P + "v6opt soerr", u.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))

def tcp(host):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    f = socket.socket(fam); f.setblocking(False)
    print("tcp fresh", E(lambda: f.recvmsg(10, 0, MSG_ERRQUEUE)))
    srv = socket.socket(fam); srv.bind((host, 0)); srv.listen()
    c = socket.create_connection(srv.getsockname()[:2]); a, _ = srv.accept()
    a.sendall(b"stream"); time.sleep(W)
    c.setblocking(False)
    print("tcp recvmsg", E(lambda: c.recvmsg(10, 0, MSG_ERRQUEUE)))
    print("tcp recv", E(lambda: c.recv(10, MSG_ERRQUEUE)))
    print("tcp data", c.recv(10))

def ping(host):
    v6 = ":" in host
    p = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM,
                      socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
    p.setsockopt(socket.IPPROTO_IPV6 if v6 else socket.IPPROTO_IP,
                 IPV6_RECVERR if v6 else IP_RECVERR, 1)
    p.sendto(bytes([128 if v6 else 8]) + bytes(7) + b"pingdata", (host, 0)); time.sleep(W)
    print("ping soerr", p.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    show("ping", p, head=8)

def hops(host):   # traceroute's probe: the first router answers time exceeded
    v6 = ":" in host
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    if v6:
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 1)
    else:
        s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
    s.sendto(b"probe", (host, 33434)); time.sleep(W)
    print("hops soerr", errno.errorcode.get(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)))
    show("hops", s)

def cmsgs(host, ifname):   # the ICMP message's own PKTINFO/TTL/TOS before IP_RECVERR
    v6 = ":" in host
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    for opt in ((IPV6_RECVERR, 49, 51, 66) if v6 else (IP_RECVERR, 8, 12, 13)):
        s.setsockopt(socket.IPPROTO_IPV6 if v6 else socket.IPPROTO_IP, opt, 1)
    s.sendto(b"meta", (host, 9)); time.sleep(W)
    data, anc, flags, addr = s.recvmsg(100, 1024, MSG_ERRQUEUE)
    for lvl, typ, d in anc:
        if typ in (8, 50):   # PKTINFO: the NIC's index is compared, not printed
            idx = struct.unpack_from("=i", d, 16 if v6 else 0)[0]
            d = d[:16] if v6 else d[4:]
            print("cmsg", lvl, typ, d.hex(), (idx, ifname) in socket.if_nameindex())
        elif typ not in (IP_RECVERR, IPV6_RECVERR):
            print("cmsg", lvl, typ, d.hex())
    print("cmsg last", anc[-1][:2], hex(flags))

def local(host):   # over the path MTU with DF: a local entry (tracepath's MTU probe)
    v6 = ":" in host
    for conn in (False, True):
        s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
        if v6:
            s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
            s.setsockopt(socket.IPPROTO_IPV6, 62, 1)              # IPV6_DONTFRAG
            s.setsockopt(socket.IPPROTO_IPV6, 49, 1)              # (no PKTINFO for it)
        else:
            s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            s.setsockopt(socket.IPPROTO_IP, 10, 2)                # IP_PMTUDISC_DO
            s.setsockopt(socket.IPPROTO_IP, 8, 1)
        if conn:
            s.connect((host, 9))
            print("local send", E(lambda: s.sendmsg([b"z" * 2000])))
        else:
            print("local send", E(lambda: s.sendto(b"z" * 2000, (host, 9))))
        print("local soerr", s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
        data, anc, flags, addr = s.recvmsg(100, 1024, MSG_ERRQUEUE)
        print("local errq", len(data), hex(flags), addr, [(l, t, d.hex()) for l, t, d in anc])

for arg in sys.argv[1:]:
    kind, host, *rest = arg.split(",")
    if kind == "udp":
        udp(host, int(rest[0]), False, f"{host}:{rest[0]}")
    elif kind == "mapped":
        udp(host, int(rest[0]), True, f"mapped:{rest[0]}")
    elif kind == "tcp":
        tcp(host)
    elif kind == "ping":
        ping(host)
    elif kind == "hops":
        hops(host)
    elif kind == "local":
        local(host)
    elif kind == "cmsg":
        cmsgs(host, rest[0])
'''


def _run_both(ref_ns: Netns, nv_ns: Netns, nv_options: list[str], tmp_path: Path,
              args: list[str]) -> str:
    prog = tmp_path / "errq.py"
    prog.write_text(PROGRAM)
    ref = ref_ns.run([sys.executable, str(prog), *args], timeout=120, check=False)
    assert ref.returncode == 0, ref.stdout + ref.stderr
    got = nv_run(nv_ns, [f"--stack={STACK}", *nv_options], [sys.executable, str(prog), *args],
                 timeout=120)
    assert got.returncode == 0, got.stderr
    assert got.stdout.splitlines() == ref.stdout.splitlines()
    return ref.stdout


def test_error_queue_on_loopback(make_netns: Callable[[str], Netns], tmp_path: Path) -> None:
    ns = make_netns("nve")
    out = _run_both(ns, ns, ["--network=none"], tmp_path,
                    ["udp,127.0.0.1,9", "udp,::1,9", "mapped,127.0.0.1,9", "tcp,127.0.0.1",
                     "tcp,::1", "cmsg,127.0.0.1,lo", "cmsg,::1,lo"])
    # The kernel's answers, as measured (the test checks the right thing).
    assert ("127.0.0.1:9 one errq 14 b'first-datagr' 0x2000 ('127.0.0.1', 9) "
            "[(0, 11, 32, 'ECONNREFUSED', 2, 3, 3, 0, 0, 0, 2, '127.0.0.1', 0)]") in out
    assert ("::1:9 one errq 14 b'first-datagr' 0x2000 ('::1', 9, 0, 0) "
            "[(41, 25, 44, 'ECONNREFUSED', 3, 1, 4, 0, 0, 0, 10, '::1', 0)]") in out
    # No control buffer: MSG_CTRUNC (put_cmsg without room).
    assert "127.0.0.1:9 quoted 520 0x2008" in out and "::1:9 quoted 1184 0x2008" in out
    assert "127.0.0.1:9 trunc errq 10 b'yyyyyyyyyy' 0x2020" in out
    assert "tcp recv EAGAIN" in out and "tcp data b'stream'" in out
    # IP_PKTINFO (spec_dst 0), IP_TTL, IP_TOS (0xc0: ICMP's precedence) of the ICMP message.
    assert "cmsg 0 8 000000007f000001 True\ncmsg 0 2 40000000\ncmsg 0 1 c0\n" in out


def test_error_queue_from_a_kernel_peer(make_netns: Callable[[str], Netns],
                                        tmp_path: Path) -> None:
    upstream, target = make_netns("nve"), make_netns("nve")
    veth_pair(upstream, "nveu0", target, "nvet0")
    upstream.ip("addr", "add", "10.231.78.1/24", "dev", "nveu0")
    upstream.ip("-6", "addr", "add", "fd6e:7672:78::1/64", "dev", "nveu0", "nodad")
    target.ip("addr", "add", "10.231.78.2/24", "dev", "nvet0")
    target.ip("-6", "addr", "add", "fd6e:7672:78::2/64", "dev", "nvet0", "nodad")
    # Both runs send many datagrams to the same peer: no ICMP rate limit there.
    upstream.run(["sysctl", "-qw", "net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0"])
    target.run(["sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"])
    # upstream also routes to a stub network: a probe with TTL 1 draws time exceeded.
    upstream.run(["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])
    veth_pair(upstream, "nved0", None, "nved1")   # (no dummy driver here: a veth stub)
    upstream.ip("addr", "add", "10.231.79.1/24", "dev", "nved0")
    upstream.ip("-6", "addr", "add", "fd6e:7672:79::1/64", "dev", "nved0", "nodad")
    target.ip("route", "add", "10.231.79.0/24", "via", "10.231.78.1")
    target.ip("-6", "route", "add", "fd6e:7672:79::/64", "via", "fd6e:7672:78::1")
    upstream.run(["nft", "-f", "-"], input=(
        "table inet nve {\n chain in {\n  type filter hook input priority 0;\n"
        "  udp dport 7 reject with icmpx type admin-prohibited\n"
        "  icmp type echo-request reject with icmpx type admin-prohibited\n"
        "  icmpv6 type echo-request reject with icmpx type admin-prohibited\n }\n}\n"))
    out = _run_both(target, upstream, ["--netns", target.path], tmp_path,
                    ["udp,10.231.78.1,9", "udp,fd6e:7672:78::1,9", "udp,10.231.78.1,7",
                     "udp,fd6e:7672:78::1,7", "mapped,10.231.78.1,9", "ping,10.231.78.1",
                     "ping,fd6e:7672:78::1", "hops,10.231.79.5", "hops,fd6e:7672:79::5",
                     "cmsg,10.231.78.1,nvet0", "cmsg,fd6e:7672:78::1,nvet0",
                     "local,10.231.78.1", "local,fd6e:7672:78::1"])
    assert "[(0, 11, 32, 'EHOSTUNREACH', 2, 3, 13, 0, 0, 0, 2, '10.231.78.1', 0)]" in out
    assert "[(41, 25, 44, 'EACCES', 3, 1, 1, 0, 0, 0, 10, 'fd6e:7672:78::1', 0)]" in out
    assert "cmsg 0 8 000000000ae74e02 True\ncmsg 0 2 40000000\ncmsg 0 1 c0\n" in out
    assert "cmsg 41 50 fd6e7672007800000000000000000002 True\ncmsg 41 52 40000000\n" in out
    # SO_EE_ORIGIN_LOCAL, ee_info 1500, no offender; IPv4 names the connected port only.
    assert ("local errq 0 0x2000 ('10.231.78.1', 0) [(0, 11, '5a00000001000000dc05"
            + "0" * 44 + "')]") in out
    assert "local errq 0 0x2000 ('10.231.78.1', 9) " in out
    assert "ping errq 2 ('0800', b'pingdata') 0x2000 ('10.231.78.1', 0)" in out
    assert ("hops errq 5 b'probe' 0x2000 ('10.231.79.5', 33434) "
            "[(0, 11, 32, 'EHOSTUNREACH', 2, 11, 0, 0, 0, 0, 2, '10.231.78.1', 0)]") in out
    assert ("hops errq 5 b'probe' 0x2000 ('fd6e:7672:79::5', 33434, 0, 0) "
            "[(41, 25, 44, 'EHOSTUNREACH', 3, 3, 0, 0, 0, 0, 10, 'fd6e:7672:78::1', 0)]") in out
