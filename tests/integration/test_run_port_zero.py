"""connect() to TCP port 0, under netvisor and directly in a kernel namespace.

Linux treats port 0 as an ordinary port on input (tcp_v4_rcv/tcp_v6_rcv have
no port check): the SYN to port 0 goes out, the peer answers RST|ACK from
port 0, and the connect fails with ECONNREFUSED (blocking at once;
non-blocking with EINPROGRESS, then POLLIN|POLLOUT|POLLERR|POLLHUP and
SO_ERROR ECONNREFUSED). The stack used to drop every segment with port 0 as
malformed, so the connect hung. Both ends are checked: the stack as the
refusing peer (loopback, --network=none) and as the client of a kernel peer
(a taken-over veth, --netns).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_run_basic import STACK, nv_run
from tests.nsutil import Netns, veth_pair

pytestmark = pytest.mark.namespaces

PROGRAM = r'''
import errno, select, signal, socket, sys
def alarm(*_): raise TimeoutError
signal.signal(signal.SIGALRM, alarm)
def name(e): return errno.errorcode.get(e.errno, e) if e.errno else type(e).__name__
for host in sys.argv[1:]:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam)
    signal.alarm(5)   # a hang shows as TimeoutError, not as a stuck test
    try: s.connect((host, 0)); print(host, "blk ok")
    except OSError as e: print(host, "blk", name(e))
    signal.alarm(0)
    print(host, "blk bound", s.getsockname()[1] != 0)
    s.close()
    s = socket.socket(fam); s.setblocking(False)
    try: s.connect((host, 0)); print(host, "nb ok")
    except OSError as e: print(host, "nb", name(e))
    p = select.poll(); p.register(s, select.POLLIN | select.POLLOUT)
    print(host, "poll", [ev for _, ev in p.poll(5000)])
    print(host, "so_error", errno.errorcode.get(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)))
    s.close()
'''

REFUSED = ["blk ECONNREFUSED", "blk bound True", "nb EINPROGRESS", "poll [29]",
           "so_error ECONNREFUSED"]


def _expect(hosts: list[str]) -> list[str]:
    return [f"{h} {line}" for h in hosts for line in REFUSED]


def test_connect_to_port_zero_on_loopback(make_netns: Callable[[str], Netns],
                                          tmp_path: Path) -> None:
    ns = make_netns("nvz")
    prog = tmp_path / "pz.py"
    prog.write_text(PROGRAM)
    hosts = ["127.0.0.1", "::1"]
    ref = ns.run([sys.executable, str(prog), *hosts], timeout=60).stdout.splitlines()
    assert ref == _expect(hosts)   # the kernel's answer, as measured
    got = nv_run(ns, [f"--stack={STACK}", "--network=none"], [sys.executable, str(prog), *hosts])
    assert got.returncode == 0, got.stderr
    assert got.stdout.splitlines() == ref


def test_connect_to_port_zero_of_a_kernel_peer(make_netns: Callable[[str], Netns],
                                               tmp_path: Path) -> None:
    upstream, target = make_netns("nvz"), make_netns("nvz")
    veth_pair(upstream, "nvzu0", target, "nvzt0")
    upstream.ip("addr", "add", "10.231.77.1/24", "dev", "nvzu0")
    upstream.ip("-6", "addr", "add", "fd6e:7672:77::1/64", "dev", "nvzu0", "nodad")
    target.ip("addr", "add", "10.231.77.2/24", "dev", "nvzt0")
    target.ip("-6", "addr", "add", "fd6e:7672:77::2/64", "dev", "nvzt0", "nodad")
    prog = tmp_path / "pz.py"
    prog.write_text(PROGRAM)
    hosts = ["10.231.77.1", "fd6e:7672:77::1"]
    ref = target.run([sys.executable, str(prog), *hosts], timeout=60).stdout.splitlines()
    assert ref == _expect(hosts)
    got = nv_run(upstream, [f"--stack={STACK}", "--netns", target.path],
                 [sys.executable, str(prog), *hosts])
    assert got.returncode == 0, got.stderr
    assert got.stdout.splitlines() == ref
