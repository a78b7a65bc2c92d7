"""netvisor-cni in chains with the reference plugins (run like libcni does)."""

from __future__ import annotations

import pytest

from cni import state as st
from tests.cni.conftest import CNIEnv

pytestmark = pytest.mark.namespaces
BW = {"bandwidth": {"egressRate": 8_000_000, "egressBurst": 80_000,
                    "ingressRate": 8_000_000, "ingressBurst": 80_000},
      "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_after_reference_bridge(cni: CNIEnv, version: str) -> None:
    """bridge wires the namespace; netvisor-cni records it for netvisor run."""
    conflist = {"cniVersion": version, "name": "nvcbrnet", "plugins": [
        {"type": "bridge", "bridge": "nvcbr1", "isGateway": True,
         "ipam": {"type": "host-local", "dataDir": cni.ipam_dir, "subnet": "10.78.0.0/24"}},
        {"type": "netvisor-cni", "capabilities": {"bandwidth": True, "portMappings": True}},
    ]}
    c = cni.make_container()
    res = cni.runner.chain(conflist, "ADD", container_id="b1", netns=c.path, runtime_config=BW)
    assert res["cniVersion"] == version
    # netvisor-cni passed bridge's result through unchanged.
    assert res["interfaces"][0]["name"] == "nvcbr1"
    assert res["ips"][0]["address"].startswith("10.78.0.")
    (state,) = st.load_for_netns(c.path, cni.state_dir)
    assert state.mode == st.MODE_CHAINED and state.host_ifname is None
    assert state.bandwidth and state.bandwidth.egress_rate == 8_000_000
    assert state.port_mappings[0].host_port == 8080
    assert state.addresses() == [res["ips"][0]["address"]]
    c.run(["ping", "-c1", "-W2", "10.78.0.1"])
    cni.runner.chain(conflist, "CHECK", container_id="b1", netns=c.path, runtime_config=BW,
                     prev=res)
    cni.runner.chain(conflist, "DEL", container_id="b1", netns=c.path, runtime_config=BW,
                     prev=res)
    assert cni.states() == [] and cni.reservations("nvcbrnet") == []
    assert "eth0" not in c.ip("link")


def test_first_with_tuning_and_bandwidth(cni: CNIEnv) -> None:
    """netvisor-cni makes the interface; tuning and bandwidth act on its result."""
    conflist = {"cniVersion": "1.0.0", "name": "nvctest", "plugins": [
        {"type": "netvisor-cni", "bridge": "nvcbr0", "isGateway": True, "mtu": 1400,
         "capabilities": {"bandwidth": True, "portMappings": True, "mac": True},
         "ipam": {"type": "host-local", "dataDir": cni.ipam_dir, "subnet": "10.77.0.0/24",
                  "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}},
        {"type": "bandwidth", "capabilities": {"bandwidth": True}},
    ]}
    c = cni.make_container()
    rc = dict(BW, mac="0a:58:0a:4d:00:07")
    res = cni.runner.chain(conflist, "ADD", container_id="t1", netns=c.path, runtime_config=rc)
    names = [i["name"] for i in res["interfaces"]]
    assert names[1] == "eth0" and names[0].startswith("nvc")
    assert res["interfaces"][1]["mac"] == "0a:58:0a:4d:00:07"
    # tuning applied its sysctl inside the namespace.
    assert c.run(["cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify"]).stdout.strip() == "1"
    # bandwidth put a tbf on our host veth (traffic towards the container).
    assert "qdisc tbf" in cni.host.run(["tc", "qdisc", "show", "dev", names[0]]).stdout
    (state,) = st.load_for_netns(c.path, cni.state_dir)
    assert state.bandwidth == st.Bandwidth(8_000_000, 80_000, 8_000_000, 80_000)
    c.run(["ping", "-c1", "-W2", "10.77.0.1"])
    cni.runner.chain(conflist, "CHECK", container_id="t1", netns=c.path, runtime_config=rc,
                     prev=res)
    cni.runner.chain(conflist, "DEL", container_id="t1", netns=c.path, runtime_config=rc,
                     prev=res)
    assert cni.states() == [] and cni.reservations() == []
    leftover = [n for n in cni.host_links() if n.startswith("nvc") and n != "nvcbr0"]
    assert leftover == [] and "eth0" not in c.ip("link")
    # The bandwidth plugin's ifb device went with DEL too.
    assert not [n for n in cni.host_links() if n.startswith("bwp")]


def test_chained_with_ipam_appends_interface(cni: CNIEnv) -> None:
    """With a prevResult and its own ipam, netvisor-cni adds a second interface."""
    conflist = {"cniVersion": "1.0.0", "name": "nvctwo", "plugins": [
        {"type": "bridge", "bridge": "nvcbr2",
         "ipam": {"type": "host-local", "dataDir": cni.ipam_dir, "subnet": "10.79.0.0/24"}},
    ]}
    c = cni.make_container()
    prev = cni.runner.chain(conflist, "ADD", container_id="m1", netns=c.path)
    conf = {"cniVersion": "1.0.0", "name": "nvctwo", "type": "netvisor-cni", "prevResult": prev,
            "ipam": {"type": "host-local", "dataDir": cni.ipam_dir + "2",
                     "subnet": "10.80.0.0/24"}}
    res = cni.runner.invoke("netvisor-cni", "ADD", conf, container_id="m1", netns=c.path,
                            ifname="net1").ok()
    assert len(res["interfaces"]) == len(prev["interfaces"]) + 2
    assert res["interfaces"][:len(prev["interfaces"])] == prev["interfaces"]
    assert res["ips"][0] == prev["ips"][0]
    assert res["ips"][-1]["interface"] == len(res["interfaces"]) - 1
    assert "10.80.0." in c.ip("addr", "show", "net1")
    cni.runner.invoke("netvisor-cni", "DEL", dict(conf, prevResult=res), container_id="m1",
                      netns=c.path, ifname="net1").ok()
    cni.runner.chain(conflist, "DEL", container_id="m1", netns=c.path, prev=prev)
    assert cni.states() == []
