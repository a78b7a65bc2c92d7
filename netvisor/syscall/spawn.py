"""Start a program under the seccomp filter and take its notification listener.

The work inside the new namespaces is done by ``spawn_helper.py``, a fresh
Python process (no threads, no inherited locks); this module runs it, reads
its report lines, takes the listener with pidfd_getfd, and later says "go".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from netvisor.syscall.seccomp import SECCOMP_RET_TRACE, Listener, build_filter, pidfd_getfd

HELPER = Path(__file__).with_name("spawn_helper.py")


class SpawnError(Exception):
    """The sandbox could not be set up (message is one line for the user)."""


@dataclass
class Sandboxed:
    """A program started in its namespaces, paused until :meth:`go`."""

    argv: list[str]
    proc: subprocess.Popen[bytes]
    init_pid: int
    listener: Any
    _report: int
    _go: int
    messages: list[str] = field(default_factory=list)

    def go(self) -> None:
        """Let the program exec (the supervisor now serves the listener)."""
        os.write(self._go, b"go")
        os.close(self._go)
        self._go = -1

    def signal(self, sig: int) -> None:
        """Forward a signal (to PID 1 of the sandbox, which passes it on)."""
        try:
            os.kill(self.init_pid, sig)
        except ProcessLookupError:
            pass

    async def wait(self) -> int:
        """Wait for the program; its exit status (128+N when killed by signal N)."""
        pidfd = os.pidfd_open(self.proc.pid)
        try:
            await trio.lowlevel.wait_readable(pidfd)
        finally:
            os.close(pidfd)
        code = self.proc.wait()
        self._read_messages()
        return code

    def _read_messages(self) -> None:
        os.set_blocking(self._report, False)
        data = b""
        try:
            while chunk := os.read(self._report, 4096):
                data += chunk
        except BlockingIOError:
            pass
        for line in data.decode(errors="replace").splitlines():
            kind, _, text = line.partition(" ")
            if kind in ("notfound", "notexec", "error"):
                self.messages.append(text)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._report, self._go):
            if fd >= 0:
                os.close(fd)
        self._report = self._go = -1
        self.listener.close()


def spawn(argv: list[str], *, new_netns: bool = True, resolv_conf: str | None = None,
          hosts: str | None = None, ptrace: bool = False) -> Sandboxed:
    """Start ``argv`` in new PID + mount (+ network) namespaces, paused before exec.

    Raises :class:`SpawnError` with a one-line reason (no privilege, no
    seccomp user notification, ...).
    """
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    filt = build_filter(SECCOMP_RET_TRACE) if ptrace else build_filter()
    spec = {"report_fd": report_w, "go_fd": go_r, "filter": filt.hex(), "ptrace": ptrace,
            "argv": argv, "new_netns": new_netns, "resolv_conf": resolv_conf, "hosts": hosts}
    try:
        proc = subprocess.Popen([sys.executable, "-I", "-S", str(HELPER), json.dumps(spec)],
                                pass_fds=(report_w, go_r), close_fds=True,
                                restore_signals=True)
    finally:
        os.close(report_w)
        os.close(go_r)
    init_pid = listener_fd = -1
    buf = b""
    error = None
    listener_fd = -2
    while init_pid < 0 or listener_fd == -2:
        chunk = os.read(report_r, 4096)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            kind, _, value = line.decode().partition(" ")
            if kind == "init":
                init_pid = int(value)
            elif kind == "listener":
                listener_fd = int(value)
            elif kind == "error":
                error = value
        if error:
            break
    if error or init_pid < 0 or listener_fd == -2 or (listener_fd < 0 and not ptrace):
        os.close(go_w)
        os.close(report_r)
        proc.kill()
        proc.wait()
        raise SpawnError(_explain(error or "the sandbox helper exited early"))
    if ptrace:
        from netvisor.syscall.ptrace_platform import PtraceListener
        try:
            plistener = PtraceListener(init_pid)
        except OSError as e:
            os.close(go_w)
            os.close(report_r)
            proc.kill()
            proc.wait()
            raise SpawnError(f"cannot trace the sandbox: {e.strerror}") from None
        return Sandboxed(argv, proc, init_pid, plistener, report_r, go_w)
    try:
        pidfd = os.pidfd_open(init_pid)
        try:
            fd = pidfd_getfd(pidfd, listener_fd)
        finally:
            os.close(pidfd)
    except OSError as e:
        os.close(go_w)
        os.close(report_r)
        proc.kill()
        proc.wait()
        raise SpawnError(f"cannot take the seccomp listener: {e.strerror}") from None
    os.set_inheritable(fd, False)
    return Sandboxed(argv, proc, init_pid, Listener(fd), report_r, go_w)


def _explain(error: str) -> str:
    if error.startswith("unshare") and "not permitted" in error:
        return "not enough privilege to create namespaces (run as root): " + error
    if error.startswith("seccomp"):
        return ("this kernel has no seccomp user notification "
                "(need Linux >= 5.5 with CONFIG_SECCOMP_FILTER): " + error)
    return error


def terminal_foreground_restore() -> None:
    """Take the terminal's foreground back after the program (it had its own group)."""
    try:
        if os.isatty(0):
            old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            try:
                os.tcsetpgrp(0, os.getpgrp())
            finally:
                signal.signal(signal.SIGTTOU, old)
    except OSError:
        pass
