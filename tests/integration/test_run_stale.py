"""A SIGKILLed ``netvisor run``: its program dies with it, and what it could not
remove is removed by the next ``netvisor run`` in that namespace.

SIGKILL gives netvisor no chance to run its exit path: the nftables table
``inet nvr<pid>`` of the default wiring stays (a non-persistent TAP goes with
its file descriptor; a persistent one would stay too). The program must not
outlive it: PR_SET_PDEATHSIG (SIGKILL) chains the spawn helper to the
supervisor and init to the helper, and init is PID 1 of the sandbox's PID
namespace, so its death kills the rest (with ``--platform=ptrace``,
PTRACE_O_EXITKILL as well). The next default wiring in the namespace removes
``nvr<pid>`` objects whose pid is gone (``wiring.remove_stale``), and only
those.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from netvisor.link.tap import TapEndpoint
from tests.integration.test_run_basic import nv_popen, nv_run
from tests.nsutil import Netns

pytestmark = pytest.mark.namespaces


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, state) of every process (no /proc/PID/task/TID/children here)."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(name)] = (int(fields[1]), fields[0])
    return out


def _descendants(root: int) -> list[int]:
    procs = _processes()
    found: list[int] = []
    todo = [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, _) in procs.items():
            if ppid == parent:
                found.append(pid)
                todo.append(pid)
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode() for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    state = _processes().get(pid)
    return state is not None and state[1] != "Z"


def _tables(ns: Netns) -> list[str]:
    return ns.run(["nft", "list", "tables"]).stdout.splitlines()


def _links(ns: Netns) -> list[str]:
    return [line.split(":")[1].strip().split("@")[0]
            for line in ns.ip("-o", "link").splitlines()]


def _dead_pid() -> int:
    """A pid that existed a moment ago and exists no more."""
    p = subprocess.Popen(["true"])
    p.wait()
    assert not os.path.exists(f"/proc/{p.pid}")
    return p.pid


@pytest.mark.parametrize("platform", ["seccomp", "ptrace"])
def test_sigkill_takes_the_program_and_next_run_removes_leftovers(
        make_netns: Callable[[str], Netns], tmp_path: Path, platform: str) -> None:
    ns = make_netns("s3")
    marker = tmp_path / "started"
    # The default stack (not NETVISOR_TEST_STACK): the default wiring is the subject.
    proc = nv_popen(ns, [f"--platform={platform}"],
                    ["sh", "-c", f"touch {marker}; exec sleep 3003"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the sandboxed program did not start"
        time.sleep(0.05)
    # ip netns exec execs netvisor (no fork): proc.pid is the supervisor's pid.
    name = f"nvr{proc.pid}"
    assert f"table inet {name}" in _tables(ns)
    assert name in _links(ns)
    tree = _descendants(proc.pid)
    program = [p for p in tree if _cmdline(p) == ["sleep", "3003"]]
    assert len(program) == 1, [(_cmdline(p)) for p in tree]
    assert len(tree) >= 3          # spawn helper, init, program

    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in tree):
        assert time.monotonic() < deadline, \
            f"outlived SIGKILLed netvisor: {[(p, _cmdline(p)) for p in tree if _alive(p)]}"
        time.sleep(0.05)

    # What SIGKILL leaves: the table. The TAP was not persistent, so it went with
    # the fd; make it a persistent stale one, as a TAP that outlived its owner.
    assert f"table inet {name}" in _tables(ns)
    assert name not in _links(ns)
    ns.run(["ip", "tuntap", "add", "dev", name, "mode", "tap"])

    # Must stay: a live pid's objects (this test's own pid, no carrier: the pid
    # decides), a dead pid whose TAP has an attached fd (a netvisor in another PID
    # namespace: the carrier decides), names that do not match nvr<digits>, and
    # other families.
    live = f"nvr{os.getpid()}"
    attached = f"nvr{_dead_pid()}"
    ns.run(["ip", "tuntap", "add", "dev", live, "mode", "tap"])
    ns.run(["nft", "-f", "-"], input=f"add table inet {live}\nadd table inet {attached}\n"
                                     f"add table inet {name}x\nadd table ip {name}\n")
    keep = [f"table inet {live}", f"table inet {attached}", f"table inet {name}x",
            f"table ip {name}"]
    tap = TapEndpoint(attached, netns=ns.path)
    try:
        r = nv_run(ns, [f"--platform={platform}"], ["true"])
        links, tables = _links(ns), _tables(ns)
    finally:
        tap.close()
    assert r.returncode == 0, r.stderr
    line = (f"netvisor: removed what killed netvisor runs left behind: TAP {name}, "
            f"nftables table inet {name}")
    assert r.stderr.splitlines() == [line]
    assert name not in links
    assert f"table inet {name}" not in tables
    assert live in links and attached in links
    for t in keep:
        assert t in tables
    # The second run removed its own table and TAP at its (normal) exit.
    assert [t for t in tables if t not in keep] == []
