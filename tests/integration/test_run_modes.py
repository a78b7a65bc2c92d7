"""netvisor run options: --publish, --dns, --debug, --netns take-over, errors."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_run_basic import STACK, _http_server, nv_popen, nv_run
from tests.nsutil import Netns, veth_pair

pytestmark = pytest.mark.namespaces

SERVER = r'''
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8000)); s.listen()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 8001))
print("listening", flush=True)
d, a = u.recvfrom(100); u.sendto(d.upper(), a)
c, a = s.accept()
c.sendall(b"published:" + c.recv(100)); c.close()
'''

CLIENT = r'''
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
u.sendto(b"udp", ("127.0.0.1", 18001)); print(u.recvfrom(100)[0].decode())
c = socket.create_connection(("127.0.0.1", 18000), timeout=5); c.sendall(b"hi")
print(c.recv(100).decode())
'''


def test_publish_tcp_and_udp(make_netns: Callable[[str], Netns], tmp_path: Path) -> None:
    ns = make_netns("nvr")
    (tmp_path / "srv.py").write_text(SERVER)
    proc = nv_popen(ns, [f"--stack={STACK}", "--publish", "18000:8000",
                         "--publish", "127.0.0.1:18001:8001/udp"],
                    [sys.executable, str(tmp_path / "srv.py")], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == "listening\n"
    time.sleep(0.3)
    (tmp_path / "cl.py").write_text(CLIENT)
    r = ns.run([sys.executable, str(tmp_path / "cl.py")], timeout=30)
    assert r.stdout.split() == ["UDP", "published:hi"]
    assert proc.wait(timeout=20) == 0


STREAM_SERVER = r'''
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8000)); s.listen()
print("listening", flush=True)
for _ in range(2):
    c, a = s.accept()
    try:
        while True:
            c.sendall(bytes(65536))   # until the client goes away
    except OSError:
        c.close()
'''

RESETTING_CLIENT = r'''
import socket, struct, time
for i in range(2):
    c = socket.create_connection(("127.0.0.1", 18000), timeout=5)
    got = 0
    while got < (1 << 20):
        got += len(c.recv(65536))
    print("got", i, got >= (1 << 20), flush=True)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()                      # RST while the proxy is still sending to us
    time.sleep(0.3)
'''


def test_publish_survives_a_client_reset(make_netns: Callable[[str], Netns],
                                         tmp_path: Path) -> None:
    """A published connection reset by its client mid-stream ends that
    connection only: the next client is served and netvisor does not fail."""
    ns = make_netns("nvr")
    (tmp_path / "srv.py").write_text(STREAM_SERVER)
    proc = nv_popen(ns, [f"--stack={STACK}", "--publish", "18000:8000"],
                    [sys.executable, str(tmp_path / "srv.py")], stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == "listening\n"
    time.sleep(0.3)
    (tmp_path / "cl.py").write_text(RESETTING_CLIENT)
    r = ns.run([sys.executable, str(tmp_path / "cl.py")], timeout=30)
    assert r.stdout.split("\n")[:2] == ["got 0 True", "got 1 True"]
    assert proc.wait(timeout=20) == 0, proc.stderr.read() if proc.stderr else ""


def test_dns_option_writes_resolv_conf(make_netns: Callable[[str], Netns]) -> None:
    ns = make_netns("nvr")
    r = nv_run(ns, [f"--stack={STACK}", "--dns", "10.231.255.53"], ["cat", "/etc/resolv.conf"])
    assert r.stdout == "nameserver 10.231.255.53\n"
    assert "10.231.255.53" not in Path("/etc/resolv.conf").read_text()


def test_debug_logs_trapped_calls(make_netns: Callable[[str], Netns], tmp_path: Path) -> None:
    ns = make_netns("nvr")
    log = tmp_path / "calls.log"
    r = nv_run(ns, [f"--stack={STACK}", "--network=none", f"--debug={log}"],
               [sys.executable, "-c", "import socket; s = socket.socket(); "
                "s.bind(('127.0.0.1', 0)); s.connect(('127.0.0.1', 1))"])
    assert r.returncode == 1 and "ConnectionRefusedError" in r.stderr
    text = log.read_text()
    assert "(emulated inet/stream)" in text
    assert "bind(" in text and ") = 0" in text
    assert "connect(" in text and "ECONNREFUSED" in text


def test_usage_errors(make_netns: Callable[[str], Netns]) -> None:
    ns = make_netns("nvr")
    r = nv_run(ns, ["--network=bogus"], ["true"])
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    r = nv_run(ns, [f"--stack={STACK}", "--publish", "nonsense"], ["true"])
    assert r.returncode == 125 and r.stderr.startswith("netvisor: error: --publish nonsense")
    r = nv_run(ns, [f"--stack={STACK}", "--netns", "/run/netns/nvr-none-such"], ["true"])
    assert r.returncode == 125 and "no such namespace" in r.stderr


def test_netns_take_over_and_restore(make_netns: Callable[[str], Netns],
                                     tmp_path: Path) -> None:
    """runsc style: the stack takes the namespace's interface and gives it back."""
    upstream, target = make_netns("nvr"), make_netns("nvr")
    veth_pair(upstream, "nvru0", target, "nvrt0")
    upstream.ip("addr", "add", "10.231.250.1/24", "dev", "nvru0")
    target.ip("addr", "add", "10.231.250.2/24", "dev", "nvrt0")
    target.ip("route", "add", "default", "via", "10.231.250.1")
    upstream.ip("-6", "addr", "add", "fd6e:7672:250::1/64", "dev", "nvru0", "nodad")
    target.ip("-6", "addr", "add", "fd6e:7672:250::2/64", "dev", "nvrt0", "nodad")
    (tmp_path / "hello.txt").write_text("through the taken-over veth\n")
    _http_server(upstream, tmp_path, "::", 8080)
    r = nv_run(upstream, [f"--stack={STACK}", "--netns", target.path],
               ["sh", "-c", "ip -o addr show nvrt0; "
                            "curl -sS http://10.231.250.1:8080/hello.txt; "
                            "curl -sS -g 'http://[fd6e:7672:250::1]:8080/hello.txt'"])
    assert r.returncode == 0, r.stderr
    assert "10.231.250.2/24" in r.stdout and "fd6e:7672:250::2/64" in r.stdout
    assert r.stdout.endswith("through the taken-over veth\n" * 2)
    assert "10.231.250.2/24" in target.ip("-4", "addr", "show", "nvrt0")
    assert "fd6e:7672:250::2/64" in target.ip("-6", "addr", "show", "nvrt0")
    assert "default via 10.231.250.1" in target.ip("route")


