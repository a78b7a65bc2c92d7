"""Unmodified Debian programs under ``netvisor run`` against kernel peers (issue 4).

Each test builds its own namespaces (prefix "nva"): the sandboxed program runs
under netvisor in the test namespace, the peer is a plain kernel process in
that namespace (on a /32 on lo) or in a second namespace behind a veth. Servers
inside the sandbox get fixed addresses with --address/--gateway so the kernel
client knows where to connect. Every process is bounded by a timeout and
stopped at teardown (the namespace fixture kills what is left, and netvisor's
PR_SET_PDEATHSIG chain takes the sandbox down with it).
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.test_run_basic import STACK, nv_popen, nv_run
from tests.nsutil import Netns, veth_pair

pytestmark = pytest.mark.namespaces


def _need(*programs: str) -> None:
    import shutil
    missing = [p for p in programs if shutil.which(p) is None and not Path(p).exists()]
    if missing:
        pytest.skip(f"not installed: {' '.join(missing)} (see .ci/apt-packages.txt)")


@pytest.fixture
def ns(make_netns: Callable[[str], Netns]) -> Iterator[Netns]:
    n = make_netns("nva")
    yield n
    # netvisor first, politely (it removes its TAP and nftables table), then
    # the fixture's SIGKILL for anything that did not go.
    for proc in n.processes:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in n.processes:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _until(what: str, check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _listening(ns: Netns, proto: str, addr_port: str) -> Callable[[], bool]:
    return lambda: addr_port in ns.run(["ss", f"-ln{proto}"], check=False).stdout


def _sandbox_opts(net: str) -> list[str]:
    """netvisor options giving the stack 10.231.NET.2 with the kernel side at .1."""
    return [f"--stack={STACK}", "--address", f"10.231.{net}.2/30", "--gateway", f"10.231.{net}.1"]


def _alive(proc: subprocess.Popen[str]) -> None:
    assert proc.poll() is None, f"sandboxed server exited with {proc.returncode}"


# ---------------------------------------------------------------- nginx
NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 100000;
    server {{
        listen {addr}:8080;
        root {d}/www;
    }}
}}
"""


