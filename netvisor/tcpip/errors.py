"""Errors of the stack's socket API.

Deliberate departure from gVisor's separate tcpip.Error -> errno table: the
stack's contract is "behave like Linux", so its socket operations fail with
the Linux errno a Linux socket would give, carried by :class:`NetError`. The
syscall plane then only adds what is about processes (EINTR/restart, SIGPIPE).
"""

from __future__ import annotations

import errno as _errno


class NetError(Exception):
    """A socket operation failed with a Linux errno (``errno.EAGAIN``, ...)."""

    __slots__ = ("errno", "detail")

    def __init__(self, code: int, detail: str = "") -> None:
        # The message is made only when asked for: EAGAIN and EINPROGRESS are
        # raised and caught on hot paths (the syscall plane's receive hook,
        # every connect()) and never printed.
        self.errno = code
        self.detail = detail

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno, str(self.errno))
        return f"{name}: {self.detail}" if self.detail else name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class MalformedPacket(Exception):
    """A received packet is not valid; never leaves the stack's core.

    The receiving layer turns it into a counted drop (see ``DropReason``).
    """


class Truncated(MalformedPacket):
    """A header or a length field points past the end of the buffer."""
