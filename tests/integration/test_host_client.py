"""netvisor as a client of kernel servers: a NetStack driven by trio on a TAP in a namespace.

The script below runs inside the test's namespace: it creates the TAP,
addresses the kernel side, and uses the NetStack API directly (as the syscall
plane does) to talk to kernel UDP servers, see ECONNREFUSED from the kernel,
EHOSTUNREACH for a neighbour that never answers, and neighbour entries expire
and be re-resolved (timers shortened through StackConfig).
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_host_tap import REPO, wait_kernel_ipv6

pytestmark = pytest.mark.namespaces

SCRIPT = textwrap.dedent('''
    import errno, ipaddress, json, select, socket, sys
    import trio
    from pyroute2 import IPRoute
    from netvisor.link.tap import TapEndpoint
    from netvisor.netstack import NetStack
    from netvisor.tcpip.config import StackConfig
    from netvisor.tcpip.errors import NetError

    async def udp_roundtrip(ns, fam, dst, port, data, timeout=5):
        s = ns.socket(fam, socket.SOCK_DGRAM)
        s.connect((dst, port))
        s.send(data)
        ns.kick()
        with trio.move_on_after(timeout):
            await ns.wait(s, select.POLLIN)
        if not s.poll() & (select.POLLIN | select.POLLERR):
            return "timeout"
        try:
            return len(s.recv(70000))
        except NetError as e:
            return errno.errorcode[e.errno]
        finally:
            s.close()

    async def main():
        ep = TapEndpoint("nvsc0", mac=bytes.fromhex("020000000077"))
        with IPRoute() as ipr:
            ipr.addr("add", index=ep.ifindex, address="10.79.0.1", prefixlen=24)
            ipr.addr("add", index=ep.ifindex, address="fd79::1", prefixlen=64, flags=2)
            ipr.link("set", index=ep.ifindex, state="up")
        # Short neighbour timers so that expiry is visible within the test budget.
        cfg = StackConfig(base_reachable_time=1.0, neigh_gc_stale_time=2.0)
        ns = NetStack(seed=9, config=cfg)
        ns.add_link(ep, name="eth0", addresses=[ipaddress.ip_interface("10.79.0.2/24"),
                                                ipaddress.ip_interface("fd79::2/64")])
        out = {}
        async with trio.open_nursery() as n:
            await n.start(ns.serve)
            await ns.wait_addresses_ready()
            print("ready", flush=True)
            sys.stdin.readline()  # the test started its kernel servers
            for fam, dst in ((socket.AF_INET, "10.79.0.1"), (socket.AF_INET6, "fd79::1")):
                for size in (1, 1472, 20000, 65000):
                    out[f"{fam}-{size}"] = await udp_roundtrip(ns, fam, dst, 7, b"k" * size)
                out[f"{fam}-closed"] = await udp_roundtrip(ns, fam, dst, 9, b"x")
            arp_before = ns.stack.counters.events["arp_tx"]
            await trio.sleep(6)  # REACHABLE (<=1.5 s) -> STALE -> collected (2 s)
            out["v4-again"] = await udp_roundtrip(ns, socket.AF_INET, "10.79.0.1", 7, b"again")
            out["arp_resolutions"] = ns.stack.counters.events["arp_tx"] - arp_before
            err_at = {}
            async def unreachable(fam, dst):
                out[f"dead-{fam}"] = await udp_roundtrip(ns, fam, dst, 7, b"?", timeout=6)
                err_at[fam] = trio.current_time() - t0
            t0 = trio.current_time()
            async with trio.open_nursery() as m:
                m.start_soon(unreachable, socket.AF_INET, "10.79.0.99")
                m.start_soon(unreachable, socket.AF_INET6, "fd79::99")
            out["dead_after"] = trio.current_time() - t0
            out["v4_error_at"] = err_at.get(socket.AF_INET)
            out["counters"] = ns.stack.counters.snapshot()
            n.cancel_scope.cancel()
        ns.close()
        print(json.dumps(out), flush=True)

    trio.run(main)
''')


def test_netvisor_as_udp_client_of_kernel_servers(make_netns: Any, tmp_path: Path) -> None:
    ns = make_netns("nvs")
    script = tmp_path / "client.py"
    script.write_text(SCRIPT)
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = ns.popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, env=env)
    from tests.integration.test_host_tap import read_line
    assert read_line(proc, 30) == "ready"
    wait_kernel_ipv6(ns)
    # Kernel UDP echo servers, one per family.
    server = textwrap.dedent("""
        import select, socket
        socks = []
        for fam, addr in ((socket.AF_INET, "10.79.0.1"), (socket.AF_INET6, "fd79::1")):
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.bind((addr, 7))
            socks.append(s)
        while True:
            for s in select.select(socks, [], [])[0]:
                data, addr = s.recvfrom(70000)
                s.sendto(data, addr)
        """)
    ns.popen([sys.executable, "-c", server], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import time
    time.sleep(0.5)
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.flush()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-3000:]
    res = json.loads(out.decode().strip().splitlines()[-1])
    for fam in ("2", "10"):
        for size in (1, 1472, 20000, 65000):
            assert res[f"{fam}-{size}"] == size, res
        assert res[f"{fam}-closed"] == "ECONNREFUSED"
    # IPv4: the failed resolution becomes a local ICMP host unreachable, a hard
    # error for a connected UDP socket (Linux ipv4_link_failure). IPv6 reports
    # ICMPV6_ADDR_UNREACH, a soft error that Linux's __udp6_lib_err does not
    # give to a UDP socket without IPV6_RECVERR: the datagram is just lost.
    assert res["dead-2"] == "EHOSTUNREACH"
    assert res["dead-10"] == "timeout"
    assert res["v4-again"] == 5
    assert res["arp_resolutions"] >= 1  # the expired entry was resolved again
    assert 2.9 <= res["v4_error_at"] <= 5.5  # 3 solicitations, 1 s apart (+ load slack)
    c = res["counters"]
    assert c["arp_rx"] >= 1 and c["ndp_na_rx"] >= 1 and c["drop.neighbor_failed"] == 2


def test_config_from_sysctls_reads_the_given_namespace(make_netns: Any) -> None:
    from netvisor.netstack import config_from_sysctls

    ns = make_netns("nvs")
    ns.run(["sysctl", "-qw", "net.ipv4.ipfrag_time=7", "net.ipv4.icmp_ratelimit=0"])
    cfg = config_from_sysctls(netns=ns.path)
    assert cfg.ipv4_frag_timeout == 7.0 and cfg.icmp_ratelimit_interval == 0
