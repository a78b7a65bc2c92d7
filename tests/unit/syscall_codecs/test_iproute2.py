"""Unmodified iproute2 (`ip -json ...`) decoding netvisor's netlink replies.

An LD_PRELOAD shim (nlshim.c, built here) turns each NETLINK_ROUTE socket of
`ip` into a socketpair served by a NetlinkRouteSocket; the JSON `ip` prints
must equal what it prints for the reference namespace's kernel.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netvisor.syscall import netlink as nl
from tests.unit.syscall_codecs.conftest import RefNet

pytestmark = pytest.mark.namespaces

SHIM_SRC = Path(__file__).with_name("nlshim.c")
SHIM_PID = 4242  # the nl_pid the shim's getsockname reports


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or shutil.which("ip") is None:
        pytest.skip("needs a C compiler and iproute2")
    out = tmp_path_factory.mktemp("nlshim") / "nlshim.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(out), str(SHIM_SRC), "-ldl"],
                   check=True, capture_output=True, timeout=60)
    return out


def _serve_channel(chan: socket.socket, ref: RefNet) -> None:
    sock = nl.NetlinkRouteSocket(ref.interfaces, ref.routes, ref.neighbors, pid=SHIM_PID)
    with chan:
        while True:
            data = chan.recv(1 << 16)
            if not data:
                return
            sock.handle_request(data)
            for gram in sock.replies():
                chan.send(gram)


def _serve_control(ctl: socket.socket, ref: RefNet, threads: list[threading.Thread]) -> None:
    while True:
        _msg, fds, _flags, _addr = socket.recv_fds(ctl, 1, 4)
        if not fds:
            return
        for fd in fds:
            t = threading.Thread(target=_serve_channel,
                                 args=(socket.socket(fileno=fd), ref), daemon=True)
            t.start()
            threads.append(t)


def ip_on_netvisor(ref: RefNet, shim: Path, args: list[str]) -> str:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    threads: list[threading.Thread] = []
    server = threading.Thread(target=_serve_control, args=(ours, ref, threads), daemon=True)
    server.start()
    env = dict(os.environ, LD_PRELOAD=str(shim), NV_NL_FD=str(theirs.fileno()))
    try:
        proc = subprocess.run(ref.ns.argv(["ip", *args]), env=env, pass_fds=[theirs.fileno()],
                              capture_output=True, text=True, timeout=30, check=False)
    finally:
        theirs.close()
    server.join(10)
    for t in threads:
        t.join(10)
    ours.close()
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    return proc.stdout


def normalized(out: str) -> Any:
    data = json.loads(out)
    for entry in data if isinstance(data, list) else []:
        # IFLA_LINK (a veth's peer) is not something a sandbox NIC has.
        entry.pop("link", None)
    return data


COMMANDS = [
    ["-json", "addr"], ["-json", "link"], ["-json", "-4", "addr"], ["-json", "-6", "addr"],
    ["-json", "route"], ["-json", "-6", "route"], ["-json", "route", "show", "table", "all"],
    ["-json", "-6", "route", "show", "table", "local"], ["-json", "neigh"],
    ["-json", "route", "get", "10.99.0.1"], ["-json", "route", "get", "10.9.0.7"],
    ["-json", "route", "get", "127.0.0.1"], ["-json", "-6", "route", "get", "fd00:9::5"],
    ["-json", "-6", "route", "get", "fd00:99::1"], ["-json", "-6", "route", "get", "::1"],
    ["-json", "-6", "route", "get", "fe80::5", "dev", "{a}"],
    ["-json", "route", "get", "10.9.0.5", "oif", "{a}"],
    ["-json", "addr", "show", "dev", "{a}"],
]


def resolve(cmd: list[str], ref: RefNet) -> list[str]:
    return [w.format(a=ref.a) for w in cmd]


@pytest.fixture(scope="module")
def kernel_outputs(refnet: RefNet) -> Iterator[dict[str, str]]:
    yield {" ".join(c): refnet.ns.run(["ip", *resolve(c, refnet)]).stdout for c in COMMANDS}


@pytest.mark.parametrize("cmd", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_ip_json_matches_kernel(refnet: RefNet, shim: Path, kernel_outputs: dict[str, str],
                                cmd: list[str]) -> None:
    mine = ip_on_netvisor(refnet, shim, resolve(cmd, refnet))
    assert normalized(mine) == normalized(kernel_outputs[" ".join(cmd)])


def test_ip_addr_add_is_refused(refnet: RefNet, shim: Path) -> None:
    """`ip addr add` inside the sandbox: Linux's message for a missing capability."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    threads: list[threading.Thread] = []
    server = threading.Thread(target=_serve_control, args=(ours, refnet, threads), daemon=True)
    server.start()
    env = dict(os.environ, LD_PRELOAD=str(shim), NV_NL_FD=str(theirs.fileno()))
    try:
        proc = subprocess.run(refnet.ns.argv(["ip", "addr", "add", "10.77.0.1/24", "dev",
                                              refnet.a]),
                              env=env, pass_fds=[theirs.fileno()], capture_output=True,
                              text=True, timeout=30, check=False)
    finally:
        theirs.close()
    server.join(10)
    ours.close()
    assert proc.returncode == 2
    assert "Operation not permitted" in proc.stderr
    assert "10.77.0.1" not in refnet.ns.ip("addr")  # and the kernel never saw it
