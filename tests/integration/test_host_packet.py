"""`netvisor host --packet` on a veth: the kernel in another namespace is the peer.

Namespace K holds the kernel end (addressed); namespace N holds the other end,
which netvisor takes over through AF_PACKET (the kernel's IPv6 on it is
turned off by `netvisor host`, as runsc removes the kernel's addresses).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.test_host_tap import (
    counters,
    kernel_python,
    ping,
    start_host,
    stop,
    wait_kernel_ipv6,
)
from tests.nsutil import veth_pair

pytestmark = pytest.mark.namespaces

OUR4, PEER4 = "10.78.0.2", "10.78.0.1"
OUR6, PEER6 = "fd78::2", "fd78::1"


def test_kernel_pings_and_udp_echo_over_veth(make_netns: Any) -> None:
    kern = make_netns("nvs")
    host = make_netns("nvs")
    veth_pair(kern, "nvsk0", host, "nvsn0")
    kern.ip("addr", "add", f"{PEER4}/24", "dev", "nvsk0")
    kern.ip("addr", "add", f"{PEER6}/64", "dev", "nvsk0", "nodad")
    proc = start_host(host, "--packet", "nvsn0", "--address", f"{OUR4}/24",
                      "--address", f"{OUR6}/64", "--echo", "7", "--seed", "5")
    try:
        wait_kernel_ipv6(kern)
        mac = host.ip("link", "show", "nvsn0").split("link/ether ")[1].split()[0]
        ll = "fe80::" + _eui64_suffix(mac)
        for size in (1, 60000):
            ping(kern, OUR4, size)
            ping(kern, OUR6, size)
            ping(kern, f"{ll}%nvsk0", size)
        out = kernel_python(kern, f"""
            import socket
            for fam, dst in ((socket.AF_INET, "{OUR4}"), (socket.AF_INET6, "{OUR6}")):
                s = socket.socket(fam, socket.SOCK_DGRAM)
                s.settimeout(5)
                for n in (1, 1472, 9000, 65000):
                    data = bytes(range(256)) * (n // 256) + b"v" * (n % 256)
                    s.sendto(data, (dst, 7))
                    assert s.recv(70000) == data, (fam, n)
                print("ok", fam)
            """)
        assert out.count("ok") == 2
        assert counters(proc)["udp_rx"] >= 8
    finally:
        assert stop(proc) == 0


def _eui64_suffix(mac: str) -> str:
    b = bytes.fromhex(mac.replace(":", ""))
    iid = bytes([b[0] ^ 2]) + b[1:3] + b"\xff\xfe" + b[3:]
    return ":".join(f"{iid[i] << 8 | iid[i + 1]:x}" for i in range(0, 8, 2))
