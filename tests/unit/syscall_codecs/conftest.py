"""A namespace shared by the codec tests: a veth pair with known MACs and addresses.

The kernel in this namespace is the reference: the tests send it the same
netlink requests, ioctls and getsockopts as netvisor's codecs get, and compare.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from netvisor.syscall.ifdesc import (
    IFA_F_NODAD,
    IFA_F_PERMANENT,
    IFA_F_SECONDARY,
    RT_SCOPE_HOST,
    RT_SCOPE_LINK,
    RTPROT_BOOT,
    AddressInfo,
    InterfaceInfo,
    NeighborInfo,
    RouteInfo,
    connected_routes,
    linux_flags,
)
from netvisor.syscall.netlink import IFAPROT_KERNEL_LO
from tests.nsutil import Netns, netns, sh, unique_name

PROBE = Path(__file__).with_name("kernel_probe.py")

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
LINK_LOCAL_A = "fe80::ff:fe00:1"  # EUI-64 of MAC_A (RFC 4291 appendix A)


@dataclass
class RefNet:
    """The reference namespace and the description netvisor would build of it."""

    ns: Netns
    a: str
    b: str
    interfaces: list[InterfaceInfo]
    routes: list[RouteInfo]
    neighbors: list[NeighborInfo]

    def probe(self, job: dict[str, Any], *, as_nobody: bool = False) -> dict[str, Any]:
        argv = [sys.executable, str(PROBE)]
        if as_nobody:
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
        proc = subprocess.run(self.ns.argv(argv), input=json.dumps(job), capture_output=True,
                              text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"kernel probe failed: {proc.stderr}")
        return json.loads(proc.stdout)  # type: ignore[no-any-return]

    def index(self, name: str) -> int:
        return next(i.index for i in self.interfaces if i.name == name)


def wait_for(cond: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError("condition never became true")
        time.sleep(0.05)


def wait_running(ns: Netns, names: list[str]) -> list[dict[str, Any]]:
    """Wait until the veth ends have carrier (linkwatch sets IFF_RUNNING a bit later)."""
    deadline = time.monotonic() + 10
    while True:
        links = json.loads(ns.ip("-j", "link", "show"))
        if all(link.get("operstate") == "UP" for link in links if link["ifname"] in names):
            return links  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise RuntimeError(f"veth never got carrier: {links}")
        time.sleep(0.05)


@pytest.fixture(scope="package")
def refnet() -> Iterator[RefNet]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    with netns("nvn") as ns:
        a, b = unique_name("nvna"), unique_name("nvnb")
        # No DAD: addresses are usable (not tentative) at once, as in the stack.
        ns.run(["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"])
        ns.ip("link", "add", a, "address", MAC_A.hex(":"), "type", "veth",
              "peer", "name", b, "address", MAC_B.hex(":"))
        # a gets its EUI-64 link-local address; b none (an interface without IPv6 addresses).
        ns.ip("link", "set", b, "addrgenmode", "none")
        ns.ip("link", "set", a, "up")
        ns.ip("link", "set", b, "up")
        ns.ip("addr", "add", "10.9.0.1/24", "brd", "+", "dev", a)
        ns.ip("addr", "add", "10.9.0.7/24", "dev", a)
        ns.ip("-6", "addr", "add", "fd00:9::1/64", "dev", a, "nodad")
        ns.ip("-6", "addr", "add", "fd00:9::3/64", "dev", a, "nodad")
        ns.ip("route", "add", "default", "via", "10.9.0.2")
        ns.ip("route", "add", "10.20.0.0/16", "via", "10.9.0.3", "metric", "50")
        ns.ip("-6", "route", "add", "default", "via", "fd00:9::fe", "dev", a)
        ns.ip("neigh", "add", "10.9.0.2", "lladdr", MAC_B.hex(":"), "dev", a, "nud", "permanent")
        ns.ip("-6", "neigh", "add", "fd00:9::fe", "lladdr", MAC_B.hex(":"), "dev", a,
              "nud", "permanent")
        links = wait_running(ns, [a, b])
        wait_for(lambda: LINK_LOCAL_A in ns.ip("-6", "addr", "show", "dev", a))
        idx = {link["ifname"]: link["ifindex"] for link in links}
        lo = InterfaceInfo(
            index=idx["lo"], name="lo", mac=b"\x00" * 6, mtu=65536,
            flags=linux_flags("loopback"), kind="loopback", min_mtu=0, max_mtu=0,
            addresses=(
                AddressInfo(ipaddress.ip_interface("127.0.0.1/8"), scope=RT_SCOPE_HOST),
                AddressInfo(ipaddress.ip_interface("::1/128"), scope=RT_SCOPE_HOST,
                            proto=IFAPROT_KERNEL_LO),
            ))
        ia = InterfaceInfo(
            index=idx[a], name=a, mac=MAC_A, mtu=1500, flags=linux_flags("ether"),
            kind="ether", addresses=(
                # Added by the kernel when the link came up, before the others.
                AddressInfo(ipaddress.ip_interface(f"{LINK_LOCAL_A}/64"), scope=RT_SCOPE_LINK),
                AddressInfo(ipaddress.ip_interface("10.9.0.1/24"),
                            broadcast=ipaddress.IPv4Address("10.9.0.255")),
                AddressInfo(ipaddress.ip_interface("10.9.0.7/24"),
                            flags=IFA_F_PERMANENT | IFA_F_SECONDARY),
                AddressInfo(ipaddress.ip_interface("fd00:9::1/64"),
                            flags=IFA_F_PERMANENT | IFA_F_NODAD),
                AddressInfo(ipaddress.ip_interface("fd00:9::3/64"),
                            flags=IFA_F_PERMANENT | IFA_F_NODAD),
            ))
        ib = InterfaceInfo(index=idx[b], name=b, mac=MAC_B, mtu=1500,
                           flags=linux_flags("ether"), kind="ether")
        interfaces = [lo, ib, ia]
        routes = connected_routes(interfaces) + [
            RouteInfo(dst=ipaddress.ip_network("0.0.0.0/0"), oif=ia.index,
                      gateway=ipaddress.ip_address("10.9.0.2"), protocol=RTPROT_BOOT),
            RouteInfo(dst=ipaddress.ip_network("10.20.0.0/16"), oif=ia.index, metric=50,
                      gateway=ipaddress.ip_address("10.9.0.3"), protocol=RTPROT_BOOT),
            RouteInfo(dst=ipaddress.ip_network("::/0"), oif=ia.index, metric=1024,
                      gateway=ipaddress.ip_address("fd00:9::fe"), protocol=RTPROT_BOOT),
        ]
        neighbors = [
            NeighborInfo(ifindex=ia.index, address=ipaddress.ip_address("10.9.0.2"),
                         lladdr=MAC_B),
            NeighborInfo(ifindex=ia.index, address=ipaddress.ip_address("fd00:9::fe"),
                         lladdr=MAC_B),
        ]
        yield RefNet(ns, a, b, interfaces, routes, neighbors)
    leftover = sh(["ip", "netns", "list"]).stdout
    assert ns.name not in leftover
