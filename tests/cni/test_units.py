"""Unit tests of netvisor-cni's pure parts: versions, CNI_ARGS, names, state files."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as stg

from cni import state as st
from cni.errors import CNIError
from cni.plugin import host_ifname, parse_cni_args
from cni.versions import delegate_version, normalize_result, result_to_version

_ipv4 = stg.tuples(*[stg.integers(0, 255)] * 4, stg.integers(8, 32)).map(
    lambda t: f"{t[0]}.{t[1]}.{t[2]}.{t[3]}/{t[4]}")
_ipv6 = stg.tuples(stg.integers(0, 0xffff), stg.integers(0, 0xffff), stg.integers(16, 128)).map(
    lambda t: f"fd00:{t[0]:x}::{t[1]:x}/{t[2]}")
_results = stg.fixed_dictionaries({
    "interfaces": stg.lists(stg.fixed_dictionaries(
        {"name": stg.sampled_from(["eth0", "nvcabc", "net1"]),
         "mac": stg.just("0a:58:00:00:00:01")},
        optional={"sandbox": stg.just("/run/netns/x"), "mtu": stg.integers(68, 9000)}),
        max_size=3),
    "ips": stg.lists(stg.fixed_dictionaries({"address": stg.one_of(_ipv4, _ipv6)},
                                            optional={"interface": stg.integers(0, 2)}),
                     max_size=3),
    "routes": stg.lists(stg.fixed_dictionaries(
        {"dst": stg.sampled_from(["0.0.0.0/0", "10.0.0.0/8", "::/0"])},
        optional={"gw": stg.just("10.0.0.1"), "priority": stg.integers(0, 100)}), max_size=2),
    "dns": stg.one_of(stg.just({}), stg.just({"nameservers": ["10.0.0.1"]})),
})


@given(_results)
def test_result_versions_round_trip(result: dict) -> None:
    internal = normalize_result(dict(result, cniVersion="1.1.0"))
    v11 = result_to_version(internal, "1.1.0")
    assert normalize_result(v11) == internal
    v04 = result_to_version(internal, "0.4.0")
    assert all(ip["version"] in ("4", "6") for ip in v04.get("ips", []))
    assert all("mtu" not in i for i in v04.get("interfaces", []))
    v10 = result_to_version(internal, "1.0.0")
    assert all("version" not in ip for ip in v10.get("ips", []))
    assert all("priority" not in r for r in v10.get("routes", []))
    # 0.4.0 and 1.0.0 lose only the 1.1.0 fields.
    assert normalize_result(v04) == normalize_result(v10)


def test_old_result_formats() -> None:
    got = normalize_result({"cniVersion": "0.2.0", "ip4": {"ip": "10.1.0.5/16",
                            "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0"}]}})
    assert got["ips"] == [{"address": "10.1.0.5/16", "gateway": "10.1.0.1"}]
    assert got["routes"] == [{"dst": "0.0.0.0/0"}]
    with pytest.raises(CNIError) as err:
        normalize_result({"ips": [{"address": "nonsense"}]})
    assert err.value.code == 6


def test_delegate_version() -> None:
    ref = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"]
    assert delegate_version("1.1.0", ref) == "1.0.0"
    assert delegate_version("0.4.0", ref) == "0.4.0"
    assert delegate_version("1.1.0", ref + ["1.1.0"]) == "1.1.0"
    assert delegate_version("1.1.0", None) == "1.0.0"


def test_cni_args() -> None:
    assert parse_cni_args("IgnoreUnknown=1;FOO=bar;MAC=0a:58:00:00:00:01")["MAC"] == \
        "0a:58:00:00:00:01"
    assert parse_cni_args("") == {}
    for bad in ("FOO=bar", "MAC", "=x"):
        with pytest.raises(CNIError) as err:
            parse_cni_args(bad)
        assert err.value.code == 4


def test_host_ifname() -> None:
    a = host_ifname("f" * 64, "eth0")
    assert a == host_ifname("f" * 64, "eth0") and len(a) == 15 and a.startswith("nvc")
    assert a != host_ifname("f" * 64, "eth1") != host_ifname("e" * 64, "eth0")


def _state(network: str, cid: str, netns: str) -> st.AttachmentState:
    ident = st.netns_identity(netns)
    return st.AttachmentState(
        network=network, container_id=cid, ifname="eth0", netns=netns,
        netns_dev=ident[0] if ident else None, netns_ino=ident[1] if ident else None,
        host_ifname=host_ifname(cid, "eth0"), mac="0a:58:00:00:00:01", mtu=1500,
        result={"interfaces": [{"name": "eth0", "sandbox": netns}],
                "ips": [{"address": "10.0.0.2/24", "interface": 0}]},
        bandwidth=st.Bandwidth(None, None, 8000, 800),
        port_mappings=[st.PortMapping(80, 8080, "tcp", "")], created_at=1.0)


def test_state_round_trip_and_lookup_by_identity(tmp_path: Path) -> None:
    d = str(tmp_path / "state")
    ns_file = tmp_path / "ns"
    ns_file.write_text("")
    alias = tmp_path / "alias"
    os.link(ns_file, alias)  # another path to the same inode, like /proc/PID/ns/net
    s = _state("net1", "c1", str(ns_file))
    st.save(s, d)
    loaded = st.load("net1", "c1", "eth0", d)
    assert loaded is not None and loaded.to_json() == s.to_json()
    assert [x.container_id for x in st.load_for_netns(str(alias), d)] == ["c1"]
    assert loaded.addresses() == ["10.0.0.2/24"]
    assert loaded.bandwidth and loaded.bandwidth.egress_rate_bytes == 1000
    assert st.mark_taken_over(str(alias), os.getpid(), d) == 1
    (marked,) = st.load_for_netns(str(ns_file), d)
    assert marked.taken_over and marked.taken_over.pid == os.getpid()
    assert marked.taken_over.alive()
    assert st.clear_taken_over(str(ns_file), os.getpid() + 1, d) == 0
    assert st.clear_taken_over(str(ns_file), None, d) == 1
    assert st.remove("net1", "c1", "eth0", d) and not st.remove("net1", "c1", "eth0", d)
    assert st.load_for_netns(str(ns_file), d) == []
    # Leftover temp files or garbage are skipped, not fatal.
    (Path(d) / "junk.json").write_text("{")
    assert st.list_all(d) == []


def _writer(args: tuple[str, str, int]) -> int:
    d, netns, i = args
    st.save(_state("net", f"c{i}", netns), d)
    return st.mark_taken_over(netns, 1000 + i, d)


def test_parallel_writers_lose_nothing(tmp_path: Path) -> None:
    d = str(tmp_path / "state")
    ns_file = tmp_path / "ns"
    ns_file.write_text("")
    with multiprocessing.get_context("fork").Pool(8) as pool:
        pool.map(_writer, [(d, str(ns_file), i) for i in range(40)])
    found = st.load_for_netns(str(ns_file), d)
    assert sorted(s.container_id for s in found) == sorted(f"c{i}" for i in range(40))
    assert all(s.taken_over is not None for s in found)
    assert not [n for n in os.listdir(d) if ".tmp." in n]