def test_nginx_inside_served_to_curl_and_wrk(ns: Netns, tmp_path: Path) -> None:
    _need("nginx", "wrk", "curl")
    www = tmp_path / "www"
    www.mkdir()
    blob = os.urandom(3 << 20)
    (www / "blob.bin").write_bytes(blob)
    (www / "small.html").write_text("<p>" + "x" * 600 + "</p>\n")
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(d=tmp_path, addr="10.231.240.2"))
    proc = nv_popen(ns, _sandbox_opts("240"),
                    ["nginx", "-e", "stderr", "-p", str(tmp_path), "-c", str(conf)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = "http://10.231.240.2:8080"
    out = tmp_path / "out.bin"

    def fetched() -> bool:
        _alive(proc)
        return ns.run(["curl", "-sS", "--max-time", "10", "-o", str(out), f"{base}/blob.bin"],
                      check=False).returncode == 0
    _until("nginx to serve", fetched)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(blob).hexdigest()

    # wrk's own timeout raised from 2 s: the VM's cores are shared, a slow
    # response is not an error of the sandbox.
    r = ns.run(["wrk", "-t2", "-c50", "-d10s", "--timeout", "10s", f"{base}/small.html"],
               check=False, timeout=40)
    assert r.returncode == 0, r.stderr
    assert "Socket errors" not in r.stdout, r.stdout
    assert "Non-2xx" not in r.stdout, r.stdout
    m = re.search(r"(\d+) requests in", r.stdout)
    assert m and int(m.group(1)) > 100, r.stdout
    _alive(proc)


# ---------------------------------------------------------------- redis
def _redis_server(addr: str, port: int, workdir: Path) -> list[str]:
    return ["redis-server", "--save", "", "--appendonly", "no", "--port", str(port),
            "--bind", addr, "--dir", str(workdir), "--daemonize", "no",
            # Redis 7 refuses non-loopback clients without a password otherwise
            # (checked against the kernel: the same DENIED reply).
            "--protected-mode", "no"]


def _benchmark_ok(out: str) -> None:
    for cmd in ("SET", "GET"):
        m = re.search(rf"^{cmd}: ([\d.]+) requests per second", out.replace("\r", "\n"),
                      re.MULTILINE)
        assert m and float(m.group(1)) > 10, out


def test_redis_server_inside_benchmark_outside(ns: Netns, tmp_path: Path) -> None:
    _need("redis-server", "redis-benchmark", "redis-cli")
    proc = nv_popen(ns, _sandbox_opts("241"), _redis_server("10.231.241.2", 6390, tmp_path),
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def pong() -> bool:
        _alive(proc)
        r = ns.run(["timeout", "5", "redis-cli", "-h", "10.231.241.2", "-p", "6390", "ping"],
                   check=False)
        return r.stdout.strip() == "PONG"
    _until("redis-server in the sandbox", pong)
    r = ns.run(["timeout", "60", "redis-benchmark", "-h", "10.231.241.2", "-p", "6390", "-q",
                "-n", "2000", "-t", "set,get"], check=False, timeout=70)
    assert r.returncode == 0, r.stdout + r.stderr
    _benchmark_ok(r.stdout)
    _alive(proc)


def test_redis_benchmark_inside_server_outside(ns: Netns, tmp_path: Path) -> None:
    _need("redis-server", "redis-benchmark", "redis-cli")
    ns.ip("addr", "add", "10.231.255.1/32", "dev", "lo")
    ns.popen(_redis_server("10.231.255.1", 6391, tmp_path),
             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _until("kernel redis-server", _listening(ns, "t", "10.231.255.1:6391"))
    r = nv_run(ns, [f"--stack={STACK}"],
               ["timeout", "60", "redis-benchmark", "-h", "10.231.255.1", "-p", "6391", "-q",
                "-n", "2000", "-t", "set,get"], timeout=70)
    assert r.returncode == 0, r.stdout + r.stderr
    _benchmark_ok(r.stdout)


# ---------------------------------------------------------------- dig / dnsmasq
def test_dig_inside_against_dnsmasq_outside(ns: Netns, tmp_path: Path) -> None:
    _need("dig", "dnsmasq")
    ns.ip("addr", "add", "10.231.255.53/32", "dev", "lo")
    ns.popen(["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", "--bind-interfaces",
              "--listen-address=10.231.255.53", f"--pid-file={tmp_path / 'dnsmasq.pid'}",
              "--address=/test.example/10.231.7.7"],
             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _until("dnsmasq", _listening(ns, "u", "10.231.255.53:53"))
    r = nv_run(ns, [f"--stack={STACK}"],
               ["dig", "@10.231.255.53", "www.test.example", "A", "+time=3", "+tries=3"],
               timeout=40)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "status: NOERROR" in r.stdout, r.stdout
    assert re.search(r"^www\.test\.example\.\s+\d+\s+IN\s+A\s+10\.231\.7\.7$", r.stdout,
                     re.MULTILINE), r.stdout
    r = nv_run(ns, [f"--stack={STACK}"],
               ["dig", "+short", "@10.231.255.53", "a.test.example", "+time=3", "+tries=3"],
               timeout=40)
    assert r.returncode == 0 and r.stdout.strip() == "10.231.7.7", r.stdout + r.stderr


# ---------------------------------------------------------------- socat
def test_socat_client_inside(ns: Netns) -> None:
    _need("socat")
    ns.ip("addr", "add", "10.231.255.1/32", "dev", "lo")
    ns.popen(["timeout", "60", "socat", "-T", "20",
              "TCP-LISTEN:7000,bind=10.231.255.1,reuseaddr", "SYSTEM:tr a-z A-Z"],
             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _until("kernel socat", _listening(ns, "t", "10.231.255.1:7000"))
    r = nv_run(ns, [f"--stack={STACK}"],
               ["socat", "-T", "20", "-", "TCP:10.231.255.1:7000"],
               input="hello through the sandbox\n", timeout=40)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "HELLO THROUGH THE SANDBOX\n"


def test_socat_server_inside(ns: Netns) -> None:
    _need("socat")
    proc = nv_popen(ns, _sandbox_opts("242"),
                    ["socat", "-T", "20", "TCP-LISTEN:7001,bind=10.231.242.2",
                     "SYSTEM:tr a-z A-Z"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    got: list[str] = []

    def round_trip() -> bool:
        _alive(proc)
        r = ns.run(["timeout", "20", "socat", "-T", "10", "-", "TCP:10.231.242.2:7001"],
                   input="hello from the kernel\n", check=False)
        got.append(r.stdout)
        return r.returncode == 0
    _until("socat in the sandbox", round_trip)
    assert got[-1] == "HELLO FROM THE KERNEL\n"
    # socat without fork serves one connection and exits 0: netvisor gives its status.
    assert proc.wait(timeout=20) == 0


# ---------------------------------------------------------------- ssh
SSHD_CONF = """
Port 22
ListenAddress 10.231.244.2
HostKey {d}/host_key
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
PermitRootLogin yes
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
LoginGraceTime 30
"""


def test_ssh_inside_to_sshd_in_peer_namespace(make_netns: Callable[[str], Netns], ns: Netns,
                                               tmp_path: Path) -> None:
    """The peer is a second namespace behind a veth; the sandbox reaches it through the
    default wiring (forwarding + masquerade in the test namespace)."""
    _need("/usr/sbin/sshd", "ssh", "ssh-keygen")
    peer = make_netns("nva")
    veth_pair(ns, "nvah0", peer, "nvap0")
    ns.ip("addr", "add", "10.231.244.1/24", "dev", "nvah0")
    peer.ip("addr", "add", "10.231.244.2/24", "dev", "nvap0")
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(tmp_path / key)], check=True, timeout=30)
    (tmp_path / "authorized_keys").write_text((tmp_path / "client_key.pub").read_text())
    conf = tmp_path / "sshd_config"
    conf.write_text(SSHD_CONF.format(d=tmp_path))
    # sshd's privilege-separation directory (the package's tmpfiles.d creates it at boot).
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    sshd = peer.popen(["timeout", "60", "/usr/sbin/sshd", "-D", "-e", "-f", str(conf)],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _until("sshd", _listening(peer, "t", "10.231.244.2:22"))
        r = nv_run(ns, [f"--stack={STACK}"],
                   ["ssh", "-F", "/dev/null", "-i", str(tmp_path / "client_key"),
                    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                    "-o", "BatchMode=yes", "-o", "ConnectTimeout=15",
                    "root@10.231.244.2", "echo", "hello"], timeout=45)
    finally:
        # SIGTERM (timeout passes it on): sshd reaps its session children itself.
        sshd.terminate()
        try:
            sshd.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sshd.kill()
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello\n"
