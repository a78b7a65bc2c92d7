"""Unit tests for netvisor.syscall.tcp_semantics (no sandbox needed)."""

from __future__ import annotations

import errno
import os
import socket
import struct

import pytest

from netvisor.syscall import tcp_semantics
from netvisor.tcpip.errors import NetError


def test_dead_errors_reported_once_then_zero() -> None:
    dead = tcp_semantics.DeadErrors(limit=2)
    assert not dead
    dead.record(10, errno.ETIMEDOUT)
    assert dead.take(10) == errno.ETIMEDOUT
    assert dead.take(10) == 0          # Linux: sk_err cleared by the first report
    assert dead.take(11) is None       # not a dead socket: the kernel answers


def test_dead_errors_bounded_oldest_dropped() -> None:
    dead = tcp_semantics.DeadErrors(limit=2)
    for ino in (1, 2, 3):
        dead.record(ino, errno.ECONNRESET)
    assert len(dead) == 2
    assert dead.take(1) is None
    assert dead.take(3) == errno.ECONNRESET
    dead.forget(2)
    assert dead.take(2) is None


class _FakeSock:
    def __init__(self, info: bytes | None = None, fail: int = 0) -> None:
        self.info, self.fail = info, fail
        self.opts: list[tuple[int, int, bytes]] = []

    def setsockopt(self, level: int, opt: int, value: bytes) -> None:
        if self.fail:
            raise NetError(self.fail)
        self.opts.append((level, opt, value))

    def getsockopt(self, level: int, opt: int, size: int) -> bytes:
        if self.info is None:
            raise NetError(errno.ENOPROTOOPT)
        return self.info[:size]


def test_abort_on_close_sets_linger_zero() -> None:
    s = _FakeSock()
    tcp_semantics.abort_on_close(s)
    assert s.opts == [(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("<ii", 1, 0))]
    tcp_semantics.abort_on_close(_FakeSock(fail=errno.EBADF))   # closed: no error


def test_accept_queue_len_from_tcp_info() -> None:
    info = bytes(8) + struct.pack("<IIIIII", 0, 0, 0, 0, 3, 5) + bytes(80)
    assert tcp_semantics.accept_queue_len(_FakeSock(info)) == 3
    assert tcp_semantics.accept_queue_len(_FakeSock(None)) is None
    assert tcp_semantics.accept_queue_len(_FakeSock(b"\0" * 8)) is None


def test_bound_pair_limits_unread_bytes() -> None:
    sup, prog = socket.socketpair()
    try:
        sup.setblocking(False)
        assert tcp_semantics.bound_pair(sup, struct.pack("<i", 1)) == 1
        queued = 0
        with pytest.raises(BlockingIOError):
            for _ in range(10000):
                queued += sup.send(b"x" * 500)
        # The kernel's minimum send buffer (a few KiB), not the default ~200 KiB.
        assert 0 < queued < 16384
        assert tcp_semantics.bound_pair(sup, b"\0") == 0
    finally:
        sup.close()
        prog.close()


def test_still_open() -> None:
    a, b = socket.socketpair()
    try:
        ino = os.fstat(a.fileno()).st_ino
        assert tcp_semantics.still_open((os.getpid(), a.fileno()), ino)
        assert not tcp_semantics.still_open((os.getpid(), b.fileno()), ino)
    finally:
        a.close()
        b.close()


def test_dead_errors_remember_whether_the_pair_reports_it() -> None:
    d = tcp_semantics.DeadErrors(limit=2)
    d.record(1, 104)
    d.record(2, 32, in_pair=False)
    assert d.in_pair(1) and not d.in_pair(2)
    d.record(3, 110, in_pair=False)          # evicts 1
    assert d.take(1) is None and not d.in_pair(3)
    d.record(3, 110)                          # recorded again, carried this time
    assert d.in_pair(3) and d.take(3) == 110 and d.take(3) == 0
    d.forget(2)
    assert d.in_pair(2) and d.take(2) is None


def test_closed_placeholders_found_by_owner_then_by_scan() -> None:
    from types import SimpleNamespace
    netns = os.stat("/proc/self/ns/net").st_ino
    kept = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    moved = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    gone = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        def es(s: socket.socket, fd: int) -> SimpleNamespace:
            return SimpleNamespace(owner=(os.getpid(), fd), ino=os.fstat(s.fileno()).st_ino)
        a = es(kept, kept.fileno())
        # Last seen through an fd that is closed now, but a dup still holds it.
        dup_fd = os.dup(moved.fileno())
        b = es(moved, dup_fd + 1000)
        c = es(gone, gone.fileno())
        gone.close()
        assert tcp_semantics.closed_placeholders([a, b, c], netns) == [c]
        os.close(dup_fd)
        moved.close()
        assert tcp_semantics.closed_placeholders([a, b], netns) == [b]
    finally:
        kept.close()
