"""Open link fds inside another network namespace without moving the process.

A TAP is created in, and an AF_PACKET socket bound in, the network namespace
of the thread that opens it; the fd keeps that namespace for its whole life.
:func:`in_netns` switches only the calling thread (``setns(2)`` on a net
namespace is per thread) and always switches back, so a caller can open a
device in ``/run/netns/NAME`` and keep serving it from the root namespace.
It refuses to run the body if the switch did not happen, so nothing meant for
a test namespace can land in the machine's own namespace by accident.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from typing import Final

CLONE_NEWNET: Final = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def current_netns_inode() -> int:
    """Inode of the calling thread's network namespace (identifies it)."""
    return os.stat("/proc/thread-self/ns/net").st_ino


@contextlib.contextmanager
def in_netns(path: str | None) -> Iterator[None]:
    """Run the body with this thread in the network namespace at ``path``.

    ``path`` is ``/run/netns/NAME``, ``/proc/PID/ns/net`` or None (no switch).
    """
    if path is None:
        yield
        return
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            want = os.fstat(target).st_ino
            _setns(target)
            try:
                if current_netns_inode() != want:
                    raise OSError(f"setns to {path} did not take effect")
                yield
            finally:
                _setns(home)
        finally:
            os.close(home)
    finally:
        os.close(target)