def test_host_mode_runs_unsandboxed(make_netns: Callable[[str], Netns]) -> None:
    ns = make_netns("nvr")
    ns.ip("addr", "add", "10.231.255.7/32", "dev", "lo")
    r = nv_run(ns, ["--network=host"], ["ip", "-o", "addr"])
    assert "10.231.255.7" in r.stdout and r.returncode == 0
    assert nv_run(ns, ["--network=host"], ["nvr-no-such-command"]).returncode == 127
    assert socket.AF_INET  # keep the import used for readers of the file


def test_dns_resolution_over_udp(make_netns: Callable[[str], Netns], tmp_path: Path) -> None:
    """glibc's resolver (UDP: connect, sendmmsg, poll, recvfrom) against dnsmasq outside."""
    ns = make_netns("nvr")
    ns.ip("addr", "add", "10.231.255.53/32", "dev", "lo")
    ns.popen(["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
              "--listen-address=10.231.255.53", f"--pid-file={tmp_path / 'dnsmasq.pid'}",
              "--address=/myhost.nvr/10.231.255.77",
              "--address=/myhost.nvr/fd6e:7672:ffff::77"],
             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while ns.run(["sh", "-c", "ss -lun | grep -q 10.231.255.53:53"], check=False).returncode:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = nv_run(ns, [f"--stack={STACK}", "--dns", "10.231.255.53"], [sys.executable, "-c",
               "import socket; print(sorted({a[4][0] for a in "
               "socket.getaddrinfo('myhost.nvr', 80, proto=socket.IPPROTO_TCP)}))"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['10.231.255.77', 'fd6e:7672:ffff::77']"


def test_pcap_and_stats(make_netns: Callable[[str], Netns], tmp_path: Path) -> None:
    ns = make_netns("nvr")
    ns.ip("addr", "add", "10.231.255.1/32", "dev", "lo")
    (tmp_path / "index.html").write_text("x" * 5000)
    _http_server(ns, tmp_path, "0.0.0.0", 8080)
    pcap = tmp_path / "cap.pcap"
    r = nv_run(ns, [f"--stack={STACK}", f"--pcap={pcap}", "--stats"],
               ["curl", "-sS", "-o", "/dev/null", "http://10.231.255.1:8080/index.html"])
    assert r.returncode == 0, r.stderr
    assert '"counters"' in r.stderr
    data = pcap.read_bytes()
    assert data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") and len(data) > 5000
    shown = subprocess.run(["tcpdump", "-nr", str(pcap), "tcp port 8080"], capture_output=True,
                           text=True)
    assert "10.231.255.1.8080" in shown.stdout


def test_default_wiring_masquerades_to_upstream(make_netns: Callable[[str], Netns],
                                                tmp_path: Path) -> None:
    """The program reaches a network beyond the kernel side (forwarding + nftables
    masquerade); the upstream namespace has no route back to the sandbox's /30, so
    only NAT can make this work. --no-nat: it does not."""
    host, upstream = make_netns("nvr"), make_netns("nvr")
    veth_pair(host, "nvrh0", upstream, "nvru0")
    host.ip("addr", "add", "10.231.249.1/24", "dev", "nvrh0")
    upstream.ip("addr", "add", "10.231.249.2/24", "dev", "nvru0")
    (tmp_path / "up.txt").write_text("upstream says hi\n")
    _http_server(upstream, tmp_path, "10.231.249.2", 8080)
    r = nv_run(host, [f"--stack={STACK}"],
               ["curl", "-sS", "--max-time", "10", "http://10.231.249.2:8080/up.txt"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "upstream says hi\n"
    r = nv_run(host, [f"--stack={STACK}", "--no-nat"],
               ["curl", "-sS", "--max-time", "2", "http://10.231.249.2:8080/up.txt"])
    assert r.returncode != 0


def test_http_server_inside_served_to_kernel_curl(make_netns: Callable[[str], Netns],
                                                 tmp_path: Path) -> None:
    """python3 -m http.server in the sandbox; curl in the test namespace reaches it at
    the stack's address (--address/--gateway fix the TAP's addresses)."""
    ns = make_netns("nvr")
    blob = os.urandom(4 << 20)
    (tmp_path / "blob.bin").write_bytes(blob)
    proc = nv_popen(ns, [f"--stack={STACK}", "--address", "10.231.253.2/30",
                         "--gateway", "10.231.253.1"],
                    [sys.executable, "-m", "http.server", "-d", str(tmp_path), "-b",
                     "0.0.0.0", "8000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = tmp_path / "out.bin"
    deadline = time.monotonic() + 20
    while True:
        r = ns.run(["curl", "-sS", "--max-time", "10", "-o", str(out),
                    "http://10.231.253.2:8000/blob.bin"], check=False)
        if r.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(blob).digest()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) in (0, 130, 1)


@pytest.mark.parametrize("extra", [[], ["-R"], ["-u", "-b", "20M"]], ids=["up", "down", "udp"])
def test_iperf3_client_inside(make_netns: Callable[[str], Netns], extra: list[str]) -> None:
    ns = make_netns("nvr")
    ns.ip("addr", "add", "10.231.255.1/32", "dev", "lo")
    ns.popen(["iperf3", "-s", "-B", "10.231.255.1", "-p", "5201", "-1"],
             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while ns.run(["sh", "-c", "ss -ltn | grep -q :5201"], check=False).returncode:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = nv_run(ns, [f"--stack={STACK}"],
               ["iperf3", "-c", "10.231.255.1", "-p", "5201", "-t", "1", "-J", *extra])
    assert r.returncode == 0, r.stderr
    import json
    end = json.loads(r.stdout)["end"]
    summary = end["sum"] if "-u" in extra else end["sum_received"]
    assert summary["bytes"] > 1_000_000
