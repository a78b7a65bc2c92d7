"""Fixtures of the packet-level conformance suite: namespaces, DUT server, testbench.

Per test module and per DUT (``linux``, ``netvisor``) we build two namespaces,
TB and DUT, joined by a veth, and start the DUT command server in the DUT
namespace (natively, or under ``python3 -m netvisor run --netns``). Each test
gets a fresh :class:`Testbench` (its own pcap, kept only when the test fails)
and the :class:`Dut` client; all DUT sockets are closed after each test.

The DUT is chosen by the module-scoped ``dut_name`` fixture, so every case runs
once per DUT and its test id names it (``test_x[linux]``, ``test_x[netvisor]``).
``@pytest.mark.xfail_on("netvisor", "reason")`` marks an expected failure on
one DUT; marking ``linux`` is refused: a case that fails on Linux is a wrong
test.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest

from tests.conformance.testbench import (
    ETHTOOL_SGSO,
    ETHTOOL_STSO,
    ETHTOOL_STXCSUM,
    Dut,
    DutError,
    Testbench,
    Topology,
    ethtool_set,
)
from tests.nsutil import Netns, create_netns, unique_name, veth_pair

REPO = Path(__file__).resolve().parents[2]
SERVER = Path(__file__).resolve().parent / "dut" / "server.py"
DUTS = ("linux", "netvisor")
# How long the DUT server may take to appear (seconds). The netvisor one starts
# a Python supervisor and stack first, so it gets longer than the native one.
LINUX_START_TIMEOUT = 10.0
NETVISOR_START_TIMEOUT = float(os.environ.get("NVX_NETVISOR_START_TIMEOUT", "8"))
CASE_TIMEOUT = 60  # per test, seconds: a hung DUT must not eat the suite's budget
# Wall time the netvisor DUT's cases may use in one session (seconds). A stack
# that fails many cases fails each after its expect() windows; this bound keeps
# the whole suite inside the CI budget (the Linux DUT needs ~80 s). Cases left
# when it is spent are reported as xfail saying so.
NETVISOR_BUDGET = float(os.environ.get("NVX_NETVISOR_BUDGET", "300"))
_netvisor_spent = 0.0

_netvisor_failure: str | None = None  # first start failure, reused by later modules


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "xfail_on(dut, reason, **params): expected failure of a conformance case "
        "on one DUT (only for the given parameter values, if any)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).resolve().parent
    for item in items:
        if here not in Path(str(item.fspath)).resolve().parents:
            continue
        item.add_marker(pytest.mark.timeout(CASE_TIMEOUT))
        if "dut_name" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.namespaces)
        callspec = getattr(item, "callspec", None)
        dut = callspec.params.get("dut_name") if callspec else None
        params = callspec.params if callspec else {}
        for mark in item.iter_markers("xfail_on"):
            target, reason = mark.args[0], mark.args[1]
            if target == "linux":
                raise pytest.UsageError(
                    f"{item.nodeid}: xfail_on('linux') is not allowed; fix the test instead")
            # Keyword arguments restrict the mark to some parameter values,
            # e.g. xfail_on("netvisor", "why", family=6).
            if target == dut and all(params.get(k) == v for k, v in mark.kwargs.items()):
                item.add_marker(pytest.mark.xfail(reason=f"{dut}: {reason}", strict=False))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
    pcap = getattr(item, "nvx_pcap", None)
    if pcap and rep.when == "call" and rep.failed:
        rep.sections.append(("conformance pcap", str(pcap)))


@dataclass
class DutEnv:
    """One TB/DUT pair with a running DUT server (or why it could not start)."""

    name: str
    topo: Topology | None
    tb_ns: Netns | None
    dut_ns: Netns | None
    sock_path: str
    proc: subprocess.Popen[bytes] | None
    error: str | None
    log_path: str
    tmpdir: Path
    # Set when a control call timed out or the server died: the next case
    # starts on a fresh pair (a wedged DUT would fail every later case of the
    # module for the wrong reason).
    needs_restart: bool = False
    restarts: int = 0


def _sysctl(ns: Netns, *settings: str) -> None:
    for s in settings:
        ns.run(["sysctl", "-q", "-w", s])


def build_pair() -> tuple[Topology, Netns, Netns]:
    """Two namespaces and a veth with addresses only inside them."""
    tb = create_netns("nvxt")
    dut = create_netns("nvxd")
    try:
        # The TB kernel must stay silent: no IPv6 at all (no DAD, MLD, RS, NDP
        # answers) and no IPv4 address; it sees our traffic as other-host.
        _sysctl(tb, "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        # DUT: no DAD delay (addresses usable at once), no ICMP rate limits
        # (ICMP cases send bursts), no router solicitations.
        _sysctl(dut,
                "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
                "net.ipv6.conf.default.router_solicitations=0",
                "net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0",
                "net.ipv4.icmp_msgs_burst=10000", "net.ipv4.icmp_msgs_per_sec=100000",
                "net.ipv4.tcp_no_metrics_save=1",
                # Short reassembly timeouts so fragment-timeout cases fit the time
                # budget (Linux defaults 30 s / 60 s). netvisor may read these
                # from the namespace it takes over.
                "net.ipv4.ipfrag_time=2", "net.ipv6.ip6frag_time=2",
                # ICMP echo (ping) sockets for every group: the DUT server runs as root.
                "net.ipv4.ping_group_range=0 2147483647")
        tb_if, dut_if = unique_name("nvxb"), unique_name("nvxu")
        veth_pair(dut, dut_if, tb, tb_if)
        # The TB must see segments as they go on a wire, not TSO/GSO super-frames;
        # software checksums make the pcaps readable.
        for cmd in (ETHTOOL_STSO, ETHTOOL_SGSO, ETHTOOL_STXCSUM):
            ethtool_set(dut.name, dut_if, cmd, 0)
        topo0 = Topology(tb_ns=tb.name, dut_ns=dut.name, tb_if=tb_if, dut_if=dut_if, dut_mac="")
        dut.ip("addr", "add", f"{topo0.dut_ip4}/{topo0.prefix4}", "dev", dut_if)
        dut.ip("-6", "addr", "add", f"{topo0.dut_ip6}/{topo0.prefix6}", "dev", dut_if, "nodad")
        for ip in (topo0.tb_ip4, topo0.tb_ip6):
            dut.ip("neigh", "replace", ip, "lladdr", topo0.tb_mac, "dev", dut_if, "nud", "permanent")
        mac = Path(f"/sys/class/net/{dut_if}/address")
        dut_mac = dut.run(["cat", str(mac)]).stdout.strip()
        ll = dut.run(["ip", "-6", "-o", "addr", "show", "dev", dut_if, "scope", "link"]).stdout
        dut_ll6 = ll.split()[3].split("/")[0] if ll.strip() else ""
        topo = Topology(tb_ns=tb.name, dut_ns=dut.name, tb_if=tb_if, dut_if=dut_if,
                        dut_mac=dut_mac, dut_ll6=dut_ll6)
        return topo, tb, dut
    except BaseException:
        dut.delete()
        tb.delete()
        raise


def _wait_server(path: str, proc: subprocess.Popen[bytes], timeout: float) -> str | None:
    """None when the server answers a ping at ``path``, else why not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rc = proc.poll()
        if rc is not None:
            return f"exited with status {rc} before serving"
        if os.path.exists(path):
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(2)
                    s.connect(path)
                    s.sendall(b'{"op": "ping"}\n')
                    if b"pong" in s.recv(100):
                        return None
            except OSError as exc:
                return f"control socket error: {exc}"
        time.sleep(0.05)
    return f"did not serve the DUT server within {timeout:.0f}s"


