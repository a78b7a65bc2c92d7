"""`netvisor host` on a TAP, with the Linux kernel in the same namespace as its peer.

Each test makes its own namespace (prefix ``nvs``), starts
``python3 -m netvisor host --tap ...`` inside it with ``ip netns exec``, and
talks to it with the kernel's own tools (ping, Python sockets, tshark).
The helpers here are shared with the other ``test_host_*`` modules.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.nsutil import Netns

pytestmark = pytest.mark.namespaces

REPO = Path(__file__).resolve().parents[2]
TAP = "nvs0"
OUR4, PEER4 = "10.77.0.2", "10.77.0.1"
OUR6, PEER6 = "fd77::2", "fd77::1"
SEED = 7


def our_mac(seed: int = SEED) -> str:
    from netvisor.cmd_host import _mac_from_seed

    return _mac_from_seed(seed).hex(":")  # type: ignore[union-attr]


def our_link_local(seed: int = SEED) -> str:
    import ipaddress

    from netvisor.tcpip.nic import eui64_interface_id

    mac = bytes.fromhex(our_mac(seed).replace(":", ""))
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + eui64_interface_id(mac)))


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """One line of the host's stdout, or fail with its stderr."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    fd = proc.stdout.fileno()
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no line from netvisor host within {timeout}s: {stderr_of(proc)}")
        chunk = os.read(fd, 1)
        if not chunk:
            raise AssertionError(f"netvisor host exited ({proc.poll()}): {stderr_of(proc)}")
        buf += chunk
    return buf.decode().strip()


def stderr_of(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        return "(still running)"
    assert proc.stderr is not None
    return proc.stderr.read().decode(errors="replace")[-3000:]


def start_host(ns: Netns, *args: str, timeout: float = 30) -> subprocess.Popen[bytes]:
    """Start `netvisor host ARGS` in ``ns`` and wait for its ``ready`` line."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = ns.popen([sys.executable, "-m", "netvisor", "host", *args],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=env)
    assert read_line(proc, timeout) == "ready"
    return proc


def start_tap_host(ns: Netns, *extra: str) -> subprocess.Popen[bytes]:
    proc = start_host(ns, "--tap", TAP, "--address", f"{OUR4}/24", "--address", f"{OUR6}/64",
                      "--peer-address", f"{PEER4}/24", "--peer-address", f"{PEER6}/64",
                      "--seed", str(SEED), *extra)
    wait_kernel_ipv6(ns)
    return proc


def counters(proc: subprocess.Popen[bytes]) -> dict[str, int]:
    """The host's counters (SIGUSR1 makes it print them as one JSON line)."""
    proc.send_signal(signal.SIGUSR1)
    return json.loads(read_line(proc, 10))["counters"]  # type: ignore[no-any-return]


def stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    return proc.returncode


def wait_kernel_ipv6(ns: Netns, timeout: float = 10) -> None:
    """Wait until the kernel's IPv6 addresses in ``ns`` finished DAD."""
    deadline = time.monotonic() + timeout
    while "tentative" in ns.ip("-6", "addr"):
        if time.monotonic() > deadline:
            raise AssertionError("kernel IPv6 addresses stay tentative")
        time.sleep(0.1)


def ping(ns: Netns, dst: str, size: int = 56, count: int = 2, *, check: bool = True) -> str:
    cmd = ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "3", "-s", str(size), dst]
    proc = ns.run(cmd, check=False, timeout=30)
    if check:
        assert proc.returncode == 0 and f"{count} received" in proc.stdout, proc.stdout + proc.stderr
    return proc.stdout


