"""Fixtures for netvisor-cni tests: a host namespace, a plugin dir, private state."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.cni.cniutil import REF_DIR, CNIRunner, have_reference_plugins, plugin_executable
from tests.nsutil import Netns


@dataclass
class CNIEnv:
    runner: CNIRunner
    host: Netns
    bin_dir: str
    ipam_dir: str
    state_dir: str
    make_container: Callable[[], Netns]
    subnet: str = "10.77.0.0/24"

    def conf(self, version: str = "1.1.0", **over: Any) -> dict[str, Any]:
        """A plain netvisor-cni config on a test-owned host-local dataDir."""
        conf: dict[str, Any] = {
            "cniVersion": version, "name": "nvctest", "type": "netvisor-cni",
            "bridge": "nvcbr0", "isGateway": True, "mtu": 1400,
            "ipam": {"type": "host-local", "dataDir": self.ipam_dir, "subnet": self.subnet,
                     "routes": [{"dst": "0.0.0.0/0"}]},
            "dns": {"nameservers": ["10.77.0.1"], "search": ["example.test"]},
        }
        conf.update(over)
        return conf

    def reservations(self, network: str = "nvctest") -> list[str]:
        """host-local reservation files (one per allocated address)."""
        d = os.path.join(self.ipam_dir, network)
        if not os.path.isdir(d):
            return []
        return sorted(n for n in os.listdir(d) if n not in ("lock",)
                      and not n.startswith("last_reserved_ip"))

    def states(self) -> list[str]:
        if not os.path.isdir(self.state_dir):
            return []
        return sorted(n for n in os.listdir(self.state_dir) if n.endswith(".json"))

    def host_links(self) -> list[str]:
        out = self.host.ip("-o", "link", "show")
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


@pytest.fixture
def cni(make_netns: Callable[[str], Netns], tmp_path: Any) -> CNIEnv:
    exe = plugin_executable()
    if exe is None:
        pytest.skip("netvisor-cni not installed (pip install -e .)")
    if not have_reference_plugins():
        pytest.skip("containernetworking-plugins not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # Installed as a runtime would find it: a symlink named after the type.
    os.symlink(exe, bin_dir / "netvisor-cni")
    host = make_netns("nvch")
    host.ip("link", "set", "lo", "up")
    state_dir = str(tmp_path / "state")
    runner = CNIRunner(host_netns=host.path, cni_path=f"{bin_dir}:{REF_DIR}",
                       state_dir=state_dir)
    return CNIEnv(runner=runner, host=host, bin_dir=str(bin_dir),
                  ipam_dir=str(tmp_path / "ipam"), state_dir=state_dir,
                  make_container=lambda: make_netns("nvcc"))
