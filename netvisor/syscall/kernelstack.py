"""A stand-in for NetStack built on the supervisor's own kernel sockets.

It implements the same contract as ``netvisor.netstack.NetStack`` for the
syscall plane (``socket()``, ``await wait(sock, events)``, ``kick()``; sockets
follow ``netvisor.tcpip.api.Socket``: Linux semantics, never block, errors as
``NetError(errno)``), so the trapping machinery can be tested against the
reference behaviour: the kernel itself. The sandboxed program's calls are
then served by real sockets in the supervisor's network namespace.
It is also ``netvisor run --stack=kernel`` (a debugging aid, not isolation).
"""

from __future__ import annotations

import select
import socket
from typing import Any

import trio

from netvisor.tcpip.errors import NetError

SockAddr = tuple[Any, ...]


def _net(e: OSError) -> NetError:
    return NetError(e.errno or 0, e.strerror or "")


class KernelSocket:
    """``api.Socket`` over a non-blocking kernel socket."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._s = sock
        self.family = sock.family
        self.type = sock.type & 0xF
        self.protocol = sock.proto
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN | select.POLLOUT | select.POLLRDHUP)

    def fileno(self) -> int:
        return self._s.fileno()

    def bind(self, addr: SockAddr) -> None:
        try:
            self._s.bind(addr)
        except OSError as e:
            raise _net(e) from None

    def listen(self, backlog: int) -> None:
        try:
            self._s.listen(backlog)
        except OSError as e:
            raise _net(e) from None

    def connect(self, addr: SockAddr) -> None:
        try:
            self._s.connect(addr)
        except OSError as e:
            raise _net(e) from None

    def accept(self) -> tuple[KernelSocket, SockAddr]:
        try:
            s, addr = self._s.accept()
        except OSError as e:
            raise _net(e) from None
        return KernelSocket(s), addr

    def send(self, data: bytes | memoryview, flags: int = 0) -> int:
        try:
            return self._s.send(data, flags | socket.MSG_NOSIGNAL)
        except OSError as e:
            raise _net(e) from None

    def sendto(self, data: bytes | memoryview, flags: int, addr: SockAddr | None) -> int:
        try:
            if addr is None:
                return self._s.send(data, flags | socket.MSG_NOSIGNAL)
            return self._s.sendto(data, flags | socket.MSG_NOSIGNAL, addr)
        except OSError as e:
            raise _net(e) from None

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        try:
            return self._s.recv(bufsize, flags)
        except OSError as e:
            raise _net(e) from None

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, SockAddr | None]:
        try:
            return self._s.recvfrom(bufsize, flags)
        except OSError as e:
            raise _net(e) from None

    def shutdown(self, how: int) -> None:
        try:
            self._s.shutdown(how)
        except OSError as e:
            raise _net(e) from None

    def close(self) -> None:
        self._s.close()

    def getsockname(self) -> SockAddr:
        try:
            return self._s.getsockname()  # type: ignore[no-any-return]
        except OSError as e:
            raise _net(e) from None

    def getpeername(self) -> SockAddr:
        try:
            return self._s.getpeername()  # type: ignore[no-any-return]
        except OSError as e:
            raise _net(e) from None

    def setsockopt(self, level: int, optname: int, value: bytes) -> None:
        try:
            self._s.setsockopt(level, optname, value)
        except OSError as e:
            raise _net(e) from None

    def getsockopt(self, level: int, optname: int, buflen: int) -> bytes:
        try:
            return self._s.getsockopt(level, optname, max(buflen, 1))
        except OSError as e:
            raise _net(e) from None

    def poll(self) -> int:
        if self._s.fileno() < 0:
            return select.POLLNVAL
        r = self._poll.poll(0)
        return r[0][1] if r else 0


class KernelStack:
    """The provider: kernel sockets of the current network namespace."""

    def socket(self, family: int, type: int, proto: int = 0) -> KernelSocket:
        try:
            return KernelSocket(socket.socket(family, type, proto))
        except OSError as e:
            raise _net(e) from None

    async def wait(self, sock: KernelSocket, events: int) -> int:
        """Wait until ``sock.poll()`` has one of ``events`` (or ERR/HUP)."""
        mask = events | select.POLLERR | select.POLLHUP | select.POLLNVAL
        while True:
            r = sock.poll() & mask
            if r:
                return r
            if events & select.POLLIN and events & select.POLLOUT:
                async with trio.open_nursery() as n:
                    async def rd() -> None:
                        await trio.lowlevel.wait_readable(sock.fileno())
                        n.cancel_scope.cancel()

                    async def wr() -> None:
                        await trio.lowlevel.wait_writable(sock.fileno())
                        n.cancel_scope.cancel()
                    n.start_soon(rd)
                    n.start_soon(wr)
            elif events & select.POLLOUT:
                await trio.lowlevel.wait_writable(sock.fileno())
            else:
                await trio.lowlevel.wait_readable(sock.fileno())

    def kick(self) -> None:
        """Nothing to flush: the kernel sends by itself."""