def kernel_python(ns: Netns, code: str, timeout: float = 60) -> str:
    """Run a Python snippet in ``ns`` (the kernel's sockets); returns stdout."""
    proc = ns.run([sys.executable, "-c", textwrap.dedent(code)], check=False, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


# ----------------------------------------------------------------------------- tests


def test_kernel_pings_netvisor_over_tap(make_netns: Any) -> None:
    ns = make_netns("nvs")
    proc = start_tap_host(ns)
    try:
        for size in (1, 60000):
            ping(ns, OUR4, size)
            ping(ns, OUR6, size)
            ping(ns, f"{our_link_local()}%{TAP}", size)
        c = counters(proc)
        assert c["ipv4_fragmented"] >= 2 and c["ipv6_fragmented"] >= 2
        assert c["reassembled"] >= 4
    finally:
        assert stop(proc) == 0


@pytest.mark.parametrize("offload", ["--no-offload", "--offload"])
def test_udp_echo_with_kernel_client_and_port_unreachable(make_netns: Any, offload: str) -> None:
    ns = make_netns("nvs")
    proc = start_tap_host(ns, "--echo", "7", offload)
    try:
        out = kernel_python(ns, f"""
            import errno, socket
            for fam, dst in ((socket.AF_INET, "{OUR4}"), (socket.AF_INET6, "{OUR6}")):
                s = socket.socket(fam, socket.SOCK_DGRAM)
                s.settimeout(5)
                for n in (1, 100, 1472, 1473, 8000, 30000, 65000):
                    data = bytes(range(256)) * (n // 256) + b"q" * (n % 256)
                    s.sendto(data, (dst, 7))
                    got, addr = s.recvfrom(70000)
                    assert got == data, (fam, n, len(got))
                    assert addr[1] == 7
                c = socket.socket(fam, socket.SOCK_DGRAM)
                c.settimeout(5)
                c.connect((dst, 9))
                c.send(b"nobody home")
                try:
                    c.recv(10)
                except ConnectionRefusedError:
                    print("refused", fam)
            """)
        assert out.count("refused") == 2
        ll = kernel_python(ns, f"""
            import socket
            s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            s.settimeout(5)
            dst = socket.getaddrinfo("{our_link_local()}%{TAP}", 7, socket.AF_INET6,
                                     socket.SOCK_DGRAM)[0][4]
            s.sendto(b"link-local", dst)
            data, addr = s.recvfrom(100)
            print(data.decode(), addr[0].split("%")[0] == "{our_link_local()}")
            """)
        assert ll.split() == ["link-local", "True"]
        c = counters(proc)
        assert c["drop.no_socket"] == 2 and c["udp_rx"] >= 14
    finally:
        stop(proc)


def test_neighbour_discovery_both_ways(make_netns: Any) -> None:
    ns = make_netns("nvs")
    proc = start_tap_host(ns)
    try:
        ping(ns, OUR4, count=1)
        ping(ns, OUR6, count=1)
        neigh = ns.ip("neigh", "show", "dev", TAP)
        mac = our_mac()
        assert f"{OUR4} lladdr {mac}" in neigh and f"{OUR6} lladdr {mac}" in neigh, neigh
        c = counters(proc)
        # The kernel resolved us (we answered; its request taught us its MAC,
        # so we did not need to ask: Linux does the same). netvisor resolving
        # the kernel is covered by test_host_client.py.
        assert c["arp_rx"] >= 1 and c["arp_tx"] >= 1
        assert c["ndp_ns_rx"] >= 1 and c["ndp_na_tx"] >= 1
        # Kernel forgets us (flush): re-resolved on the next ping.
        ns.ip("neigh", "flush", "dev", TAP)
        ping(ns, OUR4, count=1)
        assert counters(proc)["arp_tx"] > c["arp_tx"]
    finally:
        stop(proc)


def test_pcap_is_read_back_by_tshark(make_netns: Any, tmp_path: Path) -> None:
    ns = make_netns("nvs")
    pcap = tmp_path / "host.pcap"
    proc = start_tap_host(ns, "--pcap", str(pcap))
    try:
        ping(ns, OUR4, count=2)
        ping(ns, OUR6, count=1)
    finally:
        stop(proc)
    out = subprocess.run(["tshark", "-r", str(pcap), "-T", "fields", "-e", "frame.protocols",
                          "-e", "icmp.type", "-e", "icmpv6.type"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert sum(1 for ln in lines if ln.split("\t")[1:2] == ["8"]) == 2  # echo requests in
    assert sum(1 for ln in lines if ln.split("\t")[1:2] == ["0"]) == 2  # echo replies out
    assert any("arp" in ln for ln in lines)
    assert any(ln.endswith("\t129") for ln in lines)  # ICMPv6 echo reply
    assert any("\t135" in ln for ln in lines)  # NDP neighbour solicitation (DAD at least)


def test_sigterm_removes_tap_and_bad_arguments_exit_2(make_netns: Any) -> None:
    ns = make_netns("nvs")
    proc = start_tap_host(ns)
    assert TAP in ns.ip("link", "show")
    assert stop(proc) == 0
    assert TAP not in ns.ip("link", "show")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for bad in (["--tap", TAP, "--address", "10.0.0.1"],
                ["--tap", TAP, "--packet", "eth0"],
                ["--address", "10.0.0.1/24"],
                ["--tap", TAP, "--address", "10.0.0.1/24", "--echo", "70000"],
                ["--packet", "x", "--peer-address", "10.0.0.1/24"],
                ["--tap", TAP, "--address", "10.0.0.2/24", "--gateway", "10.9.9.9"]):
        r = ns.run([sys.executable, "-m", "netvisor", "host", *bad], check=False, cwd=REPO, env=env)
        assert r.returncode == 2, (bad, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "error" in r.stderr


@pytest.mark.parametrize("offload", ["--no-offload", "--offload"])
def test_tcp_echo_with_kernel_client(make_netns: Any, offload: str) -> None:
    ns = make_netns("nvs")
    proc = start_tap_host(ns, "--echo", "7", offload)
    try:
        out = kernel_python(ns, f"""
            import socket, threading
            for dst in ("{OUR4}", "{OUR6}"):
                s = socket.create_connection((dst, 7), timeout=10)
                data = bytes(range(256)) * 4000  # ~1 MB
                t = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
                t.start()
                got = bytearray()
                while chunk := s.recv(1 << 20):
                    got += chunk
                t.join()
                assert bytes(got) == data, len(got)
                print("ok")
            """)
        assert out.split() == ["ok", "ok"]
    finally:
        assert stop(proc) == 0
