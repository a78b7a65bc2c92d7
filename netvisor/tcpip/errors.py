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

    __slots__ = ("errno",)

    def __init__(self, code: int, detail: str = "") -> None:
        self.errno = code
        name = _errno.errorcode.get(code, str(code))
        super().__init__(f"{name}: {detail}" if detail else name)


class MalformedPacket(Exception):
    """A received packet is not valid; never leaves the stack's core.

    The receiving layer turns it into a counted drop (see ``DropReason``).
    """


class Truncated(MalformedPacket):
    """A header or a length field points past the end of the buffer."""
