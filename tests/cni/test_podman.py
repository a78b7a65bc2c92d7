"""podman 4.3 (CNI backend, runc, busybox rootfs, no image) on a netvisor-cni network.

podman runs inside a test-made namespace (``nsenter --net=``, not
``ip netns exec``, which remounts /sys and breaks cgroups), so the host end
of the container's veth, the bridge and the server all live there. Each test
has its own --root/--runroot, conflist dir, host-local dataDir and state dir.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cni.cniutil import REF_DIR, have_reference_plugins, plugin_executable
from tests.nsutil import Netns

pytestmark = [pytest.mark.namespaces, pytest.mark.slow]
SUBNET_PREFIX = "10.81.0"
GATEWAY = f"{SUBNET_PREFIX}.1"


@dataclass
class Podman:
    host: Netns
    base: Path
    conf_dir: Path
    ipam_dir: Path
    state_dir: Path
    rootfs: Path
    env: dict[str, str]
    runroot: str  # podman refuses a runroot path longer than 50 characters

    def run(self, *args: str, check: bool = True, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        argv = ["nsenter", f"--net={self.host.path}", "podman", "--root", str(self.base / "root"),
                "--runroot", self.runroot, "--storage-driver", "vfs", *args]
        proc = subprocess.run(argv, capture_output=True, text=True, env=self.env,
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{argv} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def network(self, name: str, plugins: list[dict[str, Any]]) -> None:
        conflist = {"cniVersion": "1.0.0", "name": name, "plugins": plugins}
        (self.conf_dir / f"{name}.conflist").write_text(json.dumps(conflist))

    def netvisor_plugin(self, **extra: Any) -> dict[str, Any]:
        conf = {"type": "netvisor-cni", "bridge": "nvcbrp", "isGateway": True,
                "dataDir": str(self.state_dir),
                "ipam": {"type": "host-local", "dataDir": str(self.ipam_dir),
                         "subnet": f"{SUBNET_PREFIX}.0/24", "routes": [{"dst": "0.0.0.0/0"}]}}
        conf.update(extra)
        return conf

    def leftovers(self, network: str) -> tuple[list[str], list[str], list[str]]:
        links = [ln.split(":")[1].strip().split("@")[0]
                 for ln in self.host.ip("-o", "link").splitlines()]
        veths = [n for n in links if n.startswith("nvc") and n != "nvcbrp"]
        states = sorted(os.listdir(self.state_dir)) if self.state_dir.exists() else []
        states = [s for s in states if s.endswith(".json")]
        d = self.ipam_dir / network
        res = sorted(n for n in os.listdir(d) if n != "lock" and not n.startswith("last_")) \
            if d.exists() else []
        return veths, states, res


def _rootfs(path: Path) -> None:
    for d in ("bin", "proc", "sys", "dev", "etc", "tmp"):
        (path / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", path / "bin" / "busybox")
    subprocess.run(["chroot", str(path), "/bin/busybox", "--install", "-s", "/bin"], check=True)


@pytest.fixture
def podman(make_netns: Callable[[str], Netns], tmp_path: Path) -> Iterator[Podman]:
    exe = plugin_executable()
    if exe is None or not have_reference_plugins():
        pytest.skip("netvisor-cni or containernetworking-plugins missing")
    for tool in ("podman", "runc", "conmon", "nsenter"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    if not os.path.exists("/bin/busybox"):
        pytest.skip("busybox-static not installed")
    host = make_netns("nvcp")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(exe, bin_dir / "netvisor-cni")
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    rootfs = tmp_path / "rootfs"
    _rootfs(rootfs)
    (tmp_path / "containers.conf").write_text(
        "[engine]\ncgroup_manager=\"cgroupfs\"\nevents_logger=\"file\"\nruntime=\"runc\"\n"
        "[network]\nnetwork_backend=\"cni\"\n"
        f"cni_plugin_dirs=[\"{bin_dir}\", \"{REF_DIR}\"]\n"
        f"network_config_dir=\"{conf_dir}\"\n")
    env = dict(os.environ, CONTAINERS_CONF=str(tmp_path / "containers.conf"))
    env.pop("NETVISOR_CNI_STATE_DIR", None)
    pm = Podman(host=host, base=tmp_path, conf_dir=conf_dir, ipam_dir=tmp_path / "ipam",
                state_dir=tmp_path / "state", rootfs=rootfs, env=env,
                runroot=tempfile.mkdtemp(prefix="nvcrr", dir="/tmp"))
    try:
        yield pm
    finally:
        pm.run("rm", "--all", "--force", check=False)
        shutil.rmtree(pm.runroot, ignore_errors=True)


@pytest.fixture
def server(podman: Podman) -> Iterator[str]:
    """An HTTP server in the host-side namespace; yields the served text."""
    text = "hello-netvisor-cni"
    (podman.base / "www").mkdir()
    (podman.base / "www" / "hello.txt").write_text(text + "\n")
    podman.host.popen([sys.executable, "-m", "http.server", "-d", str(podman.base / "www"),
                       "--bind", "0.0.0.0", "8000"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if podman.host.run(["ss", "-ltn"], check=False).stdout.count(":8000"):
            break
        time.sleep(0.05)
    yield text


# busybox-static's wget segfaults here (static glibc NSS), so nc speaks HTTP.
FETCH = (f"ip -o -4 addr show eth0; ip link show eth0; "
         f"printf 'GET /hello.txt HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {GATEWAY} 8000")


def _run_container(pm: Podman, network: str, name: str, *extra: str) -> str:
    proc = pm.run("run", "--name", name, "--ulimit", "nofile=1024:1024", "--ulimit",
                  "nproc=1024:1024", "--network", network, *extra, "--rootfs", str(pm.rootfs),
                  "sh", "-c", FETCH)
    return proc.stdout


def test_podman_alone(podman: Podman, server: str) -> None:
    podman.network("nvcpod", [podman.netvisor_plugin()])
    out = _run_container(podman, "nvcpod", "nvct1", "--ip", f"{SUBNET_PREFIX}.77",
                         "--mac-address", "0a:58:0a:51:00:4d")
    assert f"inet {SUBNET_PREFIX}.77/24" in out
    assert "0a:58:0a:51:00:4d" in out
    assert server in out
    podman.run("rm", "nvct1")
    assert podman.leftovers("nvcpod") == ([], [], [])


def test_podman_chained_tuning_bandwidth(podman: Podman, server: str) -> None:
    bw = {"ingressRate": 80_000_000, "ingressBurst": 800_000,
          "egressRate": 80_000_000, "egressBurst": 800_000}
    podman.network("nvcpodbw", [
        podman.netvisor_plugin(mtu=1400, bandwidth=bw),
        {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}},
        dict({"type": "bandwidth"}, **bw),
    ])
    # Keep the container alive while the host-side wiring is inspected.
    proc = podman.run("run", "-d", "--name", "nvct2", "--ulimit", "nofile=1024:1024",
                      "--ulimit", "nproc=1024:1024", "--network", "nvcpodbw", "--rootfs",
                      str(podman.rootfs), "sh", "-c",
                      f"{FETCH}; cat /proc/sys/net/ipv4/conf/eth0/arp_notify; sleep 30")
    assert proc.returncode == 0
    try:
        states = sorted(podman.state_dir.glob("*.json"))
        assert len(states) == 1
        state = json.loads(states[0].read_text())
        assert state["bandwidth"]["egressRate"] == 80_000_000 and state["mtu"] == 1400
        assert "qdisc tbf" in podman.host.run(["tc", "qdisc", "show", "dev",
                                               state["hostIfname"]]).stdout
        for _ in range(100):
            logs = podman.run("logs", "nvct2").stdout
            if server in logs:
                break
            time.sleep(0.1)
        assert server in logs and "mtu 1400" in logs
        assert logs.strip().splitlines()[-1] == "1"  # tuning's sysctl
    finally:
        podman.run("rm", "--force", "--time", "0", "nvct2")
    assert podman.leftovers("nvcpodbw") == ([], [], [])
    assert not [n for n in podman.host.ip("-o", "link").split() if n.startswith("bwp")]
