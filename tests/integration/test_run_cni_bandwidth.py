"""Issue 5: a namespace wired by netvisor-cni with ``bandwidth`` set, served by
``netvisor run --netns``, gets its egress shaped.

The installed netvisor-cni runs as a runtime runs it (tests/cni/cniutil.py)
with a bandwidth capability; then a sender runs in the sandbox and a kernel
receiver on the bridge measures goodput. A functional check (within 30 %),
not a benchmark (bench/shaper.py measures precisely).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cni import state as cni_state
from tests.cni.cniutil import REF_DIR, CNIRunner, have_reference_plugins, plugin_executable
from tests.integration.test_run_basic import REPO, STACK, env, run_argv
from tests.nsutil import Netns

pytestmark = pytest.mark.namespaces

RATE_BITS = 20_000_000         # egressRate, bits/s (CNI bandwidth units)
BURST_BITS = 800_000           # egressBurst, bits (100 kB)
SIZE = 5_000_000               # ~2 s at the rate
GW, SUBNET, PORT = "10.231.253.1", "10.231.253.0/24", 5301

RECEIVER = r'''
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(); print("listening", flush=True)
c, _ = s.accept(); c.settimeout(30)
n, t0, t1 = 0, None, None
while d := c.recv(1 << 16):
    if t0 is None:
        t0 = time.monotonic()
    n += len(d); t1 = time.monotonic()
print(n, t1 - t0, flush=True)
'''

SENDER = r'''
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.sendall(b"b" * int(sys.argv[3]))
s.close()
'''


def test_cni_bandwidth_shapes_netvisor_run_egress(make_netns: Callable[[str], Netns],
                                                  tmp_path: Path) -> None:
    exe = plugin_executable()
    if exe is None:
        pytest.skip("netvisor-cni not installed (pip install -e .)")
    if not have_reference_plugins():
        pytest.skip("containernetworking-plugins (host-local) not installed")
    host, container = make_netns("nvq"), make_netns("nvq")
    host.ip("link", "set", "lo", "up")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(exe, bin_dir / "netvisor-cni")
    state_dir = str(tmp_path / "state")
    runner = CNIRunner(host_netns=host.path, cni_path=f"{bin_dir}:{REF_DIR}",
                       state_dir=state_dir)
    conf = {"cniVersion": "1.1.0", "name": "nvqbw", "type": "netvisor-cni",
            "bridge": "nvqbr0", "isGateway": True,
            "ipam": {"type": "host-local", "dataDir": str(tmp_path / "ipam"),
                     "subnet": SUBNET, "routes": [{"dst": "0.0.0.0/0"}]},
            "runtimeConfig": {"bandwidth": {"egressRate": RATE_BITS,
                                            "egressBurst": BURST_BITS}}}
    result = runner.invoke("netvisor-cni", "ADD", conf, container_id="nvqbw1",
                           netns=container.path, ifname="eth0").ok()
    try:
        (st,) = cni_state.load_for_netns(container.path, state_dir)
        assert st.bandwidth is not None and st.bandwidth.egress_rate == RATE_BITS
        (tmp_path / "recv.py").write_text(RECEIVER)
        (tmp_path / "send.py").write_text(SENDER)
        recv = host.popen([sys.executable, str(tmp_path / "recv.py"), GW, str(PORT)],
                          stdout=subprocess.PIPE, text=True)
        assert recv.stdout is not None and recv.stdout.readline() == "listening\n"
        e = env()
        e["NETVISOR_CNI_STATE_DIR"] = state_dir
        r = subprocess.run(host.argv([*run_argv(f"--stack={STACK}", "--netns", container.path),
                                      "--", sys.executable, str(tmp_path / "send.py"),
                                      GW, str(PORT), str(SIZE)]),
                           capture_output=True, text=True, timeout=60, env=e, cwd=REPO,
                           check=False)
        assert r.returncode == 0, r.stderr
        out, _ = recv.communicate(timeout=30)
        n, secs = out.split()
        assert int(n) == SIZE
        goodput = int(n) * 8 / float(secs)
        # Goodput excludes headers (~4 % at MTU 1500) and the first burst is
        # free: generous bounds, a functional check.
        assert 0.7 * RATE_BITS < goodput < 1.3 * RATE_BITS, goodput
    finally:
        runner.invoke("netvisor-cni", "DEL", dict(conf, prevResult=result),
                      container_id="nvqbw1", netns=container.path, ifname="eth0")
