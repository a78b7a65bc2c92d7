"""CNI spec conformance of netvisor-cni: every verb, version and error path.

Each case runs the installed executable as a runtime does (environment +
stdin, stdout parsed as JSON, exit code checked).
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess

import pytest

from cni import state as st
from tests.cni.conftest import CNIEnv

pytestmark = pytest.mark.namespaces
VERSIONS = ["0.4.0", "1.0.0", "1.1.0"]


def add(cni: CNIEnv, conf: dict, ns, cid: str = "ctr1", ifname: str = "eth0", **kw):
    return cni.runner.invoke("netvisor-cni", "ADD", conf, container_id=cid, netns=ns.path,
                             ifname=ifname, **kw)


def delete(cni: CNIEnv, conf: dict, ns_path: str | None, cid: str = "ctr1", ifname: str = "eth0"):
    return cni.runner.invoke("netvisor-cni", "DEL", conf, container_id=cid, netns=ns_path,
                             ifname=ifname)


def test_about_and_version_flag(cni: CNIEnv) -> None:
    out = cni.runner.invoke("netvisor-cni", None)
    assert out.rc == 0 and out.stdout == ""
    assert "CNI netvisor plugin v0.1.0" in out.stderr
    assert "CNI protocol versions supported: 0.4.0, 1.0.0, 1.1.0" in out.stderr
    out = cni.runner.invoke("netvisor-cni", "ADD", argv=["--version"])
    assert out.rc == 0 and out.stdout.startswith("CNI netvisor plugin v0.1.0")


@pytest.mark.parametrize("version", VERSIONS)
def test_version_command(cni: CNIEnv, version: str) -> None:
    got = cni.runner.invoke("netvisor-cni", "VERSION", {"cniVersion": version}).ok()
    assert got == {"cniVersion": version, "supportedVersions": VERSIONS}


@pytest.mark.parametrize("command,missing", [
    ("ADD", "CNI_CONTAINERID"), ("ADD", "CNI_NETNS"), ("ADD", "CNI_IFNAME"), ("ADD", "CNI_PATH"),
    ("CHECK", "CNI_NETNS"), ("DEL", "CNI_IFNAME"), ("DEL", "CNI_CONTAINERID"),
    ("GC", "CNI_PATH"), ("STATUS", "CNI_PATH"),
])
def test_missing_env_is_code_4(cni: CNIEnv, command: str, missing: str) -> None:
    c = cni.make_container()
    out = cni.runner.invoke("netvisor-cni", command, cni.conf(), container_id="c1", netns=c.path,
                            ifname="eth0", drop=(missing,))
    assert missing in out.error(4)["msg"]


@pytest.mark.parametrize("env,code", [
    ({"CNI_COMMAND": "FROB"}, 4),
    ({"CNI_CONTAINERID": "-bad id"}, 4),
    ({"CNI_IFNAME": "a-very-long-interface"}, 4),
    ({"CNI_IFNAME": "eth/0"}, 4),
    ({"CNI_IFNAME": ".."}, 4),
    ({"CNI_NETNS": "relative/path"}, 4),
    ({"CNI_ARGS": "FOO=bar"}, 4),             # unknown key without IgnoreUnknown
    ({"CNI_ARGS": "novalue"}, 4),
    ({"CNI_NETNS": "/run/netns/nvc-does-not-exist"}, 3),
    ({"CNI_NETNS": "/etc/hostname"}, 4),      # a file, not a namespace
])
def test_invalid_env(cni: CNIEnv, env: dict, code: int) -> None:
    c = cni.make_container()
    base = {"CNI_CONTAINERID": "c1", "CNI_NETNS": c.path, "CNI_IFNAME": "eth0"}
    base.update(env)
    out = cni.runner.invoke("netvisor-cni", base.pop("CNI_COMMAND", "ADD"), cni.conf(),
                            extra_env=base)
    out.error(code)
    assert cni.reservations() == []


@pytest.mark.parametrize("stdin,code", [
    (b"{not json", 6),
    (b"[1, 2]", 6),
    (b"\xff\xfe", 6),
    (json.dumps({"cniVersion": "1.1.0", "type": "netvisor-cni"}).encode(), 7),  # no name
    (json.dumps({"cniVersion": "1.1.0", "name": "bad name!", "type": "x"}).encode(), 7),
    (json.dumps({"name": "n", "type": "netvisor-cni"}).encode(), 1),  # defaults to 0.1.0
    (json.dumps({"cniVersion": "0.3.1", "name": "n", "type": "netvisor-cni"}).encode(), 1),
    (json.dumps({"cniVersion": "2.0.0", "name": "n", "type": "netvisor-cni"}).encode(), 1),
    (json.dumps({"cniVersion": "one", "name": "n", "type": "netvisor-cni"}).encode(), 6),
])
def test_bad_stdin(cni: CNIEnv, stdin: bytes, code: int) -> None:
    c = cni.make_container()
    out = cni.runner.invoke("netvisor-cni", "ADD", raw_stdin=stdin, container_id="c1",
                            netns=c.path, ifname="eth0")
    out.error(code)


@pytest.mark.parametrize("over,code", [
    ({"ipMasq": True}, 2),
    ({"mtu": 10}, 7),
    ({"mtu": "1500"}, 7),
    ({"bridge": "this-name-is-too-long"}, 7),
    ({"ipam": None}, 7),                      # ADD without ipam and without prevResult
    ({"ipam": {"subnet": "10.0.0.0/8"}}, 7),  # ipam without type
    ({"dataDir": "relative"}, 7),
    ({"runtimeConfig": {"mac": "01:00:00:00:00:01"}}, 7),  # multicast MAC
    ({"runtimeConfig": {"bandwidth": {"egressRate": 1000}}}, 7),  # rate without burst
    ({"runtimeConfig": {"portMappings": [{"hostPort": 0, "containerPort": 80}]}}, 7),
    ({"runtimeConfig": {"ips": ["not-an-ip"]}}, 7),
    ({"prevResult": {"ips": [{"gateway": "1.2.3.4"}]}}, 6),
])
def test_invalid_config(cni: CNIEnv, over: dict, code: int) -> None:
    c = cni.make_container()
    add(cni, cni.conf(**over), c).error(code)
    assert cni.reservations() == [] and cni.states() == []
    assert c.ip("-o", "link").count("\n") == 1  # only lo


def test_missing_ipam_plugin(cni: CNIEnv) -> None:
    c = cni.make_container()
    conf = cni.conf(ipam={"type": "nvc-no-such-ipam", "subnet": "10.77.0.0/24"})
    assert "nvc-no-such-ipam" in add(cni, conf, c).error(50)["msg"]
    cni.runner.invoke("netvisor-cni", "STATUS", conf).error(50)
    assert cni.runner.invoke("netvisor-cni", "STATUS", cni.conf()).ok() is None


def test_status_and_gc_need_1_1_0(cni: CNIEnv) -> None:
    for command in ("STATUS", "GC"):
        conf = cni.conf("1.0.0", **{"cni.dev/valid-attachments": []})
        cni.runner.invoke("netvisor-cni", command, conf).error(1)


def test_check_needs_prev_result(cni: CNIEnv) -> None:
    c = cni.make_container()
    out = cni.runner.invoke("netvisor-cni", "CHECK", cni.conf(), container_id="c1",
                            netns=c.path, ifname="eth0")
    out.error(7)


def _assert_result_shape(res: dict, version: str, ns_path: str) -> None:
    assert res["cniVersion"] == version
    host_if, cont_if = res["interfaces"]
    assert "sandbox" not in host_if and host_if["name"].startswith("nvc")
    assert len(host_if["name"]) <= 15
    assert cont_if == {k: cont_if[k] for k in cont_if} and cont_if["sandbox"] == ns_path
    assert cont_if["name"] == "eth0"
    assert ("mtu" in cont_if) == (version == "1.1.0")
    (ip,) = res["ips"]
    assert ip["interface"] == 1 and ip["gateway"] == "10.77.0.1"
    assert ipaddress.ip_interface(ip["address"]) in ipaddress.ip_network("10.77.0.0/24")
    if version == "0.4.0":
        assert ip["version"] == "4"
    else:
        assert "version" not in ip
    assert res["routes"] == [{"dst": "0.0.0.0/0"}]
    assert res["dns"] == {"nameservers": ["10.77.0.1"], "search": ["example.test"]}


@pytest.mark.parametrize("version", VERSIONS)
def test_add_check_del(cni: CNIEnv, version: str) -> None:
    c = cni.make_container()
    mac = "0a:58:0a:4d:00:99"
    conf = cni.conf(version)
    res = add(cni, conf, c, args=f"IgnoreUnknown=1;MAC={mac};K8S_POD_NAME=x").ok()
    _assert_result_shape(res, version, c.path)
    addr = res["ips"][0]["address"]
    # The container side: name, MAC, MTU, address, default route.
    link = c.ip("-j", "addr", "show", "eth0")
    info = json.loads(link)[0]
    assert info["address"] == mac and info["mtu"] == 1400 and "UP" in info["flags"]
    assert any(f"{a['local']}/{a['prefixlen']}" == addr for a in info["addr_info"])
    assert "default via 10.77.0.1 dev eth0" in c.ip("route")
    # The host side: the veth on the bridge, the bridge holds the gateway.
    hname = res["interfaces"][0]["name"]
    assert "master nvcbr0" in cni.host.ip("link", "show", hname)
    assert "10.77.0.1/24" in cni.host.ip("addr", "show", "nvcbr0")
    # Reachability through the wiring.
    c.run(["ping", "-c1", "-W2", "10.77.0.1"])
    # State.
    (state,) = st.load_for_netns(c.path, cni.state_dir)
    assert (state.container_id, state.ifname, state.host_ifname, state.mac) == \
        ("ctr1", "eth0", hname, mac)
    assert state.addresses() == [addr]
    assert cni.reservations() == [addr.split("/")[0]]

    check_conf = dict(conf, prevResult=res)
    ck = cni.runner.invoke("netvisor-cni", "CHECK", check_conf, container_id="ctr1",
                           netns=c.path, ifname="eth0")
    assert ck.ok() is None

    delete(cni, check_conf, c.path).ok()
    assert "eth0" not in c.ip("link")
    assert hname not in cni.host.ip("link")
    assert cni.states() == [] and cni.reservations() == []
    # DEL is idempotent: again, without prevResult, without netns.
    assert delete(cni, conf, c.path).ok() is None
    assert delete(cni, conf, None).ok() is None
    assert delete(cni, conf, "/run/netns/nvc-gone").ok() is None


def test_runtime_config_mac_and_ips(cni: CNIEnv) -> None:
    c = cni.make_container()
    conf = cni.conf(runtimeConfig={"mac": "0a:58:00:00:00:42", "ips": ["10.77.0.42/24"]},
                    capabilities={"mac": True, "ips": True})
    res = add(cni, conf, c, args="IgnoreUnknown=1;MAC=0a:58:00:00:00:41").ok()
    # runtimeConfig wins over CNI_ARGS (as in the reference bridge plugin).
    assert res["interfaces"][1]["mac"] == "0a:58:00:00:00:42"
    assert res["ips"][0]["address"] == "10.77.0.42/24"
    delete(cni, conf, c.path).ok()
    assert cni.reservations() == []


def test_existing_interface_is_an_error_and_releases_nothing_else(cni: CNIEnv) -> None:
    c = cni.make_container()
    conf = cni.conf()
    first = add(cni, conf, c, cid="a1").ok()
    # Same ifname again (another container id): the interface exists.
    add(cni, conf, c, cid="a2").error(100)
    assert cni.reservations() == [first["ips"][0]["address"].split("/")[0]]
    assert len(cni.states()) == 1
    # A link occupying the name from the start: refused, nothing reserved.
    c2 = cni.make_container()
    c2.ip("link", "add", "eth0", "type", "veth", "peer", "name", "nvcpeer0")
    add(cni, conf, c2, cid="a3").error(100)
    assert len(cni.reservations()) == 1
    delete(cni, conf, c.path, cid="a1").ok()


def test_failure_after_ipam_releases_reservation(cni: CNIEnv) -> None:
    c = cni.make_container()
    # The bridge name is taken by a non-bridge link in the host namespace:
    # ADD fails after IPAM ADD and must give the address back.
    cni.host.ip("link", "add", "nvcbr0", "type", "veth", "peer", "name", "nvcpeer1")
    add(cni, cni.conf(), c).error(100)
    assert cni.reservations() == [] and cni.states() == []
    assert sorted(n for n in cni.host_links() if n.startswith("nvc")) == ["nvcbr0", "nvcpeer1"]
    assert "eth0" not in c.ip("link")


def test_check_detects_damage_and_accepts_takeover(cni: CNIEnv) -> None:
    c = cni.make_container()
    conf = cni.conf()
    res = add(cni, conf, c).ok()
    cconf = dict(conf, prevResult=res)

    def check():
        return cni.runner.invoke("netvisor-cni", "CHECK", cconf, container_id="ctr1",
                                 netns=c.path, ifname="eth0")

    check().ok()
    c.ip("addr", "flush", "dev", "eth0")
    assert "addresses missing" in check().error(104)["msg"]
    # netvisor run serving the namespace removes the addresses: marked, CHECK passes.
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        assert st.mark_taken_over(c.path, sleeper.pid, cni.state_dir) == 1
        check().ok()
        # A dead marker does not count.
        sleeper.kill()
        sleeper.wait()
        check().error(104)
        assert st.clear_taken_over(c.path, sleeper.pid, cni.state_dir) == 1
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
    c.ip("link", "set", "eth0", "mtu", "1300")
    assert "MTU" in check().error(104)["msg"]
    c.ip("link", "del", "eth0")
    assert "missing" in check().error(104)["msg"]
    delete(cni, cconf, c.path).ok()
    assert cni.reservations() == []


def test_state_found_by_proc_path_and_bandwidth_recorded(cni: CNIEnv) -> None:
    c = cni.make_container()
    rc = {"bandwidth": {"egressRate": 8_000_000, "egressBurst": 64_000,
                        "ingressRate": 1000, "ingressBurst": 1000},
          "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                           {"hostPort": 5353, "containerPort": 53, "protocol": "udp",
                            "hostIP": "127.0.0.1"}]}
    add(cni, cni.conf(runtimeConfig=rc), c).ok()
    proc = c.popen(["sleep", "60"])
    try:
        # `ip netns exec` forks before exec: wait for the sleep itself.
        for _ in range(100):
            pids = c.run(["ip", "netns", "pids", c.name]).stdout.split()
            if pids:
                break
        path = f"/proc/{pids[0]}/ns/net"
        (state,) = st.load_for_netns(path, cni.state_dir)
    finally:
        proc.kill()
        proc.wait()
    assert state.bandwidth == st.Bandwidth(1000, 1000, 8_000_000, 64_000)
    assert state.bandwidth.egress_rate_bytes == 1_000_000
    assert state.bandwidth.egress_burst_bytes == 8000
    assert state.port_mappings == [st.PortMapping(8080, 80, "tcp", ""),
                                   st.PortMapping(5353, 53, "udp", "127.0.0.1")]
    other = cni.make_container()
    assert st.load_for_netns(other.path, cni.state_dir) == []
    with open(os.path.join(cni.state_dir, cni.states()[0])) as f:
        raw = json.load(f)
    assert raw["schema"] == 1 and raw["bandwidth"]["egressRate"] == 8_000_000
    delete(cni, cni.conf(), c.path).ok()


def test_gc_removes_stale_attachments(cni: CNIEnv) -> None:
    conf = cni.conf()
    nss = [cni.make_container() for _ in range(3)]
    results = [add(cni, conf, ns, cid=f"g{i}").ok() for i, ns in enumerate(nss)]
    assert len(cni.reservations()) == 3
    gc = dict(conf, **{"cni.dev/valid-attachments": [{"containerID": "g1", "ifname": "eth0"}],
                       "cni.dev/attachments": [{"containerID": "g1", "ifname": "eth0"}]})
    assert cni.runner.invoke("netvisor-cni", "GC", gc).ok() is None
    keep = results[1]["ips"][0]["address"].split("/")[0]
    assert cni.reservations() == [keep]
    assert cni.states() == ["nvctest+g1+eth0.json"]
    links = cni.host_links()
    assert results[1]["interfaces"][0]["name"] in links
    assert results[0]["interfaces"][0]["name"] not in links
    assert "eth0" not in nss[0].ip("link")
    # null means "no valid attachments".
    gc = dict(conf, **{"cni.dev/valid-attachments": None})
    cni.runner.invoke("netvisor-cni", "GC", gc).ok()
    assert cni.reservations() == [] and cni.states() == []
    # Without the key GC refuses rather than wiping everything.
    cni.runner.invoke("netvisor-cni", "GC", conf).error(7)


def test_status_ok(cni: CNIEnv) -> None:
    out = cni.runner.invoke("netvisor-cni", "STATUS", cni.conf())
    assert out.rc == 0 and out.stdout.strip() == ""


def test_ipv6_dual_stack(cni: CNIEnv) -> None:
    c = cni.make_container()
    conf = cni.conf(ipam={"type": "host-local", "dataDir": cni.ipam_dir,
                          "ranges": [[{"subnet": "10.77.0.0/24"}], [{"subnet": "fd77::/64"}]],
                          "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]})
    res = add(cni, conf, c).ok()
    fams = sorted(ipaddress.ip_interface(ip["address"]).version for ip in res["ips"])
    assert fams == [4, 6]
    v6 = next(ip for ip in res["ips"] if ":" in ip["address"])
    assert v6["address"].split("/")[0] in c.ip("-6", "addr", "show", "eth0")
    assert "tentative" not in c.ip("-6", "addr", "show", "eth0", "scope", "global")
    assert "default via fd77::1" in c.ip("-6", "route")
    cni.runner.invoke("netvisor-cni", "CHECK", dict(conf, prevResult=res), container_id="ctr1",
                      netns=c.path, ifname="eth0").ok()
    delete(cni, conf, c.path).ok()
    assert cni.reservations() == []


def test_busy_state_lock_is_try_again_later(cni: CNIEnv) -> None:
    """A state lock held too long gives code 11, and ADD leaves nothing behind."""
    import fcntl

    c = cni.make_container()
    os.makedirs(cni.state_dir, exist_ok=True)
    fd = os.open(os.path.join(cni.state_dir, ".lock"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        out = add(cni, cni.conf(), c, extra_env={"NETVISOR_CNI_LOCK_TIMEOUT": "0.3"})
        out.error(11)
    finally:
        os.close(fd)
    assert cni.reservations() == [] and cni.states() == []
    assert "eth0" not in c.ip("link")
    add(cni, cni.conf(), c).ok()  # and once the lock is free, it works
    delete(cni, cni.conf(), c.path).ok()


def test_own_namespace_is_refused(cni: CNIEnv) -> None:
    """CNI_NETNS naming the plugin's own namespace is an invalid environment."""
    out = cni.runner.invoke("netvisor-cni", "ADD", cni.conf(), container_id="c1",
                            netns=cni.host.path, ifname="eth0")
    assert "own network namespace" in out.error(4)["msg"]


