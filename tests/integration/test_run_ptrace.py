"""--platform=ptrace: the same emulation through ptrace + SECCOMP_RET_TRACE."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_run_basic import LOOPBACK_PROGRAM, STACK, _http_server, nv_run
from tests.integration.test_run_calls import CALLS_PROGRAM, SHARING_PROGRAM
from tests.nsutil import Netns

pytestmark = pytest.mark.namespaces

PTRACE = [f"--stack={STACK}", "--platform=ptrace"]


@pytest.fixture
def ns(make_netns: Callable[[str], Netns]) -> Netns:
    return make_netns("nvr")


def test_exit_status_and_not_found(ns: Netns) -> None:
    assert nv_run(ns, PTRACE, ["sh", "-c", "exit 3"]).returncode == 3
    assert nv_run(ns, PTRACE, ["sh", "-c", "kill -TERM $$"]).returncode == 128 + signal.SIGTERM
    assert nv_run(ns, PTRACE, ["nvr-no-such-command"]).returncode == 127


@pytest.mark.parametrize("program,args", [(LOOPBACK_PROGRAM, ["4"]), (LOOPBACK_PROGRAM, ["6"]),
                                          (SHARING_PROGRAM, [])], ids=["lo4", "lo6", "share"])
def test_python_programs(ns: Netns, tmp_path: Path, program: str, args: list[str]) -> None:
    prog = tmp_path / "p.py"
    prog.write_text(program)
    ref = ns.run([sys.executable, str(prog), *args], timeout=60)
    got = nv_run(ns, [*PTRACE, "--network=none"], [sys.executable, str(prog), *args])
    assert got.returncode == 0, got.stderr
    assert got.stdout == ref.stdout


def test_calls_match_the_kernel(ns: Netns, tmp_path: Path) -> None:
    prog = tmp_path / "calls.py"
    prog.write_text(CALLS_PROGRAM)
    ref = ns.run([sys.executable, str(prog)], timeout=60)
    got = nv_run(ns, [*PTRACE, "--network=none"], [sys.executable, str(prog)])
    assert got.returncode == 0, got.stderr
    assert got.stdout.splitlines() == ref.stdout.splitlines()


def test_curl(ns: Netns, tmp_path: Path) -> None:
    blob = os.urandom(4 << 20)
    (tmp_path / "blob.bin").write_bytes(blob)
    ns.ip("addr", "add", "10.231.255.1/32", "dev", "lo")
    _http_server(ns, tmp_path, "0.0.0.0", 8080)
    out = tmp_path / "out.bin"
    r = nv_run(ns, PTRACE, ["curl", "-sS", "-o", str(out), "http://10.231.255.1:8080/blob.bin"])
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(blob).digest()


@pytest.mark.parametrize("extra", [[], ["-R"], ["-u", "-b", "20M"]], ids=["up", "down", "udp"])
def test_iperf3(ns: Netns, extra: list[str]) -> None:
    ns.ip("addr", "add", "10.231.255.1/32", "dev", "lo")
    ns.popen(["iperf3", "-s", "-B", "10.231.255.1", "-p", "5201", "-1"],
             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while ns.run(["sh", "-c", "ss -ltn | grep -q :5201"], check=False).returncode:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = nv_run(ns, PTRACE, ["iperf3", "-c", "10.231.255.1", "-p", "5201", "-t", "1", "-J", *extra])
    assert r.returncode == 0, r.stderr
    end = json.loads(r.stdout)["end"]
    assert (end["sum"] if "-u" in extra else end["sum_received"])["bytes"] > 1_000_000
