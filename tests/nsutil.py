"""Network namespaces and links for tests, always cleaned up.

Every test that touches the network builds its own namespaces here, with
addresses only inside them; nothing is added to the machine's own namespace
and no route leaves the machine. Names carry the pid and a counter so that
parallel runs (and several developers on one machine) never collide.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

_counter = itertools.count()


def unique_name(prefix: str, limit: int = 15) -> str:
    """A name unique on this machine, short enough for an interface (15 chars)."""
    name = f"{prefix}{os.getpid() % 100000}x{next(_counter)}"
    if len(name) > limit:
        name = name[-limit:]
    return name


def sh(cmd: Sequence[str] | str, *, check: bool = True, timeout: float = 60,
       **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command (list or shell-split string), capturing text output."""
    argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} -> {proc.returncode}: {proc.stderr.strip()}")
    return proc


@dataclass
class Netns:
    """A named network namespace (``/run/netns/NAME``) made by a test."""

    name: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def argv(self, cmd: Sequence[str] | str) -> list[str]:
        inner = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        return ["ip", "netns", "exec", self.name, *inner]

    def run(self, cmd: Sequence[str] | str, *, check: bool = True, timeout: float = 60,
            **kwargs: object) -> subprocess.CompletedProcess[str]:
        return sh(self.argv(cmd), check=check, timeout=timeout, **kwargs)

    def popen(self, cmd: Sequence[str] | str, **kwargs: object) -> subprocess.Popen[bytes]:
        """Start a process in the namespace; it is killed when the namespace goes."""
        proc = subprocess.Popen(self.argv(cmd), **kwargs)  # type: ignore[call-overload]
        self.processes.append(proc)
        return proc

    def ip(self, *args: str) -> str:
        return sh(["ip", "-n", self.name, *args]).stdout

    def delete(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        # Kill anything else still inside (servers started with run(... &) etc.).
        pids = sh(["ip", "netns", "pids", self.name], check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)
        sh(["ip", "netns", "del", self.name], check=False)


def create_netns(prefix: str = "nvt") -> Netns:
    ns = Netns(unique_name(prefix))
    sh(["ip", "netns", "add", ns.name])
    ns.ip("link", "set", "lo", "up")
    return ns


@contextlib.contextmanager
def netns(prefix: str = "nvt") -> Iterator[Netns]:
    ns = create_netns(prefix)
    try:
        yield ns
    finally:
        ns.delete()


def veth_pair(a: Netns, a_name: str, b: Netns | None, b_name: str,
              *, mtu: int | None = None) -> None:
    """A veth pair with one end in ``a`` and the other in ``b`` (both set up).

    ``b=None`` is only for callers that move the end themselves; the pair is
    created inside ``a`` so that nothing is ever left in the machine's namespace.
    """
    cmd = ["ip", "-n", a.name, "link", "add", a_name, "type", "veth", "peer", "name", b_name]
    if b is not None:
        cmd += ["netns", b.name]
    sh(cmd)
    for ns, name in ((a, a_name), (b if b is not None else a, b_name)):
        if mtu is not None:
            ns.ip("link", "set", name, "mtu", str(mtu))
        ns.ip("link", "set", name, "up")