def test_point_to_point_without_bridge(cni: CNIEnv) -> None:
    """isGateway without a bridge: ptp-style wiring; two containers share the gateway."""
    conf = cni.conf()
    del conf["bridge"]
    got = []
    for i in range(2):
        c = cni.make_container()
        res = add(cni, conf, c, cid=f"p{i}").ok()
        hname = res["interfaces"][0]["name"]
        assert "10.77.0.1/32" in cni.host.ip("addr", "show", hname)
        addr = res["ips"][0]["address"].split("/")[0]
        assert f"{addr} dev {hname}" in cni.host.ip("route")
        c.run(["ping", "-c1", "-W2", "10.77.0.1"])
        got.append((c, res))
    # Container to container through the host namespace's routes.
    cni.host.run(["sysctl", "-w", "net.ipv4.ip_forward=1"])
    got[0][0].run(["ping", "-c1", "-W2", got[1][1]["ips"][0]["address"].split("/")[0]])
    for i, (c, res) in enumerate(got):
        cni.runner.invoke("netvisor-cni", "CHECK", dict(conf, prevResult=res),
                          container_id=f"p{i}", netns=c.path, ifname="eth0").ok()
        delete(cni, conf, c.path, cid=f"p{i}").ok()
    assert "10.77.0" not in cni.host.ip("route") and cni.reservations() == []


def test_stale_host_veth_is_an_error_and_kept(cni: CNIEnv) -> None:
    """A host link with our derived name is not ours to delete on a failed ADD."""
    from cni.plugin import host_ifname

    c = cni.make_container()
    hname = host_ifname("stale1", "eth0")
    cni.host.ip("link", "add", hname, "type", "veth", "peer", "name", "nvcpeer2")
    assert hname in add(cni, cni.conf(), c, cid="stale1").error(100)["msg"]
    assert hname in cni.host_links() and cni.reservations() == []
    assert "eth0" not in c.ip("link")