def _log_tail(path: str, n: int = 1) -> str:
    try:
        lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])


def start_env(name: str, tmpdir: Path) -> DutEnv:
    global _netvisor_failure
    sock_path = str(tmpdir / "dut.sock")
    log_path = str(tmpdir / "dut.log")
    if name == "netvisor" and _netvisor_failure is not None:
        return DutEnv(name, None, None, None, sock_path, None,
                      _netvisor_failure, log_path, tmpdir)
    topo, tb, dut = build_pair()
    log = open(log_path, "wb")  # noqa: SIM115 - owned by the process
    if name == "linux":
        proc = dut.popen([sys.executable, str(SERVER), sock_path], stdout=log, stderr=log)
        err = _wait_server(sock_path, proc, LINUX_START_TIMEOUT)
        if err:
            raise RuntimeError(f"linux DUT server {err}: {_log_tail(log_path)}")
    else:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.Popen(
            [sys.executable, "-m", "netvisor", "run", "--netns", dut.path, "--",
             sys.executable, str(SERVER), sock_path],
            cwd=str(REPO), env=env, stdout=log, stderr=log, start_new_session=True)
        err = _wait_server(sock_path, proc, NETVISOR_START_TIMEOUT)
        if err:
            _netvisor_failure = (f"`python3 -m netvisor run --netns` {err}: "
                                 f"{_log_tail(log_path) or 'no output'}")
            _stop(proc)
            dut.delete()
            tb.delete()
            return DutEnv(name, None, None, None, sock_path, None, _netvisor_failure,
                          log_path, tmpdir)
    log.close()
    err = _wait_network(topo, tmpdir)
    if err and name == "netvisor":
        _netvisor_failure = f"netvisor DUT server started but {err}"
        _stop(proc)
        dut.delete()
        tb.delete()
        return DutEnv(name, None, None, None, sock_path, None, _netvisor_failure, log_path, tmpdir)
    if err:
        raise RuntimeError(f"linux DUT: {err}")
    return DutEnv(name, topo, tb, dut, sock_path, proc, None, log_path, tmpdir)


