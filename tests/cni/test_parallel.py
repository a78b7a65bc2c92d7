"""50 parallel ADDs then 50 parallel DELs: unique addresses, nothing leaked."""

from __future__ import annotations

import ipaddress
from concurrent.futures import ThreadPoolExecutor

import pytest

from cni import state as st
from tests.cni.conftest import CNIEnv

pytestmark = [pytest.mark.namespaces, pytest.mark.slow]
N = 50


def test_parallel_add_then_del(cni: CNIEnv) -> None:
    conf = cni.conf(runtimeConfig={"bandwidth": {"egressRate": 1_000_000, "egressBurst": 10_000}})
    nss = [cni.make_container() for _ in range(N)]

    def add(i: int):
        return cni.runner.invoke("netvisor-cni", "ADD", conf, container_id=f"par{i}",
                                 netns=nss[i].path, ifname="eth0")

    def delete(i: int):
        return cni.runner.invoke("netvisor-cni", "DEL", conf, container_id=f"par{i}",
                                 netns=nss[i].path, ifname="eth0")

    with ThreadPoolExecutor(max_workers=N) as pool:
        results = [o.ok() for o in pool.map(add, range(N))]
    addrs = [r["ips"][0]["address"] for r in results]
    assert len(set(addrs)) == N
    assert all(ipaddress.ip_interface(a) in ipaddress.ip_network(cni.subnet) for a in addrs)
    hosts = {r["interfaces"][0]["name"] for r in results}
    assert len(hosts) == N and hosts <= set(cni.host_links())
    assert len(cni.states()) == N and len(cni.reservations()) == N
    for i in (0, N - 1):
        (s,) = st.load_for_netns(nss[i].path, cni.state_dir)
        assert s.container_id == f"par{i}" and s.addresses() == [addrs[i]]
    # Every namespace reaches the shared bridge's gateway.
    nss[7].run(["ping", "-c1", "-W2", "10.77.0.1"])

    with ThreadPoolExecutor(max_workers=N) as pool:
        for o in pool.map(delete, range(N)):
            o.ok()
    assert cni.states() == [] and cni.reservations() == []
    assert [n for n in cni.host_links() if n.startswith("nvc") and n != "nvcbr0"] == []
    assert all("eth0" not in ns.ip("link") for ns in nss)
