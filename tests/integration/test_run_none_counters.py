"""``netvisor run --network=none``: nothing reaches the kernel's network (issue 4).

The test namespace that runs netvisor has a veth to a peer namespace, so a
packet *could* leave. A program in the sandbox runs TCP and UDP clients and
servers over 127.0.0.1 and ::1 (data checked end to end) and tries to reach
the peer's addresses, which must fail with ENETUNREACH as on Linux with only
a loopback (the same program in a kernel namespace with only ``lo`` is the
reference). Then:

- the test namespace's counters (``/proc/net/dev`` for every interface,
  ``/proc/net/snmp``, ``/proc/net/netstat`` and ``/proc/net/snmp6``: what
  ``nstat -az`` reads) are exactly as before, every field;
- the sandbox's own kernel namespace (the new, empty one the program runs
  in; read by the program itself from ``/proc/self/net/*``) saw nothing at
  all: every counter zero before and after.

The second case runs the same program with ``--network=host`` and shows those
same counters move, so the first case's assertions can fail.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_run_basic import nv_run
from tests.nsutil import Netns, veth_pair

pytestmark = pytest.mark.namespaces

COUNTERS = r'''
import json, os

def counters(net="/proc/self/net"):
    """Every counter of the calling process's network namespace."""
    out = {"dev": {}, "snmp": {}, "netstat": {}, "snmp6": {}}
    with open(f"{net}/dev") as f:
        for line in f.read().splitlines()[2:]:
            name, rest = line.split(":", 1)
            v = [int(x) for x in rest.split()]
            out["dev"][name.strip()] = {"rx_bytes": v[0], "rx_packets": v[1],
                                        "tx_bytes": v[8], "tx_packets": v[9]}
    for table in ("snmp", "netstat"):    # "Proto: names" / "Proto: values" pairs
        with open(f"{net}/{table}") as f:
            lines = f.read().splitlines()
        for head, vals in zip(lines[::2], lines[1::2]):
            proto, names = head.split(":", 1)
            for k, v in zip(names.split(), vals.split(":", 1)[1].split()):
                out[table][f"{proto}{k}"] = int(v)
    if os.path.exists(f"{net}/snmp6"):
        with open(f"{net}/snmp6") as f:
            for line in f.read().splitlines():
                k, v = line.split()
                out["snmp6"][k] = int(v)
    return out
'''

PROGRAM = COUNTERS + r'''
import errno, faulthandler, hashlib, socket, sys, threading
faulthandler.dump_traceback_later(60, exit=True)   # a hang shows where, then fails
before = counters()
result = {"tcp": {}, "udp": {}, "peer": {}}
payload = os.urandom(1 << 20)

def tcp(fam, host):
    srv = socket.socket(fam, socket.SOCK_STREAM)
    srv.bind((host, 0)); srv.listen(); srv.settimeout(20)
    got = []
    def serve():
        c, _ = srv.accept()
        data = bytearray()
        while (d := c.recv(65536)):
            data += d
        c.sendall(hashlib.sha256(data).digest()); c.close()
    t = threading.Thread(target=serve); t.start()
    cl = socket.create_connection((host, srv.getsockname()[1]), timeout=20)
    cl.sendall(payload); cl.shutdown(socket.SHUT_WR)
    digest = b""
    while (d := cl.recv(64)):
        digest += d
    t.join()
    return digest == hashlib.sha256(payload).digest()

def udp(fam, host):
    srv = socket.socket(fam, socket.SOCK_DGRAM); srv.bind((host, 0)); srv.settimeout(10)
    cl = socket.socket(fam, socket.SOCK_DGRAM); cl.bind((host, 0)); cl.settimeout(10)
    sizes = [1, 100, 1400, 1500, 9000, 60000]
    for n in sizes:
        cl.sendto(payload[:n], srv.getsockname())
        d, a = srv.recvfrom(65536)
        srv.sendto(d[::-1], a)
        back, frm = cl.recvfrom(65536)
        if back != payload[:n][::-1] or frm[:2] != srv.getsockname()[:2]:
            return False
    return True

for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    result["tcp"][host] = tcp(fam, host)
    result["udp"][host] = udp(fam, host)

