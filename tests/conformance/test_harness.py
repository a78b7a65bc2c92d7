"""Self-tests of the conformance harness pieces that need no namespaces.

The DUT command server's request handling, the TCP matcher's flag and
sequence rules, sequence arithmetic, and the JUnit-to-table report.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import socket
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from tests.conformance import report
from tests.conformance.testbench import RST, TCPConn, Topology, seq_add, seq_diff

_spec = importlib.util.spec_from_file_location(
    "nvx_dut_server", Path(__file__).resolve().parent / "dut" / "server.py")
assert _spec is not None and _spec.loader is not None
server = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(server)


def call(op: str, *args: object) -> dict[str, object]:
    return server.handle(json.dumps({"op": op, "args": list(args)}).encode())


def test_server_ping_and_bad_requests() -> None:
    assert call("ping") == {"ret": "pong", "errno": 0}
    assert server.handle(b"not json")["errno"] == errno.EINVAL
    assert call("no_such_op")["errno"] == errno.EINVAL
    assert call("close", 987654)["errno"] == errno.EBADF


def test_server_udp_round_trip_on_loopback() -> None:
    """socket/bind/sendto/recvfrom through the JSON layer, bytes as base64."""
    a = call("socket", socket.AF_INET, socket.SOCK_DGRAM, 0)["ret"]
    b = call("socket", socket.AF_INET, socket.SOCK_DGRAM, 0)["ret"]
    try:
        assert call("bind", b, ["127.0.0.1", 0])["errno"] == 0
        port = call("getsockname", b)["ret"][1]
        sent = call("sendto", a, {"b64": "aGVsbG8="}, ["127.0.0.1", port])
        assert sent == {"ret": 5, "errno": 0}
        got = call("recvfrom", b, 100)["ret"]
        assert got[0] == {"b64": "aGVsbG8="} and got[1][0] == "127.0.0.1"
        assert call("setnonblocking", b, True)["errno"] == 0
        assert call("recv", b, 100)["errno"] == errno.EAGAIN
    finally:
        assert call("closeall")["ret"] >= 2


def _topo() -> Topology:
    return Topology(tb_ns="x", dut_ns="y", tb_if="a", dut_if="b", dut_mac="02:00:00:00:00:02")


class _FakeTb:
    topo = _topo()

    def from_dut(self, p, family=None):  # mirrors Testbench.from_dut
        return IP in p and p[IP].src == self.topo.dut_ip4


def _seg(flags: str, seq: int = 10, ack: int = 20, sport: int = 80, dport: int = 5000):
    t = _topo()
    return Ether(bytes(Ether() / IP(src=t.dut_ip4, dst=t.tb_ip4)
                       / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack)))


def test_tcp_match_flags_and_fields() -> None:
    conn = TCPConn(_FakeTb(), 4, dport=80, sport=5000)  # type: ignore[arg-type]
    assert conn.match(_seg("PA"), "A")  # PSH is the sender's choice
    assert not conn.match(_seg("FA"), "A")
    assert conn.match(_seg("R"), RST) and conn.match(_seg("RA"), RST)
    assert not conn.match(_seg("A"), RST)
    assert conn.match(_seg("A", seq=10, ack=20), "A", seq=10, ack=20)
    assert not conn.match(_seg("A", seq=11), "A", seq=10)
    assert not conn.match(_seg("A", sport=81), "A")  # another connection
    conn.dport = 0  # passive open: any DUT port
    assert conn.match(_seg("S", sport=81), "S")


def test_sequence_arithmetic_wraps() -> None:
    assert seq_add(0xFFFFFFFF, 2) == 1
    assert seq_diff(1, 0xFFFFFFFF) == 2
    assert seq_diff(0xFFFFFFFF, 1) == -2


def test_report_table(tmp_path: Path) -> None:
    xml = tmp_path / "r.xml"
    xml.write_text(
        '<testsuites><testsuite>'
        '<testcase classname="tests.conformance.test_udp" name="test_a[linux-v4]"/>'
        '<testcase classname="tests.conformance.test_udp" name="test_a[netvisor-v4]">'
        '<skipped type="pytest.xfail" message="netvisor: not yet"/></testcase>'
        '<testcase classname="tests.conformance.test_udp" name="test_b[seq-before-linux]"/>'
        '<testcase classname="tests.conformance.test_udp" name="test_b[seq-before-netvisor]">'
        '<failure message="boom"/></testcase>'
        '</testsuite></testsuites>')
    text = report.table(str(xml))
    assert "| udp | `test_a[v4]` | pass | xfail [1] |" in text
    assert "| udp | `test_b[seq-before]` | pass | **FAIL** |" in text
    assert "[1] netvisor: not yet" in text
    assert text.startswith("2 cases; passing: linux 2, netvisor 0.")