def _wait_network(topo: Topology, tmpdir: Path, timeout: float = 5.0) -> str | None:
    """None once the DUT answers ICMP echo over v4 and v6, else why not.

    The DUT server can be up a moment before the stack behind it answers on
    the wire (netvisor starting its NIC); cases must not race that.
    """
    bench = Testbench(topo, str(tmpdir / "readiness.pcap"))
    try:
        deadline = time.monotonic() + timeout
        for family in (4, 6):
            seq = 0
            while True:
                seq += 1
                if family == 4:
                    bench.send(bench.ip4() / ICMP(type=8, id=0x4E56, seq=seq))
                else:
                    bench.send(bench.ip6() / ICMPv6EchoRequest(id=0x4E56, seq=seq))
                try:
                    bench.expect(lambda p, s=seq: bench.from_dut(p) and (
                        (ICMP in p and p[ICMP].type == 0 and p[ICMP].seq == s)
                        or (ICMPv6EchoReply in p and p[ICMPv6EchoReply].seq == s)), 0.2)
                    break
                except AssertionError:
                    if time.monotonic() > deadline:
                        return f"did not answer IPv{family} echo within {timeout:.0f}s"
    finally:
        bench.stop()
    return None


def stop_env(env: DutEnv) -> None:
    if env.proc is not None:
        _stop(env.proc)
    if env.dut_ns is not None:
        env.dut_ns.delete()
    if env.tb_ns is not None:
        env.tb_ns.delete()
    env.proc = env.dut_ns = env.tb_ns = None


_restarts: list[str] = []  # why each DUT restart happened, for the terminal summary


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _restarts:
        terminalreporter.section("conformance DUT restarts")
        for line in _restarts:
            terminalreporter.write_line(line)


def restart_env(env: DutEnv) -> None:
    """Replace a wedged or dead DUT by a fresh pair (new namespaces and server)."""
    stop_env(env)
    restarts = env.restarts + 1
    subdir = env.tmpdir / f"restart{restarts}"
    subdir.mkdir(exist_ok=True)
    fresh = start_env(env.name, subdir)
    keep_tmp = env.tmpdir
    env.__dict__.update(fresh.__dict__)
    env.tmpdir, env.restarts, env.needs_restart = keep_tmp, restarts, False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, 15) if os.getpgid(proc.pid) == proc.pid else proc.terminate()
        proc.wait(timeout=3)
    except (subprocess.TimeoutExpired, ProcessLookupError, PermissionError):
        try:
            os.killpg(proc.pid, 9) if os.getpgid(proc.pid) == proc.pid else proc.kill()
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture(scope="module", params=DUTS)
def dut_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def dut_env(dut_name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DutEnv]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    env = start_env(dut_name, tmp_path_factory.mktemp(f"nvx-{dut_name}"))
    yield env
    stop_env(env)


@pytest.fixture
def topo(dut_env: DutEnv) -> Iterator[Topology]:
    global _netvisor_spent
    if not dut_env.error and (dut_env.needs_restart or (
            dut_env.proc is not None and dut_env.proc.poll() is not None)):
        restart_env(dut_env)
    if dut_env.error:
        pytest.xfail(dut_env.error)
    if dut_env.name == "netvisor" and _netvisor_spent > NETVISOR_BUDGET:
        pytest.xfail(f"not run: the netvisor DUT used its {NETVISOR_BUDGET:.0f} s budget "
                     "(NVX_NETVISOR_BUDGET)")
    assert dut_env.topo is not None
    t0 = time.monotonic()
    yield dut_env.topo
    if dut_env.name == "netvisor":
        _netvisor_spent += time.monotonic() - t0


@pytest.fixture
def dut(request: pytest.FixtureRequest, dut_env: DutEnv, topo: Topology) -> Iterator[Dut]:
    """The DUT command client; every DUT socket is closed after the test."""
    client = Dut(dut_env.name, dut_env.sock_path, topo)
    yield client
    if not client.wedged:
        try:
            client.call("closeall")
        except (DutError, OSError):
            pass
    client.close_control()
    if client.wedged or (dut_env.proc is not None and dut_env.proc.poll() is not None):
        dut_env.needs_restart = True
        why = "a control call timed out" if client.wedged else "the DUT server exited"
        _restarts.append(f"{dut_env.name}: restarted after {request.node.nodeid}: {why}")


@pytest.fixture
def tb(request: pytest.FixtureRequest, dut_env: DutEnv, topo: Topology) -> Iterator[Testbench]:
    """The testbench for one case; its pcap is kept only if the case fails."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in request.node.name)[:120]
    pcap = dut_env.tmpdir / f"{safe}.pcap"
    request.node.nvx_pcap = pcap
    bench = Testbench(topo, str(pcap))
    yield bench
    bench.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.passed:
        pcap.unlink(missing_ok=True)


@pytest.fixture
def dut_ns(dut_env: DutEnv, topo: Topology) -> Netns:
    """The DUT namespace (for `ip` commands on the DUT's side of the veth)."""
    assert dut_env.dut_ns is not None
    return dut_env.dut_ns