def outcome(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__

for peer in sys.argv[1:]:
    fam = socket.AF_INET6 if ":" in peer else socket.AF_INET
    def connect():
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.settimeout(5); s.connect((peer, 9))
    def sendto():
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            s.sendto(b"x", (peer, 9))
    result["peer"][f"tcp {peer}"] = outcome(connect)
    result["peer"][f"udp {peer}"] = outcome(sendto)

result["before"], result["after"] = before, counters()
print(json.dumps(result))
'''

PEERS = ["10.231.228.2", "fd6e:7672:228::2"]


def _namespaces(make_netns: Callable[[str], Netns]) -> Netns:
    """The namespace netvisor runs in, with a veth to a peer holding PEERS.

    IPv6 chatter on the veths (router solicitations, DAD) is switched off
    before the links come up, and the counters are read only once they have
    been still for a while (MLD reports for the new addresses).
    """
    ns, peer = make_netns("s3"), make_netns("s3")
    for n in (ns, peer):
        n.run(["sysctl", "-q", "-w", "net.ipv6.conf.default.router_solicitations=0",
               "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.default.accept_ra=0"])
    veth_pair(ns, "s3n0", peer, "s3p0")
    ns.ip("addr", "add", "10.231.228.1/24", "dev", "s3n0")
    peer.ip("addr", "add", "10.231.228.2/24", "dev", "s3p0")
    ns.ip("-6", "addr", "add", "fd6e:7672:228::1/64", "dev", "s3n0", "nodad")
    peer.ip("-6", "addr", "add", "fd6e:7672:228::2/64", "dev", "s3p0", "nodad")
    # The path works for the kernel (so a leak would have somewhere to go).
    for p in PEERS:
        ns.run(["ping", "-c1", "-W2", p])
    return ns


def _counters(ns: Netns) -> dict[str, Any]:
    r = ns.run([sys.executable, "-c", COUNTERS + "print(json.dumps(counters()))"])
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def _still_counters(ns: Netns, quiet: float = 1.5, limit: float = 15) -> dict[str, Any]:
    """The namespace's counters once nothing has moved for ``quiet`` seconds."""
    deadline = time.monotonic() + limit
    last = _counters(ns)
    since = time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "the test namespace never went quiet"
        time.sleep(0.25)
        now = _counters(ns)
        if now != last:
            last, since = now, time.monotonic()
    return last


def _changed(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Every counter that differs, as ``"table/name": (before, after)``."""
    out = {}
    for table in ("dev", "snmp", "netstat", "snmp6"):
        for k in before[table].keys() | after[table].keys():
            if before[table].get(k) != after[table].get(k):
                out[f"{table}/{k}"] = (before[table].get(k), after[table].get(k))
    return out


def _run_program(ns: Netns, tmp_path: Path, options: list[str]) -> dict[str, Any]:
    prog = tmp_path / "none.py"
    prog.write_text(PROGRAM)
    r = nv_run(ns, options, [sys.executable, str(prog), *PEERS], timeout=90)
    assert r.returncode == 0, r.stderr
    result: dict[str, Any] = json.loads(r.stdout)
    assert result["tcp"] == {"127.0.0.1": True, "::1": True}
    assert result["udp"] == {"127.0.0.1": True, "::1": True}
    return result


def test_none_sends_nothing(make_netns: Callable[[str], Netns], tmp_path: Path) -> None:
    ns = _namespaces(make_netns)
    prog = tmp_path / "none.py"
    prog.write_text(PROGRAM)
    # Linux with only a loopback: what the sandbox must answer for the peers.
    ref = ns.run(["unshare", "--net", "sh", "-c",
                  f"ip link set lo up && exec {sys.executable} {prog} {' '.join(PEERS)}"])
    expected = json.loads(ref.stdout)["peer"]
    assert set(expected.values()) == {"ENETUNREACH"}, expected

    before = _still_counters(ns)
    result = _run_program(ns, tmp_path, ["--network=none"])
    after = _counters(ns)
    assert result["peer"] == expected
    assert _changed(before, after) == {}
    # The program's own kernel namespace: a fresh one, never used.
    own = result["before"]
    assert _changed(own, result["after"]) == {}
    assert list(own["dev"]) == ["lo"]
    assert set(own["dev"]["lo"].values()) == {0}
    for key in ("IpInReceives", "IpOutRequests", "TcpActiveOpens", "TcpPassiveOpens",
                "TcpInSegs", "TcpOutSegs", "UdpInDatagrams", "UdpOutDatagrams",
                "IcmpOutMsgs"):
        assert own["snmp"][key] == 0, key
    assert own["netstat"]["IpExtInOctets"] == own["netstat"]["IpExtOutOctets"] == 0
    assert all(v == 0 for k, v in own["snmp6"].items()
               if k.startswith(("Ip6In", "Ip6Out", "Udp6", "Icmp6Out"))), own["snmp6"]


def test_host_mode_moves_the_counters(make_netns: Callable[[str], Netns],
                                      tmp_path: Path) -> None:
    """The same program and the same checks' inputs with --network=host: they move."""
    ns = _namespaces(make_netns)
    before = _still_counters(ns)
    result = _run_program(ns, tmp_path, ["--network=host"])
    after = _counters(ns)
    changed = _changed(before, after)
    assert changed != {}
    assert after["dev"]["lo"]["tx_packets"] > before["dev"]["lo"]["tx_packets"]
    assert after["dev"]["s3n0"]["tx_packets"] > before["dev"]["s3n0"]["tx_packets"]
    for key in ("TcpActiveOpens", "TcpPassiveOpens", "UdpOutDatagrams", "IpOutRequests"):
        assert after["snmp"][key] > before["snmp"][key], key
    assert after["snmp6"]["Udp6OutDatagrams"] > before["snmp6"]["Udp6OutDatagrams"]
    assert after["netstat"]["IpExtOutOctets"] > before["netstat"]["IpExtOutOctets"]
    # The program's own view is the test namespace here, and it moved too.
    assert _changed(result["before"], result["after"]) != {}
    assert "ENETUNREACH" not in result["peer"].values()
