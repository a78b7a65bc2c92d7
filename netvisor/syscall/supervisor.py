"""The seccomp supervisor: serves trapped socket calls from a stack.

Model (shared/DESIGN.md, "The syscall plane"): each emulated socket is, for
the program, one end of a kernel ``socketpair`` injected with
SECCOMP_IOCTL_NOTIF_ADDFD; read/write/poll/epoll/close/dup/fork/exec then
work natively, and per-socket tasks pump bytes between the supervisor's end
and the stack's socket. Only calls that need the stack's knowledge trap.

- Identity: the inode of the injected end (``os.stat(/proc/PID/fd/N)``),
  so dup/fork/SCM_RIGHTS keep working; a call on any other fd is answered
  with CONTINUE (the kernel does it).
- Blocking calls (connect, accept, recvfrom with an address) run in their own
  task and leave the notification pending; a watcher checks ID_VALID so that
  a call interrupted by a signal is dropped (the kernel already gave the
  program EINTR or will re-issue the call), and a task checks it again
  itself before it takes data (`_drop_if_interrupted`).
- TCP over an AF_UNIX stream pair: stack EOF -> shutdown(SHUT_WR) of our end
  (EOF for the program); RST -> our end shut for writing, and closed with
  unread data as soon as the program writes (ECONNRESET/EPIPE for it);
  program close -> close of the stack socket (FIN, or RST per Linux rules in
  the stack); program shutdown(SHUT_WR) -> stack shutdown after the data.
- TCP before connect()/listen(): an unconnected AF_UNIX stream socket
  (placeholder), connected in place to a listener of ours at
  connect()/listen() (tcp_semantics.py, "Unconnected sockets").
- Non-blocking connect: the program's end is filled until EAGAIN so that
  POLLOUT does not fire before the handshake completes; exactly that filler
  is drained when it does (shared/notes/syscall-trapping.md).
- Listeners: one token byte in the program's end per connection the
  stack has queued gives POLLIN; the program's accept takes one connection
  from the stack (so listen()'s backlog applies) and consumes a token. A
  connection whose ADDFD fails (call interrupted) goes back to the front of
  a queue of ours, so none is lost.
- Linux close/error semantics the pair cannot carry (SO_ERROR after the
  connection died, RST on close with unread data, the program's SO_RCVBUF
  bounding the pair): ``tcp_semantics.py``.
- UDP over an AF_UNIX SOCK_SEQPACKET pair (keeps datagram boundaries without
  the 10-datagram queue limit of SOCK_DGRAM); source addresses of queued
  datagrams are kept in a FIFO for recvfrom/recvmsg, resynchronised by
  content when the program also read some with plain recv().
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import ipaddress
import logging
import os
import select
import signal
import _socket
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

import trio

from netvisor.syscall import ifreq, memory, sockaddr, tcp_semantics
from netvisor.syscall.seccomp import Listener, Notification, pidfd_getfd
from netvisor.tcpip.errors import NetError

log = logging.getLogger(__name__)

SOCK_TYPE_MASK = 0xF
SOCK_NONBLOCK = os.O_NONBLOCK
SOCK_CLOEXEC = os.O_CLOEXEC
PIDFD_THREAD = os.O_EXCL          # pidfd of a thread, Linux 6.9
SOL_SOCKET = 1
SO_TYPE, SO_ERROR, SO_ACCEPTCONN, SO_PROTOCOL, SO_DOMAIN = 3, 4, 30, 38, 39
SO_RCVTIMEO_OLD, SO_SNDTIMEO_OLD, SO_RCVTIMEO_NEW, SO_SNDTIMEO_NEW = 20, 21, 66, 67
SO_TIMESTAMP_OLD, SO_TIMESTAMPNS_OLD = 29, 35
IPPROTO_IP, IPPROTO_IPV6 = 0, 41
IP_PKTINFO, IP_RECVTTL, IP_TTL, IP_TOS, IP_RECVTOS = 8, 12, 2, 1, 13
IPV6_RECVTCLASS, IPV6_TCLASS = 66, 67
MSG_PEEK, MSG_TRUNC, MSG_DONTWAIT, MSG_CTRUNC, MSG_ERRQUEUE = 2, 0x20, 0x40, 0x8, 0x2000
IP_RECVERR, IPV6_RECVERR, SO_EE_ORIGIN_LOCAL = 11, 25, 1
NETLINK_ROUTE = 0
POLL_HUPMASK = select.POLLHUP | select.POLLERR
# How often a pending blocking call is checked for cancellation by a signal.
PENDING_CHECK_INTERVAL = 0.05
CHUNK = 256 * 1024


class Provider(Protocol):
    """What the supervisor needs from a stack (NetStack's contract)."""

    def socket(self, family: int, type: int, proto: int = 0) -> Any: ...
    async def wait(self, sock: Any, events: int) -> int: ...
    def kick(self) -> None: ...


class Reply(Exception):
    """Raised inside a handler to answer right away (val >= 0 or errno)."""

    def __init__(self, val: int = 0, error: int = 0) -> None:
        self.val = val
        self.error = error


class Continue(Exception):
    """Raised inside a handler: let the kernel run the call (not ours)."""


@dataclass(frozen=True, slots=True)
class RxMeta:
    """What recvmsg's control messages report about one datagram."""

    stamp: float
    dst: Any = None
    ifindex: int = 0
    ttl: int = 0
    tos: int = 0


@dataclass(eq=False)
class EmuSocket:
    """One emulated socket: the stack's socket and our end of the pair."""

    family: int
    type: int
    proto: int
    sock: Any
    sup: socket.socket
    ino: int = 0
    state: str = "fresh"            # fresh connecting connected listening closed
    error: int = 0                  # pending SO_ERROR
    filled: int = 0                 # filler bytes in our end (non-blocking connect)
    paused: bool = False
    resumed: trio.Event = field(default_factory=trio.Event)
    connect_done: trio.Event | None = None
    connect_interrupted: bool = False
    reset: bool = False
    queue: collections.deque[tuple[Any, Any]] = field(default_factory=collections.deque)
    queue_changed: trio.Event = field(default_factory=trio.Event)
    rxq: collections.deque[tuple[Any, bytes, RxMeta]] = field(default_factory=collections.deque)
    cmsg: set[str] = field(default_factory=set)   # requested ancillary data
    owner: tuple[int, int] = (0, 0)               # (tid, fd) last seen using it
    fill_dup: socket.socket | None = None         # program's end while filled
    fill_sndbuf: int = 0
    rx_changed: trio.Event = field(default_factory=trio.Event)
    rcvtimeo: float | None = None
    sndtimeo: float | None = None
    scopes: list[trio.CancelScope] = field(default_factory=list)
    netlink: Any = None
    down_wake: trio.Event | None = None   # set: the receive pump's task must run
    down_pending: bytes = b""             # taken by the fast path, not yet in our end
    down_busy: bool = False               # down_pending waits for room in the pair
    down_out: bool = False                # ... as EPOLLOUT of our end in the pair epoll
    down_eof: bool = False                # the stack's EOF is passed on (SHUT_WR of ours)
    hooked: bool = False                  # a readiness hook of ours is on the stack socket
    up_fd: int = -1                       # our end's fd while in the shared pair epoll
    up_pending: bytes = b""               # taken from the pair, not yet in the stack
    up_blocked: bool = False              # up_pending waits for room in the stack socket
    unread: bool = False                  # the program closed with data unread: RST
    rcvbuf: int = 0                       # the program's SO_RCVBUF (0: never set)
    tokens: int = 0                       # listener: token bytes in the program's end
    shut_rd: bool = False                 # the program's shutdown(SHUT_RD/SHUT_RDWR)
    # TCP before connect()/listen() (and after a failed connect): ``sup`` is
    # our copy of the program's *unconnected* AF_UNIX stream socket
    # (tcp_semantics.py, "Unconnected sockets"), connected in place later.
    placeholder: bool = False
    error_in_pair: bool = True            # a reset shows as ECONNRESET on the program's end
    dead_pair: bool = False               # a failed connect left the pair dead
    connect_waiters: int = 0              # blocking connect() calls waiting

    def wake_queue(self) -> None:
        ev, self.queue_changed = self.queue_changed, trio.Event()
        ev.set()

    def wake_rx(self) -> None:
        ev, self.rx_changed = self.rx_changed, trio.Event()
        ev.set()


def _timeval(raw: bytes) -> float | None:
    """struct timeval (old 16-byte layout) -> seconds, None for 'forever'."""
    if len(raw) < 16:
        raise NetError(errno.EINVAL)
    sec, usec = struct.unpack_from("<qq", raw)
    if usec < 0 or usec >= 1_000_000:
        raise NetError(errno.EDOM)
    if sec < 0:
        return 0.000001  # Linux: negative -> minimal timeout... treated as 0 wait
    t = sec + usec / 1e6
    return None if t == 0 else t


class Supervisor:
    """Serves one sandbox's seccomp listener from a stack."""

    def __init__(self, listener: Listener, provider: Provider, *,
                 debug: TextIO | None = None, netlink: Any = None,
                 interfaces: Callable[[], Any] | None = None) -> None:
        self.listener = listener
        self.stack = provider
        self.debug = debug
        self.netlink = netlink
        self.interfaces = interfaces
        self.socks: dict[int, EmuSocket] = {}
        self.sock_dev = -1
        self.pending: dict[int, trio.CancelScope] = {}
        self.nursery: trio.Nursery | None = None
        self.calls = 0
        self.handlers: dict[str, Callable[[Notification], Any]] = {
            "socket": self._socket, "connect": self._connect, "bind": self._bind,
            "listen": self._listen, "accept": self._accept, "accept4": self._accept,
            "getsockname": self._getsockname, "getpeername": self._getpeername,
            "setsockopt": self._setsockopt, "getsockopt": self._getsockopt,
            "shutdown": self._shutdown, "sendto": self._sendto, "recvfrom": self._recvfrom,
            "sendmsg": self._sendmsg, "recvmsg": self._recvmsg,
            "sendmmsg": self._sendmmsg, "recvmmsg": self._recvmmsg, "ioctl": self._ioctl,
        }
        self._poll = select.poll()
        self._poll.register(listener.fd, select.POLLIN)
        self._hup_ep = select.epoll()
        self._hup_waiters: dict[int, trio.Event] = {}
        # Program -> stack for TCP: one edge-triggered epoll over our ends,
        # registered once per socket, served by one task (:meth:`_watch_pairs`).
        self._pair_ep = select.epoll()
        self._pair_socks: dict[int, EmuSocket] = {}
        self._pair_sndbuf = 0  # default SO_SNDBUF of a fresh pair end (read once)
        self._other_ino = 0   # inode of the last fd _lookup found not emulated (0: no socket)
        self._acc: socket.socket | None = None   # see _acceptor
        self._fd_reserve = self._reserve_fds()
        """Two fds given back for _reap_placeholders' /proc scan (see there)."""
        self._acc_name: Any = None   # its address (a getsockname per connect() less)
        self._sandbox_netns = 0   # inode of the program's network namespace
        # Connections that died (RST, timeout): the program's end inode -> the
        # errno getsockopt(SO_ERROR) still owes it (tcp_semantics.DeadErrors).
        self.dead = tcp_semantics.DeadErrors()

    # ------------------------------------------------------------------ loop
    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        """Serve notifications until cancelled."""
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            nursery.start_soon(self._watch_pending)
            nursery.start_soon(self._watch_hups)
            nursery.start_soon(self._watch_pairs)
            nursery.start_soon(self._watch_placeholders)
            task_status.started()
            fd = self.listener.fd
            while True:
                await trio.lowlevel.wait_readable(fd)
                # Drain with poll(0): one trio wait per batch (notes: 37 -> 16 us).
                while True:
                    ready = self._poll.poll(0)
                    if not ready:
                        break
                    if not ready[0][1] & select.POLLIN:
                        # POLLHUP: no task uses the filter any more (all exited).
                        await trio.sleep_forever()
                    try:
                        n = self.listener.recv()
                    except OSError as e:
                        if e.errno in (errno.ENOENT, errno.EINTR):
                            break  # the caller died before we took it
                        raise
                    self.calls += 1
                    self._dispatch(n)

    def pumping(self) -> bool:
        """After the program's exit: whether a socket's pump still has to move
        what the program wrote into the stack (its sockets close as their
        pumps reach EOF). A socket still connecting holds nothing written
        (its pump is paused until the handshake completes): it is closed here.
        """
        for es in list(self.socks.values()):
            if es.paused or es.placeholder:
                self._teardown(es)   # (a placeholder: nothing written, and its close is not seen)
        return bool(self.socks)

    def _dispatch(self, n: Notification) -> None:
        handler = self.handlers.get(n.name)
        if handler is None:
            self._answer(n, cont=True)
            return
        try:
            result = handler(n)
        except Reply as r:
            self._answer(n, r.val, r.error)
            return
        except Continue:
            self._answer(n, cont=True)
            return
        except NetError as e:
            self._answer(n, 0, e.errno)
            return
        except OSError as e:
            self._answer(n, 0, e.errno or errno.EIO)
            return
        except Exception as e:  # a bug must fail one call, not the sandbox
            self._internal_error(n, e)
            return
        if result is None:
            return  # answered (e.g. with ADDFD) inside
        if isinstance(result, int):
            self._answer(n, result)
            return
        # A coroutine function: a blocking call, served in its own task.
        assert self.nursery is not None
        self.nursery.start_soon(self._run_blocking, n, result)

    async def _run_blocking(self, n: Notification,
                            fn: Callable[[], Awaitable[int | None]]) -> None:
        scope = trio.CancelScope()
        self.pending[n.id] = scope
        try:
            with scope:
                try:
                    val = await fn()
                except Reply as r:
                    self._answer(n, r.val, r.error)
                except NetError as e:
                    self._answer(n, 0, e.errno)
                except OSError as e:
                    self._answer(n, 0, e.errno or errno.EIO)
                except Exception as e:
                    self._internal_error(n, e)
                else:
                    if val is not None:
                        self._answer(n, val)
            if scope.cancelled_caught and self.debug:
                self._log(n, "<interrupted>")
        finally:
            self.pending.pop(n.id, None)

    async def _drop_if_interrupted(self, n: Notification) -> None:
        """End a blocking call's task when a signal interrupted the program's
        call, before it takes data it could no longer hand over.

        `_watch_pending` notices that too, but only every 50 ms: a datagram or
        a send that raced it would be consumed for a call that already
        returned EINTR (or was restarted as a new notification) and be lost
        or sent twice.
        """
        if not self.listener.id_valid(n.id):
            scope = self.pending.get(n.id)
            if scope is not None:
                scope.cancel()
            await trio.lowlevel.checkpoint()

    def _internal_error(self, n: Notification, e: Exception) -> None:
        log.error("netvisor: internal error serving %s: %r", n.name, e,
                  exc_info=self.debug is not None)
        try:
            self._answer(n, 0, errno.EINVAL)
        except OSError:
            pass

    async def _watch_pending(self) -> None:
        while True:
            await trio.sleep(PENDING_CHECK_INTERVAL)
            for nid, scope in list(self.pending.items()):
                if not self.listener.id_valid(nid):
                    scope.cancel()

    def _answer(self, n: Notification, val: int = 0, error: int = 0, *,
                cont: bool = False) -> None:
        if self.debug:
            self._log(n, "CONTINUE" if cont else
                      f"-1 {errno.errorcode.get(error, error)}" if error else str(val))
        self.listener.send(n.id, val, error, cont=cont)

    def _log(self, n: Notification, result: str) -> None:
        assert self.debug is not None
        args = ", ".join(hex(a) if a > 4096 else str(a) for a in n.args[:_NARGS.get(n.name, 6)])
        self.debug.write(f"[{n.pid}] {n.name}({args}) = {result}\n")
        self.debug.flush()

    # --------------------------------------------------------------- helpers
    def _lookup(self, n: Notification, fd: int) -> EmuSocket | None:
        fd = fd & 0xFFFFFFFF
        if fd >= 0x80000000:
            raise Reply(0, errno.EBADF)
        try:
            st = os.stat(f"/proc/{n.pid}/fd/{fd}")
        except FileNotFoundError:
            raise Reply(0, errno.EBADF) from None
        except OSError:
            raise Continue() from None
        es = self.socks.get(st.st_ino)
        if es is not None and st.st_dev == self.sock_dev:
            es.owner = (n.pid, fd)
            return es
        self._other_ino = st.st_ino if st.st_dev == self.sock_dev else 0
        return None

    def _emulated_or_dead(self, n: Notification, fd: int) -> EmuSocket:
        """As :meth:`_emulated`; a connection that died answers its errno once
        (Linux tcp_recvmsg/tcp_sendmsg report sk_err: ETIMEDOUT, EHOSTUNREACH...)."""
        es = self._lookup(n, fd)
        if es is None:
            err = self._take_dead(n, fd)
            if err:
                raise Reply(0, err)
            raise Continue()
        return es

    def _take_dead(self, n: Notification, fd: int) -> int | None:
        """The errno a dead connection (fd ``fd``, not emulated any more) still
        owes the program, once; None: not a dead connection of ours.

        Linux reports sk_err once, to whichever call comes first (recv, send,
        SO_ERROR). Where the program's end carries the reset as ECONNRESET
        (tcp_semantics.DeadErrors), that is the same report: taken here it is
        cleared there too, and already taken there (a plain read) it is not
        owed here any more.
        """
        if not self.dead:
            return None
        ino = self._other_ino
        in_pair = self.dead.in_pair(ino)
        err = self.dead.take(ino)
        if err and in_pair:
            try:
                dup = self._dup_from(n, fd, socket.SOCK_STREAM)
                try:
                    if dup.getsockopt(SOL_SOCKET, SO_ERROR) == 0:
                        err = 0   # the program's read or write had it
                finally:
                    dup.close()
            except OSError:
                pass
        return err

    def _emulated(self, n: Notification, fd: int) -> EmuSocket:
        es = self._lookup(n, fd)
        if es is None:
            raise Continue()
        return es

    @staticmethod
    def _nonblocking(n: Notification, fd: int) -> bool:
        """O_NONBLOCK of the program's open file description (shared by dups)."""
        try:
            h = os.open(f"/proc/{n.pid}/fdinfo/{fd & 0xFFFFFFFF}", os.O_RDONLY)
            try:
                data = os.read(h, 512)
            finally:
                os.close(h)
            i = data.index(b"flags:")
            return bool(int(data[i + 6:data.index(b"\n", i)], 8) & os.O_NONBLOCK)
        except (OSError, ValueError):
            return False

    def _placeholder_nonblocking(self, es: EmuSocket) -> bool | None:
        """O_NONBLOCK of a placeholder the program holds, from our copy: ADDFD
        installed that very open file description, so one fcntl answers what
        :meth:`_nonblocking` reads from procfs (an open, a read, a close and
        the kernel's formatting). None: ask procfs (ptrace injects its own)."""
        if hasattr(self.listener, "inject"):
            return None
        try:
            return bool(fcntl.fcntl(es.sup.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK)
        except (OSError, ValueError):
            return None

    @staticmethod
    def _dup_from(n: Notification, fd: int, kind: int = -1) -> socket.socket:
        """Our own copy of the program's fd (pidfd_getfd); ``kind``, the
        pair's type when known, spares CPython's probing (getsockname,
        getsockopt x2) of the new socket object."""
        try:
            pidfd = os.pidfd_open(n.pid, PIDFD_THREAD)
        except OSError:
            pidfd = os.pidfd_open(n.pid)
        try:
            newfd = pidfd_getfd(pidfd, fd & 0xFFFFFFFF)
        finally:
            os.close(pidfd)
        if kind < 0:
            return socket.socket(fileno=newfd)
        return socket.socket(socket.AF_UNIX, kind, 0, newfd)

    def _guarded(self, n: Notification, fd: int) -> EmuSocket:
        """As :meth:`_emulated` for calls that name addresses (connect, bind,
        listen): a socket of ours that is no longer emulated (a torn-down pair
        end or placeholder) must not CONTINUE, the kernel would resolve
        AF_UNIX names in the supervisor's namespace."""
        es = self._lookup(n, fd)
        if es is None:
            if self._other_ino and self._in_our_netns(n, fd):
                raise Reply(0, errno.EPERM)
            raise Continue()
        return es

    def _retry_in_use(self, fn: Callable[[], Any]) -> Any:
        """``fn()``; on EADDRINUSE once more after reaping closed placeholders
        (their close is not seen at once: tcp_semantics.py)."""
        try:
            return fn()
        except NetError as e:
            if e.errno != errno.EADDRINUSE or not self._reap_placeholders():
                raise
        return fn()

    def _reap_placeholders(self) -> int:
        """Tear down unconnected TCP sockets the program no longer holds.

        The fd reserve is given back for the check: its /proc scan opens two
        directories, and one that could not (our fds all taken by such
        sockets, the case this reaps for) would miss the program's fds and
        take sockets it still holds for closed ones."""
        candidates = [es for es in self.socks.values() if es.placeholder]
        if not candidates:
            return 0
        for fd in self._fd_reserve:
            os.close(fd)
        try:
            gone = tcp_semantics.closed_placeholders(candidates, self._sandbox_netns)
        finally:
            self._fd_reserve = self._reserve_fds()
        for es in gone:
            self._teardown(es)
        return len(gone)

    @staticmethod
    def _reserve_fds() -> list[int]:
        out = []
        with contextlib.suppress(OSError):
            for _ in range(2):
                out.append(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC))
        return out

    async def _watch_placeholders(self) -> None:
        while True:
            await trio.sleep(tcp_semantics.CLOSE_RECHECK)
            self._reap_placeholders()

    def _write_addr(self, n: Notification, addr: Any, family: int,
                    addr_ptr: int, len_ptr: int) -> None:
        """Linux's move_addr_to_user: truncate to *len_ptr, store the full length."""
        if not addr_ptr or not len_ptr:
            return
        have = struct.unpack("<i", memory.read(n.pid, len_ptr, 4))[0]
        if have < 0:
            raise Reply(0, errno.EINVAL)
        raw = _encode(addr, family)
        memory.write_many(n.pid, [(addr_ptr, raw[:have]), (len_ptr, struct.pack("<i", len(raw)))])

    def _new_pair(self, kind: int) -> tuple[socket.socket, socket.socket]:
        # _socket.socketpair: socket.socketpair() validates each new fd with
        # a getsockname (two syscalls per emulated socket for nothing).
        sup, prog = _socket.socketpair(socket.AF_UNIX, kind)
        sup.setblocking(False)
        if self.sock_dev < 0:
            self.sock_dev = os.fstat(prog.fileno()).st_dev
        return sup, prog

    def _new_ends(self, base: int) -> tuple[socket.socket, socket.socket]:
        """(our end, the program's) for a new socket of type ``base``."""
        if base == socket.SOCK_STREAM:
            # Unconnected until connect()/listen(): Linux's unconnected TCP
            # socket as closely as AF_UNIX gives it (tcp_semantics.py).
            prog = self._new_placeholder()
            return prog, prog
        return self._new_pair(socket.SOCK_SEQPACKET)

    def _new_placeholder(self) -> socket.socket:
        prog = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.sock_dev < 0:
            self.sock_dev = os.fstat(prog.fileno()).st_dev
        return prog

    def _acceptor(self) -> socket.socket:
        """Our AF_UNIX listener that placeholders are connected to (in place)."""
        acceptor = getattr(self.listener, "acceptor", None)
        if acceptor is not None:   # ptrace: the program's sockets are in its namespace
            return acceptor(socket.SOCK_STREAM)  # type: ignore[no-any-return]
        if self._acc is None:
            acc = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            acc.bind(f"\0netvisor-{os.getpid()}-{os.urandom(8).hex()}")
            acc.listen(64)
            self._acc = acc
            self._acc_name = acc.getsockname()
        return self._acc

    def _attach(self, es: EmuSocket) -> socket.socket:
        """Connect the program's placeholder, in place, to a new end of ours.

        The program's file stays the same (its fd, dups, O_NONBLOCK and
        epoll registrations made before connect() all keep working: nginx
        adds an upstream socket to epoll before connecting it). Returns our
        copy of the program's end (the caller closes it).
        """
        prog = es.sup
        acc = self._acceptor()
        # (never setblocking() on it: that would change the program's O_NONBLOCK;
        # an AF_UNIX connect to a listener with room completes at once anyway)
        prog.connect(self._acc_name if acc is self._acc else acc.getsockname())
        while True:
            sup, _ = acc.accept()
            # Only we can name it (random abstract name in our namespace, or a
            # 0700 directory); still, pair only with our own connection.
            if struct.unpack("<iII", sup.getsockopt(SOL_SOCKET, socket.SO_PEERCRED, 12))[0] \
                    == os.getpid():
                break
            sup.close()
        sup.setblocking(False)
        if es.rcvbuf:
            tcp_semantics.bound_pair(sup, struct.pack("<i", es.rcvbuf))
        es.sup = sup
        es.placeholder = False
        return prog

    def _wake_writable(self, prog: socket.socket) -> None:
        """Tell the program's pollers that its end, connected in place without
        the filler, is writable now (an edge for EPOLLET registrations made
        before connect(), as Linux's state change gives), then close our copy.

        SO_SNDBUF set (to its own value) runs sk_write_space: an EPOLLOUT wakeup.
        """
        try:
            if not self._pair_sndbuf:
                self._pair_sndbuf = prog.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            prog.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._pair_sndbuf // 2)
        except OSError:
            pass
        finally:
            prog.close()

    def _renew_placeholder(self, n: Notification, es: EmuSocket, fd: int) -> bool:
        """Replace the program's dead pair end by a fresh unconnected placeholder
        at the same fd number (ADDFD_FLAG_SETFD into the pending call ``n``;
        on ptrace, calls run in the stopped thread). False: the call is gone."""
        fd &= 0xFFFFFFFF
        flags = _fd_flags(n.pid, fd)
        replace_fd = getattr(self.listener, "replace_fd", None)
        if replace_fd is not None:   # ptrace: socket() + dup3() + close() in the thread
            try:
                prog, ino = replace_fd(n.id, fd, socket.SOCK_STREAM,
                                       flags & (os.O_NONBLOCK | os.O_CLOEXEC))
            except OSError:
                return False
        else:
            prog = self._new_placeholder()
            if flags & os.O_NONBLOCK:
                prog.setblocking(False)
            try:
                self.listener.addfd(n.id, prog.fileno(), cloexec=bool(flags & os.O_CLOEXEC),
                                    setfd=fd)
            except OSError:
                prog.close()
                return False
            ino = os.fstat(prog.fileno()).st_ino
        self.socks.pop(es.ino, None)
        if es.sup.fileno() >= 0:
            es.sup.close()
        es.sup = prog
        es.ino = ino
        self.socks[es.ino] = es
        es.owner = (n.pid, fd)
        es.placeholder, es.dead_pair = True, False
        return True

    def _install(self, n: Notification, es: EmuSocket, prog: socket.socket, flags: int) -> None:
        """Register ``es`` and inject ``prog`` as the syscall's result (atomic)."""
        if hasattr(self.listener, "inject"):   # ptrace platform: no ADDFD
            kind = prog.type
            prog.close()
            es.sup.close()
            fd, es.sup, es.ino = self.listener.inject(n.id, kind, flags,
                                                      pair=not es.placeholder)
            self.socks[es.ino] = es
            es.owner = (n.pid, fd)
            if self.debug:
                self._log(n, f"{fd} (emulated {_famname(es.family)}/{_typename(es.type)})")
            self._start_tasks(es)
            return
        if flags & SOCK_NONBLOCK:
            prog.setblocking(False)
        es.ino = os.fstat(prog.fileno()).st_ino
        self.socks[es.ino] = es
        try:
            fd = self.listener.addfd(n.id, prog.fileno(), cloexec=bool(flags & SOCK_CLOEXEC),
                                     send=True)
            es.owner = (n.pid, fd)
        except OSError:
            del self.socks[es.ino]
            prog.close()
            raise
        if not es.placeholder:
            prog.close()   # a placeholder's copy is kept: es.sup
        if self.debug:
            self._log(n, f"{fd} (emulated {_famname(es.family)}/{_typename(es.type)})")
        self._start_tasks(es)

    def _start_tasks(self, es: EmuSocket) -> None:
        if es.placeholder:
            return   # no pair yet: tasks start at connect()/listen() (_attach)
        if es.netlink is not None:
            self._spawn_for(es, self._netlink_pump)
            return
        if es.type == socket.SOCK_STREAM:
            self._watch_pair(es)
        else:
            self._spawn_for(es, self._up)
        if es.type == socket.SOCK_DGRAM:
            self._spawn_for(es, self._down_dgram)
        elif es.state == "connected":
            self._start_down(es)

    # -------------------------------------------------------------- socket()
    def _socket(self, n: Notification) -> None:
        family, stype, proto = (a & 0xFFFFFFFF for a in n.args[:3])
        flags = stype & (SOCK_NONBLOCK | SOCK_CLOEXEC)
        base = stype & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)
        if stype & ~(SOCK_NONBLOCK | SOCK_CLOEXEC | SOCK_TYPE_MASK):
            raise Reply(0, errno.EINVAL)
        if family == socket.AF_NETLINK:
            return self._socket_netlink(n, base, proto, flags)
        if base == socket.SOCK_RAW:
            raise Reply(0, errno.EPERM)  # no raw sockets in the sandbox (as without CAP_NET_RAW)
        if base not in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            raise Reply(0, errno.ESOCKTNOSUPPORT)  # inet_create: no protosw for the type
        sock = self.stack.socket(family, base, proto)
        if not self._sandbox_netns:
            with contextlib.suppress(OSError):
                self._sandbox_netns = os.stat(f"/proc/{n.pid}/ns/net").st_ino
        try:
            sup, prog = self._new_ends(base)
        except OSError as e:
            # Our copies of closed unconnected sockets are only reaped every
            # few seconds (tcp_semantics.CLOSE_RECHECK): a program that opens
            # and closes sockets fast would otherwise meet our fd limit.
            if e.errno not in (errno.EMFILE, errno.ENFILE) or not self._reap_placeholders():
                sock.close()
                raise
            try:
                sup, prog = self._new_ends(base)
            except OSError:
                sock.close()
                raise
        es = EmuSocket(family, base, proto or (6 if base == socket.SOCK_STREAM else 17), sock, sup,
                       placeholder=base == socket.SOCK_STREAM)
        try:
            self._install(n, es, prog, flags)
        except OSError:
            sock.close()
            sup.close()
            raise Reply(0, errno.EINTR) from None

    def _socket_netlink(self, n: Notification, base: int, proto: int, flags: int) -> None:
        if proto != NETLINK_ROUTE or self.netlink is None:
            raise Continue()
        if base not in (socket.SOCK_RAW, socket.SOCK_DGRAM):
            raise Reply(0, errno.ESOCKTNOSUPPORT)
        sup, prog = self._new_pair(socket.SOCK_SEQPACKET)
        es = EmuSocket(socket.AF_NETLINK, base, proto, None, sup)
        es.netlink = self.netlink(_ns_pid(n.pid))
        es.state = "netlink"
        try:
            self._install(n, es, prog, flags)
        except OSError:
            sup.close()
            raise Reply(0, errno.EINTR) from None

    # ---------------------------------------------------- per-socket tasks
    def _spawn_for(self, es: EmuSocket, fn: Callable[[EmuSocket], Awaitable[None]]) -> None:
        """Start one of ``es``'s tasks; all are cancelled by its teardown."""
        scope = trio.CancelScope()
        es.scopes.append(scope)

        async def run() -> None:
            try:
                with scope:
                    await fn(es)
            except Exception as e:  # one socket's failure must not end the sandbox
                log.error("netvisor: internal error in %s: %r", fn.__name__, e,
                          exc_info=self.debug is not None)
                self._teardown(es)
            finally:
                es.scopes.remove(scope)
                if fn in (self._up, self._netlink_pump, self._listener_watch) \
                        and not scope.cancelled_caught:
                    self._teardown(es)  # the program closed its last copy
        assert self.nursery is not None
        self.nursery.start_soon(run)

    def _teardown(self, es: EmuSocket) -> None:
        if es.state == "closed":
            return
        es.state = "closed"
        self.socks.pop(es.ino, None)
        if es.hooked:
            self._unhook(es)
        if es.reset and es.error:
            self.dead.record(es.ino, es.error, in_pair=es.error_in_pair)
        if es.sock is not None:
            try:
                if es.unread and not es.reset:
                    tcp_semantics.abort_on_close(es.sock)   # Linux tcp_close: RST
                es.sock.close()
            except NetError:
                pass
            self.stack.kick()
        for s, _ in es.queue:
            tcp_semantics.abort_on_close(s)  # never accepted: RST (inet_csk_listen_stop)
            s.close()
        es.queue.clear()
        self._restore_sndbuf(es)
        for scope in es.scopes:
            scope.cancel()
        self._unwatch_pair(es)
        if es.sup.fileno() >= 0:
            trio.lowlevel.notify_closing(es.sup)
            es.sup.close()

    # ------------------------------------------- program -> stack (TCP)
    def _watch_pair(self, es: EmuSocket) -> None:
        """Serve our end of a TCP pair from the shared epoll (no task per socket).

        Edge-triggered: registered once (epoll_ctl ADD reports data already
        there), each write of the program is a new edge, and
        :meth:`_up_ready` reads until EAGAIN. trio's own wait_readable would
        re-arm its one-shot registration (an epoll_ctl) at every wait and
        need a task per socket.
        """
        fd = es.sup.fileno()
        try:
            self._pair_ep.register(fd, _PAIR_EVENTS)
        except OSError:
            self._spawn_for(es, self._up)
            return
        es.up_fd = fd
        self._pair_socks[fd] = es

    def _unwatch_pair(self, es: EmuSocket) -> None:
        fd, es.up_fd = es.up_fd, -1
        if fd >= 0:
            self._pair_socks.pop(fd, None)
            with contextlib.suppress(OSError, ValueError):
                self._pair_ep.unregister(fd)

    async def _watch_pairs(self) -> None:
        ep = self._pair_ep
        while True:
            await trio.lowlevel.wait_readable(ep.fileno())
            # maxevents bounds the batch (and the buffer CPython allocates
            # per call: 1023 entries by default); the rest stay ready.
            for fd, events in ep.poll(0, 64):
                es = self._pair_socks.get(fd)
                if es is not None:
                    try:
                        if events & select.EPOLLOUT and es.down_out:
                            self._down_room(es)
                        if events & ~select.EPOLLOUT:
                            self._up_ready(es, events)
                    except Exception as e:  # one socket's failure must not end the sandbox
                        log.error("netvisor: internal error in _up_ready: %r", e,
                                  exc_info=self.debug is not None)
                        self._teardown(es)

    def _up_ready(self, es: EmuSocket, events: int = -1) -> None:
        """Our end of a TCP pair is readable: what the program wrote -> the stack.

        The common cases run here, synchronously: data the stack takes at
        once, data on an unconnected socket (dropped, as before), the
        program's close. When the stack's buffer is full the rest waits
        (``up_blocked``) for the socket's readiness hook (:meth:`_up_room`);
        the pair is not read meanwhile, so the program's writes block as
        they would on a full Linux socket. The program's shutdown(SHUT_WR)
        or SHUT_RD goes to the task version (:meth:`_up`), which then keeps
        the socket.

        ``events`` (epoll's, at the time the edge was taken): a read shorter
        than CHUNK took everything written until then, and whatever comes
        later is a new edge; so without HUP/RDHUP/ERR there is no EOF to look
        for and the EAGAIN read is skipped (one syscall per request).
        """
        more = events & (select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR)
        if es.up_fd < 0 or es.paused or es.up_blocked or es.state == "closed":
            return   # a paused socket is re-checked when the filler is drained
        sup = es.sup
        while True:
            try:
                data = sup.recv(CHUNK)
            except BlockingIOError:
                return
            except OSError as e:
                # ECONNRESET: the program closed with data of ours unread.
                es.unread = es.unread or e.errno == errno.ECONNRESET
                data = b""
            if not data:
                # epoll's EPOLLHUP: both directions shut (the program's last
                # close, or its SHUT_RD with ours shut): as _hup() answers.
                hup = (events >= 0 and bool(events & select.EPOLLHUP)) or self._hup(sup)
                if hup and not es.shut_rd:
                    es.unread = es.unread or tcp_semantics.unread_on_close(es)
                    self._teardown(es)   # the program closed its last copy
                    return
                self._up_to_task(es, b"")   # shutdown(SHUT_WR): FIN, wait for close
                return
            if es.reset:
                self._teardown(es)   # writes after RST: ECONNRESET for the program
                return
            if es.state != "connected":
                continue   # Linux: EPIPE on an unconnected socket; dropped here
            view = memoryview(data)
            while view:
                try:
                    sent = es.sock.send(view)
                except NetError as e:
                    if e.errno == errno.EAGAIN:   # the stack's buffer is full
                        if es.hooked:
                            es.up_pending, es.up_blocked = bytes(view), True
                        else:
                            self._up_to_task(es, bytes(view))
                        return
                    self._on_reset(es, e.errno)
                    break
                view = view[sent:]
                self.stack.kick()
            if es.state == "closed" or (len(data) < CHUNK and not more):
                return

    def _up_room(self, es: EmuSocket) -> None:
        """Readiness hook, send side: the stack socket may have room for what
        waits (``up_pending``); then the pair is read again. A bulk upload so
        moves on in the turn that brought the ACKs, without a task switch."""
        view = memoryview(es.up_pending)
        while view:
            try:
                sent = es.sock.send(view)
            except NetError as e:
                if e.errno == errno.EAGAIN:
                    es.up_pending = bytes(view)
                    return
                es.up_pending, es.up_blocked = b"", False
                self._on_reset(es, e.errno)
                self._up_ready(es)   # writes after RST: ECONNRESET for the program
                return
            view = view[sent:]
            self.stack.kick()
        es.up_pending, es.up_blocked = b"", False
        self._up_ready(es)

    def _up_to_task(self, es: EmuSocket, pending: bytes) -> None:
        """Hand our end over to the task version (:meth:`_up`) for good."""
        self._unwatch_pair(es)
        if es.down_out:   # the receive path waited on the pair epoll: a task now
            es.down_out = False
            self._spawn_for(es, self._down_drain)
        es.up_pending = pending
        self._spawn_for(es, self._up)

    async def _up(self, es: EmuSocket) -> None:
        """Program -> stack; also notices the program's close (HUP)."""
        sup = es.sup
        shut_wr_done = False
        if es.up_pending:
            data, es.up_pending = es.up_pending, b""
            await self._send_all(es, data)
        while es.state != "closed":
            if es.paused:
                await es.resumed.wait()
                continue
            await trio.lowlevel.wait_readable(sup)
            if es.paused:
                continue
            try:
                data = sup.recv(CHUNK)
            except BlockingIOError:
                continue
            except OSError as e:
                # ECONNRESET on our end: the program closed its end with data
                # of ours unread (unix_release_sock), so TCP must reset.
                es.unread = es.unread or e.errno == errno.ECONNRESET
                data = b""
            if data == b"" and (es.type == socket.SOCK_STREAM or self._hup(sup)):
                if self._hup(sup) and not es.shut_rd:
                    es.unread = es.unread or tcp_semantics.unread_on_close(es)
                    return  # the program closed its last copy: _teardown
                # The program's shutdown(SHUT_WR): FIN after the data, then wait for close.
                if not shut_wr_done and es.state == "connected":
                    shut_wr_done = True
                    try:
                        es.sock.shutdown(socket.SHUT_WR)
                    except NetError:
                        pass
                    self.stack.kick()
                if es.shut_rd:
                    # After the program's SHUT_RD the pair is shut both ways
                    # (POLLHUP) while the program still holds the socket (and
                    # may set SO_LINGER {1, 0} before its close: RST).
                    await self._wait_close(es)
                else:
                    await self._wait_hup(es)
                return
            if es.reset:
                return  # writes after RST: close ours with unread data -> ECONNRESET
            if es.type == socket.SOCK_STREAM:
                if es.state != "connected":
                    continue  # Linux: EPIPE on an unconnected socket; dropped here
                await self._send_all(es, data)
            else:
                try:
                    es.sock.send(data)
                except NetError:
                    pass  # a datagram that cannot go (EDESTADDRREQ, ...) is dropped
                self.stack.kick()

    @staticmethod
    def _hup(sup: socket.socket) -> bool:
        if sup.fileno() < 0:
            return True
        p = select.poll()
        p.register(sup.fileno(), select.POLLIN)
        r = p.poll(0)
        return bool(r and r[0][1] & select.POLLHUP)

    async def _wait_hup(self, es: EmuSocket) -> None:
        """Wait until the program has closed its end.

        After the program's SHUT_WR our end stays readable (EOF), so trio's
        level-triggered wait would spin; one edge-triggered epoll shared by all
        such sockets reports the later POLLHUP instead.
        """
        fd = es.sup.fileno()
        ev = trio.Event()
        self._hup_waiters[fd] = ev
        try:
            self._hup_ep.register(fd, select.EPOLLHUP | select.EPOLLET)
            if not self._hup(es.sup):
                await ev.wait()
        finally:
            if self._hup_waiters.get(fd) is ev:
                del self._hup_waiters[fd]
                with contextlib.suppress(OSError, ValueError):
                    self._hup_ep.unregister(fd)

    async def _wait_close(self, es: EmuSocket) -> None:
        """Wait until the program closed its end when our end already polls HUP.

        The program's close still wakes our end (unix_release_sock:
        sk_state_change), which the shared edge-triggered epoll reports as a
        new EPOLLHUP; each report, and the start, checks whether the fd the
        program last used still is this socket (a dup elsewhere is not seen:
        the stack socket then closes at that fd's close).
        """
        fd = es.sup.fileno()
        try:
            self._hup_ep.register(fd, select.EPOLLHUP | select.EPOLLET)
            while tcp_semantics.still_open(es.owner, es.ino):
                ev = self._hup_waiters[fd] = trio.Event()
                with trio.move_on_after(tcp_semantics.CLOSE_RECHECK):
                    await ev.wait()
        finally:
            self._hup_waiters.pop(fd, None)
            with contextlib.suppress(OSError, ValueError):
                self._hup_ep.unregister(fd)

    async def _watch_hups(self) -> None:
        while True:
            await trio.lowlevel.wait_readable(self._hup_ep.fileno())
            for fd, events in self._hup_ep.poll(0):
                if events & select.EPOLLHUP:
                    ev = self._hup_waiters.get(fd)
                    if ev is not None:
                        ev.set()

    async def _send_all(self, es: EmuSocket, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = es.sock.send(view)
            except NetError as e:
                if e.errno == errno.EAGAIN:
                    await self.stack.wait(es.sock, select.POLLOUT)
                    continue
                self._on_reset(es, e.errno)
                return
            view = view[sent:]
            self.stack.kick()

    def _on_reset(self, es: EmuSocket, err: int) -> None:
        """The connection is gone (RST, timeout): ECONNRESET for the program.

        An AF_UNIX stream end closed with unread data gives its peer
        ECONNRESET after the data already queued (unix_release_sock), as a
        TCP RST does: so one byte is sent from the program's end (a copy taken
        from the process that last used it) into ours, and ours is closed.
        If no copy can be taken: EOF now and ECONNRESET at the next write.
        """
        if es.reset:
            return
        es.reset = True
        es.error = err
        if es.down_eof:
            # The peer's FIN was passed on (our end shut for writing): Linux's
            # recv() then returns 0, SOCK_DONE being checked before sk_err in
            # tcp_recvmsg, and send() fails with EPIPE+SIGPIPE: the program's
            # end once ours is closed without unread data. (POLLERR, which
            # Linux also shows, is lost; SO_ERROR still answers the errno.)
            es.error_in_pair = False
            self._teardown(es)
            return
        tid, fd = es.owner
        try:
            pidfd = os.pidfd_open(tid, PIDFD_THREAD)
            try:
                dup = os.fstat(newfd := pidfd_getfd(pidfd, fd)) and socket.socket(fileno=newfd)
            finally:
                os.close(pidfd)
            try:
                if os.fstat(dup.fileno()).st_ino == es.ino:
                    dup.send(b"\0", socket.MSG_DONTWAIT)
                    self._teardown(es)
                    return
            finally:
                dup.close()
        except OSError:
            pass
        # No byte could go (the program shut its end for writing, or no copy):
        # the program's end will not report the reset itself.
        es.error_in_pair = False
        try:
            es.sup.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _start_down(self, es: EmuSocket) -> None:
        """Start the stack -> program path of a connected TCP socket.

        With a provider that has readiness hooks (NetStack) it is the hook
        :meth:`_down_ready`, run synchronously in the task whose turn changed
        the socket's readiness: no task per connection, no task switch per
        received segment, EOF and RST passed on in the same turn. A task
        (:meth:`_down_drain`) runs only while the pair is full.
        """
        set_hook = getattr(self.stack, "set_ready_hook", None)
        if set_hook is None:
            self._spawn_for(es, self._down_stream)
            return
        es.hooked = True
        set_hook(es.sock, lambda: self._sock_ready(es))
        self._down_ready(es)   # data queued before the hook (an accepted connection)

    def _sock_ready(self, es: EmuSocket) -> None:
        """Readiness hook of a connected TCP socket: receive side, then send side."""
        self._down_ready(es)
        if es.up_blocked and es.state != "closed":
            self._up_room(es)

    def _unhook(self, es: EmuSocket) -> None:
        es.hooked = False
        set_hook = getattr(self.stack, "set_ready_hook", None)
        if set_hook is not None and es.sock is not None:
            set_hook(es.sock, None)
        if es.up_blocked and es.state != "closed":
            # Nothing will call _up_room any more: the task version waits.
            pending, es.up_pending, es.up_blocked = es.up_pending, b"", False
            self._up_to_task(es, pending)

    def _down_ready(self, es: EmuSocket) -> None:
        """Readiness hook of a connected TCP socket: stack -> our end of the pair.

        Same rules as the task version (:meth:`_down_stream_task`): data into
        the pair; the stack's EOF -> SHUT_WR of our end (EOF for the
        program); then an RST (our writes after the peer's close) still
        reaches the program as ECONNRESET; a fatal error -> ``_on_reset``.
        """
        if es.down_busy or es.state == "closed":
            return
        sock = es.sock
        if es.down_eof:
            revents = sock.poll()
            if revents & select.POLLERR:
                self._unhook(es)
                try:
                    raw = sock.getsockopt(SOL_SOCKET, SO_ERROR, 4)
                    err = struct.unpack("<i", raw[:4])[0]
                except NetError as e:
                    err = e.errno
                self._on_reset(es, err or errno.ECONNRESET)
            elif revents & (select.POLLHUP | select.POLLNVAL):
                self._unhook(es)
            return
        while True:
            try:
                data = sock.recv(CHUNK)
            except NetError as e:
                if e.errno == errno.EAGAIN:
                    return
                self._unhook(es)
                self._on_reset(es, e.errno)
                return
            self.stack.kick()  # the window opened
            if not data:
                try:
                    es.sup.shutdown(socket.SHUT_WR)  # FIN: EOF for the program
                except OSError:
                    pass
                es.down_eof = True
                self._down_ready(es)   # an RST may already be there
                return
            try:
                n = es.sup.send(data)
            except BlockingIOError:
                n = 0
            except OSError:
                es.unread = True   # the program closed before reading this: RST
                self._unhook(es)
                return
            if n < len(data):
                es.down_pending = data[n:]
                es.down_busy = True
                if es.up_fd >= 0 and self._want_room(es, True):
                    es.down_out = True   # the pair epoll reports room: no task
                else:
                    self._spawn_for(es, self._down_drain)
                return

    def _want_room(self, es: EmuSocket, on: bool) -> bool:
        """Add (remove) EPOLLOUT to our end's registration in the pair epoll."""
        try:
            self._pair_ep.modify(es.up_fd, _PAIR_EVENTS | select.EPOLLOUT if on else _PAIR_EVENTS)
        except OSError:
            return False
        return True

    def _down_room(self, es: EmuSocket) -> None:
        """EPOLLOUT of a full pair (a bulk download the program reads slower
        than it arrives): write what the receive hook took, then hand back to
        it. A spawned task per full pair cost more than the transfer's other
        per-turn work (one per ~500 KB)."""
        try:
            n = es.sup.send(es.down_pending)
        except BlockingIOError:
            return   # the next edge
        except OSError:
            n = -1
            es.unread = True   # the program closed with this unread: RST at teardown
        es.down_pending = es.down_pending[n:] if n >= 0 else b""
        if es.down_pending:
            return
        es.down_out = False
        es.down_busy = False
        self._want_room(es, False)
        if n >= 0 and es.state != "closed":
            self._down_ready(es)   # what arrived meanwhile
        elif es.hooked:
            self._unhook(es)

    async def _down_drain(self, es: EmuSocket) -> None:
        """Write what the hook took into a full pair, then hand back to the hook."""
        sup = es.sup
        try:
            while es.down_pending and es.state != "closed":
                try:
                    n = sup.send(es.down_pending)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sup)
                    continue
                except OSError:
                    es.unread = True   # closed with this unread: RST at teardown
                    return
                es.down_pending = es.down_pending[n:]
        finally:
            es.down_busy = False
        if es.state != "closed":
            self._down_ready(es)   # what arrived meanwhile

    async def _down_stream(self, es: EmuSocket) -> None:
        """Stack -> program for a connected TCP socket.

        While this task waits, the NetStack's readiness hook
        (:meth:`_down_fast`) moves arriving data into our end synchronously;
        the task runs only for what the hook leaves (EOF, errors, a full pair).
        """
        set_hook = getattr(self.stack, "set_ready_hook", None)
        if set_hook is not None:
            set_hook(es.sock, lambda: self._down_fast(es))
        try:
            await self._down_stream_task(es, set_hook is not None)
        finally:
            es.down_wake = None
            if set_hook is not None:
                set_hook(es.sock, None)

    def _down_fast(self, es: EmuSocket) -> None:
        """Readiness hook: stack -> our end without a task switch (see _down_stream)."""
        ev = es.down_wake
        if ev is None or ev.is_set():
            return   # the task is running or already woken: it does the work
        sock = es.sock
        revents = sock.poll()
        if revents & (select.POLLERR | select.POLLHUP | select.POLLRDHUP):
            ev.set()
            return
        if not revents & select.POLLIN:
            return
        try:
            data = sock.recv(CHUNK)
        except NetError:
            ev.set()
            return
        if not data:
            ev.set()
            return
        self.stack.kick()  # the window opened
        try:
            n = es.sup.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            es.unread = True   # the program closed before reading this: RST
            ev.set()
            return
        if n < len(data):
            es.down_pending = data[n:]
            ev.set()

    async def _down_stream_task(self, es: EmuSocket, hooked: bool) -> None:
        sock, sup = es.sock, es.sup
        while True:
            if es.down_pending:
                data, es.down_pending = es.down_pending, b""
            else:
                try:
                    data = sock.recv(CHUNK)
                except NetError as e:
                    if e.errno == errno.EAGAIN:
                        if hooked:
                            es.down_wake = trio.Event()
                            await es.down_wake.wait()
                            es.down_wake = None
                        else:
                            await self.stack.wait(sock, select.POLLIN | select.POLLRDHUP)
                        continue
                    self._on_reset(es, e.errno)
                    return
                self.stack.kick()  # the window opened
            if not data:
                try:
                    sup.shutdown(socket.SHUT_WR)  # FIN: EOF for the program
                except OSError:
                    pass
                es.down_eof = True
                # Half-closed: an RST may still come (our writes after the
                # peer closed); it must reach the program as soon as it does.
                while es.state != "closed":
                    revents = await self.stack.wait(sock, 0)
                    if revents & select.POLLERR:
                        try:
                            raw = sock.getsockopt(SOL_SOCKET, SO_ERROR, 4)
                            err = struct.unpack("<i", raw[:4])[0]
                        except NetError as e:
                            err = e.errno
                        self._on_reset(es, err or errno.ECONNRESET)
                        return
                    if revents & (select.POLLHUP | select.POLLNVAL):
                        return
                return
            view = memoryview(data)
            while view and es.state != "closed":
                try:
                    view = view[sup.send(view):]
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sup)
                except OSError:
                    es.unread = True   # closed with this unread: RST at teardown
                    return  # the program closed; _up tears down

    async def _down_dgram(self, es: EmuSocket) -> None:
        """Stack -> program for UDP: datagrams into the pair, sources into rxq."""
        sock, sup = es.sock, es.sup
        recvmsg = getattr(sock, "recvmsg", None)
        while True:
            try:
                # MSG_DONTWAIT: after the program's SHUT_RD a blocking receive
                # returns b"" at once, which is not a datagram.
                if recvmsg is not None:
                    r = recvmsg(65536, MSG_DONTWAIT)
                    data, addr = r.data, r.addr
                    meta = RxMeta(time.time(), getattr(r, "dst", None),
                                  getattr(r, "ifindex", 0), getattr(r, "ttl", 0),
                                  getattr(r, "tos", 0))
                else:
                    data, addr = sock.recvfrom(65536, MSG_DONTWAIT)
                    meta = RxMeta(time.time())
            except NetError as e:
                if e.errno == errno.EAGAIN:
                    if sock.poll() & select.POLLRDHUP:
                        # SHUT_RD: nothing more will be queued (Linux drops
                        # datagrams for a receive-shut socket). EOF for the
                        # program's blocking receives, as Linux answers them.
                        with contextlib.suppress(OSError):
                            sup.shutdown(socket.SHUT_WR)
                        return
                    wait_changed = getattr(self.stack, "wait_changed", None)
                    if wait_changed is not None and getattr(sock, "errq", None) \
                            and not sock.poll() & select.POLLIN:
                        # POLLERR from the error queue alone (read by trapped
                        # recvmsg(MSG_ERRQUEUE)): nothing to pump until it changes.
                        await wait_changed(sock)
                    else:
                        await self.stack.wait(sock, select.POLLIN)
                    continue
                if e.errno == errno.EBADF:
                    return
                es.error = e.errno   # an ICMP error: pending SO_ERROR (sk_err)
                await trio.lowlevel.checkpoint()
                continue
            while es.state != "closed":
                try:
                    sup.send(data)
                    break
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(sup)
                except OSError:
                    return
            es.rxq.append((addr, data, meta))
            if len(es.rxq) > 4096:
                es.rxq.popleft()
            es.wake_rx()

    # ------------------------------------------------------------ bind etc.
    def _read_sockaddr(self, n: Notification, es: EmuSocket, ptr: int, length: int
                       ) -> tuple[int, Any]:
        length = length & 0xFFFFFFFF
        if length > 128 or length >= 0x80000000:
            raise Reply(0, errno.EINVAL)
        if not ptr:
            raise Reply(0, errno.EFAULT if length else errno.EINVAL)
        raw = memory.read(n.pid, ptr, length)
        return sockaddr.decode(raw, es.family)

    def _bind(self, n: Notification) -> int:
        es = self._guarded(n, n.args[0])
        if es.netlink is not None:
            return 0
        fam, addr = self._read_sockaddr(n, es, n.args[1], n.args[2])
        if es.family == socket.AF_INET:
            if fam == socket.AF_UNSPEC and (n.args[2] & 0xFFFFFFFF) >= 16:
                raw = memory.read(n.pid, n.args[1], 8)
                if raw[4:8] != bytes(4):
                    raise Reply(0, errno.EAFNOSUPPORT)
                addr = ("0.0.0.0", struct.unpack_from("!H", raw, 2)[0])
            elif fam != socket.AF_INET:
                raise Reply(0, errno.EAFNOSUPPORT)
        elif fam != socket.AF_INET6:
            raise Reply(0, errno.EINVAL if fam == socket.AF_INET else errno.EAFNOSUPPORT)
        self._retry_in_use(lambda: es.sock.bind(addr))
        return 0

    def _listen(self, n: Notification) -> int:
        es = self._guarded(n, n.args[0])
        if es.type != socket.SOCK_STREAM:
            raise Reply(0, errno.EOPNOTSUPP)
        if es.state not in ("fresh", "listening"):
            raise Reply(0, errno.EINVAL)
        backlog = n.args[1] & 0xFFFFFFFF
        if backlog >= 0x80000000:
            backlog = 0
        if es.dead_pair and not self._renew_placeholder(n, es, n.args[0]):
            raise Reply(0, errno.EINVAL)   # the call vanished meanwhile
        self._retry_in_use(lambda: es.sock.listen(min(backlog, 4096)))
        if es.state == "fresh":
            es.state = "listening"
            if es.placeholder:
                self._fill_listener(self._attach(es))
                self._spawn_for(es, self._listener_watch)
            else:
                self._spawn_for(es, self._up)
            self._spawn_for(es, self._accept_loop)
        return 0

    def _stop_listening(self, n: Notification, es: EmuSocket, how: int) -> None:
        """shutdown(SHUT_RD/SHUT_RDWR) of a listener: Linux's inet_shutdown
        disconnects it (inet_csk_listen_stop): queued connections are reset,
        blocked accept() calls fail with EINVAL, the socket is unconnected
        again (polls OUT|HUP; on ptrace, which cannot replace the fd, the
        dead end polls OUT|IN|HUP|RDHUP) and may listen() anew."""
        try:
            prog = self._dup_from(n, n.args[0], socket.SOCK_STREAM)
        except OSError:
            return
        with contextlib.suppress(NetError):
            es.sock.shutdown(how)
        self.stack.kick()
        for conn, _ in es.queue:
            tcp_semantics.abort_on_close(conn)
            conn.close()
        es.queue.clear()
        es.state = "fresh"
        for scope in list(es.scopes):   # _listener_watch, _accept_loop
            scope.cancel()
        # Our end closed without unread data (the filler drained first):
        # the program's end shows EOF and HUP, no error.
        with contextlib.suppress(OSError):
            while es.sup.recv(CHUNK, socket.MSG_DONTWAIT):
                pass
        self._wait_closing(es.sup)
        es.sup = prog
        es.tokens = 0
        es.placeholder, es.dead_pair = True, True
        # Linux's tcp_disconnect leaves it as fresh (poll OUT|HUP): a new
        # placeholder at the same fd where possible (seccomp).
        self._renew_placeholder(n, es, n.args[0])
        es.wake_queue()

    def _wait_closing(self, sup: socket.socket) -> None:
        if sup.fileno() >= 0:
            trio.lowlevel.notify_closing(sup)
            sup.close()

    @staticmethod
    def _fill_listener(prog: socket.socket) -> None:
        """Linux's listener polls 0 until a connection is queued (POLLIN), never
        POLLOUT: the program's end is filled once (our end never reads it) so
        it is not writable; token bytes then give POLLIN (_listener_ready)."""
        try:
            prog.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
            chunk = bytes(4096)
            while True:
                try:
                    prog.send(chunk, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    try:
                        prog.send(chunk[:256], socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        break
        except OSError:
            pass
        finally:
            prog.close()

    async def _listener_watch(self, es: EmuSocket) -> None:
        """A listener's close by the program (our end, full of filler, polls HUP)."""
        await self._wait_hup(es)

    async def _accept_loop(self, es: EmuSocket) -> None:
        """One token byte in the program's end per connection the stack has queued.

        The stack's accept queue stays the program's accept queue (its
        listen() backlog applies, as on Linux): connections are taken from
        it only by the program's trapped accept(). The readiness hook runs
        at every arrival (and accept); without hooks (another provider) the
        connections are taken eagerly instead.
        """
        set_hook = getattr(self.stack, "set_ready_hook", None)
        if set_hook is not None:
            set_hook(es.sock, lambda: self._listener_ready(es))
            try:
                self._listener_ready(es)
                await trio.sleep_forever()
            finally:
                set_hook(es.sock, None)
        while True:
            try:
                conn, addr = es.sock.accept()
            except NetError as e:
                if e.errno == errno.EAGAIN:
                    await self.stack.wait(es.sock, select.POLLIN)
                    continue
                if e.errno == errno.EBADF:
                    return
                await trio.sleep(0.01)
                continue
            es.queue.append((conn, addr))
            try:
                es.sup.send(b"\0")
                es.tokens += 1
            except OSError:
                pass
            es.wake_queue()

    def _listener_ready(self, es: EmuSocket) -> None:
        """Readiness hook of a listener: top the tokens up to the queued connections."""
        if es.state != "listening":
            return
        qlen = tcp_semantics.accept_queue_len(es.sock)
        if qlen is None:
            return
        missing = qlen + len(es.queue) - es.tokens
        if missing > 0:
            try:
                es.tokens += es.sup.send(b"\0" * missing)
            except OSError:
                pass
        es.wake_queue()

    def _pull(self, es: EmuSocket) -> bool:
        """Whether a connection is ready for the program's accept (taken from the stack)."""
        if es.queue:
            return True
        try:
            es.queue.append(es.sock.accept())
        except NetError:
            return False
        self.stack.kick()
        return True

    def _accept(self, n: Notification) -> Callable[[], Awaitable[None]] | None:
        es = self._emulated(n, n.args[0])
        flags = (n.args[3] & 0xFFFFFFFF) if n.name == "accept4" else 0
        if flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC):
            raise Reply(0, errno.EINVAL)
        if es.state != "listening":
            raise Reply(0, errno.EINVAL)
        if self._pull(es):
            self._deliver(n, es, flags)
            return None
        for _ in range(es.tokens):   # a queued connection vanished (reset): drop its token
            self._consume_token(n, es)
        if self._nonblocking(n, n.args[0]):
            raise Reply(0, errno.EAGAIN)

        async def wait() -> None:
            with trio.move_on_after(es.rcvtimeo if es.rcvtimeo is not None else float("inf")) \
                    as timeout:
                while not self._pull(es):
                    await es.queue_changed.wait()
                    if es.state == "closed":
                        raise Reply(0, errno.EBADF)
                    if es.state != "listening":
                        raise Reply(0, errno.EINVAL)   # shutdown() of the listener
            if timeout.cancelled_caught:
                raise Reply(0, errno.EAGAIN)
            self._deliver(n, es, flags)
        return wait

    def _deliver(self, n: Notification, es: EmuSocket, flags: int) -> None:
        conn, addr = es.queue.popleft()
        try:
            if n.args[1]:
                self._write_addr(n, addr, es.family, n.args[1], n.args[2])
        except OSError:
            es.queue.appendleft((conn, addr))
            raise Reply(0, errno.EFAULT) from None
        sup, prog = self._new_pair(socket.SOCK_STREAM)
        child = EmuSocket(es.family, es.type, es.proto, conn, sup, state="connected")
        if es.rcvbuf:   # SO_RCVBUF is inherited from the listener
            child.rcvbuf = tcp_semantics.bound_pair(sup, struct.pack("<i", es.rcvbuf))
        try:
            self._install(n, child, prog, flags)
        except OSError:
            sup.close()
            es.queue.appendleft((conn, addr))  # interrupted: not lost
            return
        self._consume_token(n, es)

    def _consume_token(self, n: Notification, es: EmuSocket) -> None:
        try:
            dup = self._dup_from(n, n.args[0], socket.SOCK_STREAM)
        except OSError:
            return
        try:
            if dup.recv(1, socket.MSG_DONTWAIT):
                es.tokens -= 1
        except OSError:
            es.tokens = 0   # none left in the program's end
        finally:
            dup.close()

    # --------------------------------------------------------------- connect
    def _connect(self, n: Notification) -> Callable[[], Awaitable[int]] | int:
        es = self._guarded(n, n.args[0])
        if es.netlink is not None:
            return 0
        fam, addr = self._read_sockaddr(n, es, n.args[1], n.args[2])
        if es.type == socket.SOCK_DGRAM:
            if fam == socket.AF_UNSPEC:
                try:
                    es.sock.connect(None)
                except (NetError, TypeError):
                    pass
                return 0
            es.sock.connect(addr)
            self.stack.kick()
            return 0
        if es.state == "connected":
            if es.connect_interrupted:
                es.connect_interrupted = False
                return 0
            raise Reply(0, errno.EISCONN)
        if es.state == "listening":
            raise Reply(0, errno.EISCONN)  # as Linux answers (measured)
        if es.state == "connecting":
            if self._nonblocking(n, n.args[0]):
                raise Reply(0, errno.EALREADY)
            return self._wait_connect(n, es, addr, errno.EALREADY)
        if fam not in (socket.AF_INET, socket.AF_INET6) and fam != es.family:
            raise Reply(0, errno.EAFNOSUPPORT)
        if es.family == socket.AF_INET and fam != socket.AF_INET:
            raise Reply(0, errno.EAFNOSUPPORT)
        if es.state == "fresh" and es.connect_interrupted:
            # A completed-with-error connect nobody collected: Linux reports it
            # to the next connect() (sock_error in __inet_stream_connect).
            es.connect_interrupted = False
            err, es.error = es.error, 0
            if err:
                raise Reply(0, err)
        if es.error and es.state == "fresh":
            es.error = 0
        if es.dead_pair and not self._renew_placeholder(n, es, n.args[0]):
            raise Reply(0, errno.ECONNABORTED)   # the call vanished meanwhile
        nonblock = self._placeholder_nonblocking(es) if es.placeholder else None
        if nonblock is None:
            nonblock = self._nonblocking(n, n.args[0])
        try:
            es.sock.connect(addr)
        except NetError as e:
            if e.errno != errno.EINPROGRESS:
                raise    # refused before any packet: the socket stays unconnected
        else:
            self.stack.kick()
            if es.placeholder:
                self._wake_writable(self._attach(es))
                self._watch_pair(es)
            self._connected(es)
            return 0
        self.stack.kick()
        es.state = "connecting"
        es.connect_done = trio.Event()
        prog: socket.socket | None = None
        if es.placeholder:   # the pair exists from now on (filled below)
            prog = self._attach(es)
            self._watch_pair(es)
        poll_links = getattr(self.stack, "poll_links", None)
        if poll_links is not None:
            # A peer behind the TAP (the kernel) answers the SYN inside our
            # write(): its SYN-ACK or RST is already queued. Taken now, the
            # handshake is settled before the answer: no filler, no waiting.
            poll_links()
            if es.state == "connecting" and \
                    es.sock.poll() & (select.POLLOUT | select.POLLERR | select.POLLHUP):
                if prog is not None:
                    self._wake_writable(prog)
                es.connect_waiters += not nonblock   # a blocking call collects a failure
                try:
                    self._connect_finish(es)
                finally:
                    es.connect_waiters -= not nonblock
                if nonblock:
                    raise Reply(0, errno.EINPROGRESS)   # as Linux, even when done
                es.connect_interrupted = False
                if es.state == "connected":
                    return 0
                err, es.error = es.error, 0
                with contextlib.suppress(NetError):   # as in _wait_connect
                    es.sock.connect(addr)
                if es.dead_pair:
                    self._renew_placeholder(n, es, n.args[0])
                raise Reply(0, err or errno.ECONNREFUSED)
        # Hold POLLOUT back until the handshake completes. Also for a blocking
        # connect: a signal may interrupt it, and then the program polls for
        # POLLOUT (CPython does) before the supervisor can notice the EINTR.
        try:
            self._fill(n, es, prog if prog is not None
                       else self._dup_from(n, n.args[0], socket.SOCK_STREAM))
        except OSError:
            pass   # no copy (the caller is gone): POLLOUT shows early
        set_hook = getattr(self.stack, "set_ready_hook", None)
        if set_hook is not None:
            # The handshake's outcome is seen in the turn that brings it:
            # no watcher task (a spawn and a task switch per connection).
            es.hooked = True
            set_hook(es.sock, lambda: self._connect_ready(es))
        else:
            self._spawn_for(es, self._connect_watch)
        if nonblock:
            raise Reply(0, errno.EINPROGRESS)
        return self._wait_connect(n, es, addr)

    def _fill(self, n: Notification, es: EmuSocket, dup: socket.socket | None) -> None:
        """Fill the program's end (``dup``, our copy, kept while filled) so
        POLLOUT waits for the handshake (notes)."""
        if dup is None:
            return
        es.paused = True
        es.resumed = trio.Event()
        # Shrink the program end's send buffer first so that a few KB fill it
        # (233 KB with the default: 72 -> 10 us per connect, measured); the
        # copy is kept until the handshake completes to put the size back.
        # Nobody but us sets the program end's SO_SNDBUF (the program's
        # setsockopt goes to the stack socket): the first one read is the
        # pairs' default.
        try:
            if not self._pair_sndbuf:
                self._pair_sndbuf = dup.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            es.fill_sndbuf = self._pair_sndbuf
            dup.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
            es.fill_dup = dup
        except OSError:
            dup.close()
            return
        chunk = bytes(4096)
        try:
            while True:
                try:
                    es.filled += dup.send(chunk, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    try:
                        es.filled += dup.send(chunk[:256], socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        break
        except OSError:
            pass

    def _wait_connect(self, n: Notification, es: EmuSocket, addr: Any,
                      expired: int = errno.EINPROGRESS) -> Callable[[], Awaitable[int]]:
        """A blocking connect's wait; ``expired`` answers when SO_SNDTIMEO runs
        out (Linux __inet_stream_connect: EINPROGRESS for the connect that
        sent the SYN, EALREADY for a later one that waited on it)."""
        es.connect_waiters += 1   # now: the handshake may fail before wait() runs

        async def wait() -> int:
            done = es.connect_done
            assert done is not None
            try:
                with trio.move_on_after(es.sndtimeo if es.sndtimeo is not None
                                        else float("inf")):
                    await done.wait()
                    es.connect_interrupted = False
                    if es.state == "connected":
                        return 0
                    err, es.error = es.error, 0
                    # Linux: a blocking connect that failed leaves the socket
                    # unconnected again (sock_error in __inet_stream_connect,
                    # then tcp_disconnect): ENOTCONN, EPIPE, connect() anew.
                    # The stack's socket learns it as a connect() call would.
                    with contextlib.suppress(NetError):
                        es.sock.connect(addr)
                    es.connect_interrupted = False
                    if es.dead_pair:
                        self._renew_placeholder(n, es, n.args[0])   # else: EOF, EPIPE
                    raise Reply(0, err or errno.ECONNREFUSED)
                raise Reply(0, expired)  # SO_SNDTIMEO expired
            finally:
                es.connect_waiters -= 1
        return wait

    def _connect_ready(self, es: EmuSocket) -> None:
        """Readiness hook while connecting: finish when the handshake has an outcome."""
        if es.state != "connecting":
            return
        if not es.sock.poll() & (select.POLLOUT | select.POLLERR | select.POLLHUP):
            return
        self._unhook(es)
        self._connect_finish(es)

    async def _connect_watch(self, es: EmuSocket) -> None:
        await self.stack.wait(es.sock, select.POLLOUT)
        self._connect_finish(es)

    def _connect_finish(self, es: EmuSocket) -> None:
        """The handshake completed or failed: connected (or the pending
        error), the filler drained so POLLOUT fires, waiters woken."""
        try:
            err = struct.unpack("<i", es.sock.getsockopt(SOL_SOCKET, SO_ERROR, 4)[:4])[0]
        except NetError as e:
            err = e.errno
        # Until a connect() call collects the outcome, the next one answers it
        # (0 after a completed non-blocking connect, as Linux does).
        es.connect_interrupted = True
        if err == 0:
            self._connected(es)
            self._drain_filler(es)
        else:
            es.error = err
            es.state = "fresh"
            self._fail_pair(es, unread=not es.connect_waiters)
        assert es.connect_done is not None
        es.connect_done.set()

    def _fail_pair(self, es: EmuSocket, *, unread: bool) -> None:
        """A connect failed: close our end of the pair, keep a copy of the program's.

        With ``unread`` (a non-blocking connect: nobody collects the error
        yet) the filler stays unread, so the program's end reports an error
        as Linux's socket does after a failed connect: poll IN|OUT|ERR|HUP|
        RDHUP, then recv() ECONNRESET once (Linux: the connect's errno), 0
        after; send() EPIPE (+SIGPIPE). Without it (a blocking connect, when
        the end cannot be replaced): EOF and EPIPE. SO_ERROR answers the
        real errno and clears the pair's (see _getsockopt).
        """
        if not unread:
            self._drain_filler(es)
        prog, es.fill_dup = es.fill_dup, None
        if prog is None:
            try:
                prog = _dup_fd(*es.owner)
            except OSError:
                prog = None
        if unread and not es.filled and prog is not None:
            # No filler (the handshake settled at once): one byte makes the close
            # an error for the program's end, as the filler would.
            with contextlib.suppress(OSError):
                prog.send(b"\0", socket.MSG_DONTWAIT)
        es.filled = 0
        self._unwatch_pair(es)
        if es.sup.fileno() >= 0:
            trio.lowlevel.notify_closing(es.sup)
            es.sup.close()
        if prog is not None:
            es.sup = prog
            es.placeholder, es.dead_pair = True, True
        es.paused = False
        es.resumed.set()

    def _drain_filler(self, es: EmuSocket) -> None:
        was_paused = es.paused
        while es.filled > 0:
            try:
                got = es.sup.recv(min(es.filled, CHUNK))
            except OSError:
                break
            if not got:
                break
            es.filled -= len(got)
        es.filled = 0
        self._restore_sndbuf(es)
        es.paused = False
        es.resumed.set()
        if was_paused and es.up_fd >= 0:
            self._up_ready(es)   # edges that came while paused were ignored

    @staticmethod
    def _restore_sndbuf(es: EmuSocket) -> None:
        dup, es.fill_dup = es.fill_dup, None
        if dup is not None:
            try:  # setsockopt doubles the value it is given; getsockopt showed the double
                dup.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, es.fill_sndbuf // 2)
            except OSError:
                pass
            dup.close()

    def _connected(self, es: EmuSocket) -> None:
        es.state = "connected"
        self._start_down(es)

    # ------------------------------------------------------- names, options
    def _getsockname(self, n: Notification) -> int:
        es = self._emulated(n, n.args[0])
        if es.netlink is not None:
            raw = struct.pack("<HHII", socket.AF_NETLINK, 0, es.netlink.pid, 0)
            have = struct.unpack("<i", memory.read(n.pid, n.args[2], 4))[0]
            memory.write(n.pid, n.args[1], raw[:max(have, 0)])
            memory.write(n.pid, n.args[2], struct.pack("<i", len(raw)))
            return 0
        self._write_addr(n, es.sock.getsockname(), es.family, n.args[1], n.args[2])
        return 0

    def _getpeername(self, n: Notification) -> int:
        es = self._emulated(n, n.args[0])
        if es.netlink is not None:
            raise Continue()
        self._write_addr(n, es.sock.getpeername(), es.family, n.args[1], n.args[2])
        return 0

    def _setsockopt(self, n: Notification) -> int:
        es = self._emulated(n, n.args[0])
        level, opt = n.args[1] & 0xFFFFFFFF, n.args[2] & 0xFFFFFFFF
        optlen = n.args[4] & 0xFFFFFFFF
        if optlen >= 0x80000000:
            raise Reply(0, errno.EINVAL)
        value = memory.read(n.pid, n.args[3], min(optlen, 4096)) if n.args[3] else b""
        if es.netlink is not None:
            return 0
        if level == SOL_SOCKET:
            if opt in (SO_RCVTIMEO_OLD, SO_SNDTIMEO_OLD, SO_RCVTIMEO_NEW, SO_SNDTIMEO_NEW):
                t = _timeval(value)
                if opt in (SO_RCVTIMEO_OLD, SO_RCVTIMEO_NEW):
                    es.rcvtimeo = t
                else:
                    es.sndtimeo = t
                self._kernel_setsockopt(n, level, opt, value)
                return 0
        on = len(value) >= 4 and struct.unpack_from("<i", value)[0] != 0
        key = _CMSG_OPTS.get((level, opt))
        if key is not None:
            if len(value) < 1:
                raise Reply(0, errno.EINVAL)
            if on:
                es.cmsg.add(key)
            else:
                es.cmsg.discard(key)
            try:
                es.sock.setsockopt(level, opt, value)
            except NetError as e:
                if e.errno != errno.ENOPROTOOPT:
                    raise
            return 0   # the supervisor writes these control messages itself
        es.sock.setsockopt(level, opt, value)
        if (level, opt) == (SOL_SOCKET, socket.SO_RCVBUF) and es.type == socket.SOCK_STREAM:
            if es.placeholder:   # no pair yet: applied by _attach
                es.rcvbuf = max(1, struct.unpack_from("<i", value)[0]) if len(value) >= 4 else 0
            else:
                es.rcvbuf = tcp_semantics.bound_pair(es.sup, value)
        self.stack.kick()
        return 0

    def _kernel_setsockopt(self, n: Notification, level: int, opt: int, value: bytes) -> None:
        """Mirror a timeout onto the program's end: its own read()/write() then
        time out as Linux's would (the data plane is the pair)."""
        try:
            dup = self._dup_from(n, n.args[0])
        except OSError:
            return
        try:
            dup.setsockopt(level, opt, value)
        except OSError:
            pass
        finally:
            dup.close()

    def _getsockopt(self, n: Notification) -> int:
        level, opt = n.args[1] & 0xFFFFFFFF, n.args[2] & 0xFFFFFFFF
        ptr, len_ptr = n.args[3], n.args[4]
        es = self._lookup(n, n.args[0])
        if es is None:
            err = self._take_dead(n, n.args[0]) \
                if (level, opt) == (SOL_SOCKET, SO_ERROR) and self.dead else None
            if err is None:
                raise Continue()
            have = struct.unpack("<i", memory.read(n.pid, len_ptr, 4))[0]
            value = struct.pack("<i", err)[:max(have, 0)]
            memory.write(n.pid, ptr, value)
            memory.write(n.pid, len_ptr, struct.pack("<i", len(value)))
            return 0
        have = struct.unpack("<i", memory.read(n.pid, len_ptr, 4))[0]
        if have < 0:
            raise Reply(0, errno.EINVAL)
        value: bytes
        if es.netlink is not None:
            raise Continue()
        if level == SOL_SOCKET and opt == SO_ERROR:
            err = es.error
            es.error = 0
            if es.dead_pair:
                # The program's end reports ECONNRESET until a read, write or
                # this clears it; Linux's recv()/send() report and clear sk_err
                # (sock_error) too: already cleared means already reported.
                try:
                    if es.sup.getsockopt(SOL_SOCKET, SO_ERROR) == 0:
                        err = 0
                except OSError:
                    pass
            if not err:
                try:
                    raw = es.sock.getsockopt(level, opt, 4)
                    err = struct.unpack("<i", raw[:4])[0]
                except NetError:
                    err = 0
            value = struct.pack("<i", err)
        elif level == SOL_SOCKET and opt == SO_TYPE:
            value = struct.pack("<i", es.type)
        elif level == SOL_SOCKET and opt == SO_DOMAIN:
            value = struct.pack("<i", es.family)
        elif level == SOL_SOCKET and opt == SO_PROTOCOL:
            value = struct.pack("<i", es.proto)
        elif level == SOL_SOCKET and opt == SO_ACCEPTCONN:
            value = struct.pack("<i", int(es.state == "listening"))
        elif level == SOL_SOCKET and opt in (SO_RCVTIMEO_OLD, SO_SNDTIMEO_OLD):
            t = es.rcvtimeo if opt == SO_RCVTIMEO_OLD else es.sndtimeo
            t = t or 0.0
            value = struct.pack("<qq", int(t), int(round((t - int(t)) * 1e6)))
        elif (level, opt) in _CMSG_OPTS:
            value = struct.pack("<i", int(_CMSG_OPTS[(level, opt)] in es.cmsg))
        else:
            value = es.sock.getsockopt(level, opt, have)
        value = value[:have]
        memory.write_many(n.pid, [(ptr, value), (len_ptr, struct.pack("<i", len(value)))])
        return 0

    def _shutdown(self, n: Notification) -> int:
        es = self._emulated(n, n.args[0])
        how = n.args[1] & 0xFFFFFFFF
        if how > 2:
            raise Reply(0, errno.EINVAL)
        if es.netlink is not None:
            raise Continue()
        if es.type == socket.SOCK_STREAM:
            if es.state == "listening":
                if how in (socket.SHUT_RD, socket.SHUT_RDWR):
                    self._stop_listening(n, es, how)
                return 0
            if es.state != "connected":
                raise Reply(0, errno.ENOTCONN)
            if how in (socket.SHUT_RD, socket.SHUT_RDWR):
                es.shut_rd = True
                try:
                    es.sock.shutdown(socket.SHUT_RD)
                except NetError:
                    pass
            # SHUT_WR goes through the pair so the FIN follows the data.
            raise Continue()
        es.sock.shutdown(how)
        self.stack.kick()
        return 0

    def _ioctl(self, n: Notification) -> int:
        es = self._lookup(n, n.args[0])
        req = n.args[1] & 0xFFFFFFFF
        if req in (0x541B, 0x5411) or req in _SOCKET_LOCAL_IOCTLS:
            raise Continue()  # FIONREAD/SIOCOUTQ: the pair's own queue answers
        if es is None:
            # The program's own sockets live in its namespace: the kernel does
            # it. A pair end of a socket we tore down still lives in ours.
            if self._other_ino and self._in_our_netns(n, n.args[0]):
                raise Reply(0, errno.EPERM)
            if self._other_ino and self.interfaces is not None and req in _IFREQ_GETTERS:
                # glibc's if_nametoindex/if_indextoname ask an AF_UNIX socket
                # (__opensock): the sandbox's interfaces are the stack's, its
                # own namespace has only lo. AF_UNIX answers as AF_INET6 does.
                return self._ifreq(n, socket.AF_UNIX, req)
            raise Continue()
        if req & 0xFF00 != 0x8900:
            raise Reply(0, errno.EOPNOTSUPP)   # wireless extensions: no such device here
        if self.interfaces is None:
            raise Reply(0, errno.EPERM)
        return self._ifreq(n, es.family, req)

    def _in_our_netns(self, n: Notification, fd: int) -> bool:
        """Whether the program's socket ``fd`` was created in the supervisor's
        network namespace (an emulated socket's pair end): device ioctls on
        it (SIOCSIFMTU, SIOCGSKNS, ...) must never reach the kernel, which
        would apply them to the supervisor's namespace (sock_net)."""
        try:
            dup = self._dup_from(n, fd)
        except OSError:
            return True
        try:
            nsfd = fcntl.ioctl(dup.fileno(), 0x894C)   # SIOCGSKNS
        except OSError:
            return True
        finally:
            dup.close()
        try:
            return os.fstat(nsfd).st_ino == os.stat("/proc/thread-self/ns/net").st_ino
        finally:
            os.close(nsfd)

    def _ifreq(self, n: Notification, family: int, req: int) -> int:
        """SIOCGIF* answered from the stack's interfaces (H6's ifreq codec) for
        a socket of ``family``."""
        assert self.interfaces is not None
        itfs = self.interfaces()
        ptr = n.args[2]
        if req == 0x8912:  # SIOCGIFCONF
            ifc_len, buf = ifreq.decode_ifconf(memory.read(n.pid, ptr, ifreq.IFCONF_SIZE))
            new_len, data = ifreq.ifconf(itfs, ifc_len, buf_is_null=not buf)
            if data:
                memory.write(n.pid, buf, data)
            memory.write(n.pid, ptr, ifreq.encode_ifconf(new_len, buf))
            return 0
        if req not in ifreq.IFREQ_IOCTLS and req != 0x8910:
            # Setters and the rest: refused as netlink changes are. Never
            # CONTINUE: the pair end lives in the supervisor's namespace.
            raise Reply(0, errno.EPERM)
        raw = memory.read(n.pid, ptr, ifreq.IFREQ_SIZE)
        try:
            out = ifreq.ifreq_ioctl(req, raw, itfs, family=family)
        except ifreq.IoctlError as e:
            raise Reply(0, e.errno) from None
        memory.write(n.pid, ptr, out)
        return 0

    # --------------------------------------------------------- datagrams
    def _sendto(self, n: Notification) -> Callable[[], Awaitable[int]] | int:
        es = self._emulated_or_dead(n, n.args[0])
        length = n.args[2] & 0xFFFFFFFF
        flags = n.args[3] & 0xFFFFFFFF
        if es.netlink is not None:
            data = memory.read(n.pid, n.args[1], length)
            self._netlink_request(es, data, n.pid)
            return length
        if es.type == socket.SOCK_STREAM:
            # Linux TCP ignores the address; the pair would answer EISCONN.
            return self._stream_send(n, es, memory.read(n.pid, n.args[1], length), flags)
        if length > 65535 + 8:
            raise Reply(0, errno.EMSGSIZE)
        self._take_error(es)
        fam, addr = self._read_sockaddr(n, es, n.args[4], n.args[5])
        data = memory.read(n.pid, n.args[1], length)
        if fam == socket.AF_UNSPEC:
            addr = None
        elif es.family == socket.AF_INET and fam != socket.AF_INET:
            raise Reply(0, errno.EAFNOSUPPORT)
        sent = es.sock.sendto(data, flags & ~MSG_DONTWAIT, addr)
        self.stack.kick()
        return int(sent)

    @staticmethod
    def _take_error(es: EmuSocket) -> None:
        """A pending error (ICMP port unreachable on a connected UDP socket:
        ECONNREFUSED) fails the next send once, as Linux sock_alloc_send_pskb.

        The stack reported it to our receive pump, which keeps it here; the
        program's untrapped send()/recv() on the pair cannot see it.
        """
        if es.error:
            err, es.error = es.error, 0
            raise Reply(0, err)

    def _take_datagram(self, n: Notification, es: EmuSocket, fd: int, size: int, flags: int
                       ) -> tuple[bytes, Any, RxMeta] | None:
        """The next datagram from the program's end, with its source (None: empty)."""
        dup = self._dup_from(n, fd, socket.SOCK_SEQPACKET)
        try:
            try:
                data = dup.recv(65536, socket.MSG_DONTWAIT | (flags & MSG_PEEK))
            except BlockingIOError:
                return None
        finally:
            dup.close()
        if es.netlink is not None:
            return data, NL_KERNEL, RxMeta(time.time())
        # Resynchronise the source FIFO: entries of datagrams the program read
        # with plain recv() (untrapped) are skipped by content.
        while es.rxq and es.rxq[0][1] != data:
            es.rxq.popleft()
        if es.rxq:
            addr, _, stamp = es.rxq[0] if flags & MSG_PEEK else es.rxq.popleft()
        else:
            addr, stamp = None, RxMeta(time.time())
        return data, addr, stamp

    def _recv_common(self, n: Notification, es: EmuSocket, fd: int, flags: int,
                     deliver: Callable[[bytes, Any, RxMeta], int]
                     ) -> Callable[[], Awaitable[int]] | int:
        got = self._take_datagram(n, es, fd, 0, flags)
        if got is not None:
            return deliver(*got)
        if flags & MSG_DONTWAIT or self._nonblocking(n, fd):
            if es.error:
                err, es.error = es.error, 0
                raise Reply(0, err)
            raise Reply(0, errno.EAGAIN)

        async def wait() -> int:
            with trio.move_on_after(es.rcvtimeo if es.rcvtimeo is not None else float("inf")):
                while True:
                    ev = es.rx_changed
                    await self._drop_if_interrupted(n)
                    got = self._take_datagram(n, es, fd, 0, flags)
                    if got is not None:
                        return deliver(*got)
                    if es.error:
                        err, es.error = es.error, 0
                        raise Reply(0, err)
                    with trio.move_on_after(0.5):   # plain recv() may race us
                        await ev.wait()
            raise Reply(0, errno.EAGAIN)
        return wait

    def _unconnected(self, n: Notification, es: EmuSocket, flags: int, *, send: bool) -> None:
        """recvmsg/sendmsg on an unconnected TCP socket: trapped anyway, so
        answered as Linux does (tcp_recvmsg ENOTCONN; tcp_sendmsg EPIPE and
        SIGPIPE unless MSG_NOSIGNAL), not as the AF_UNIX placeholder would."""
        if es.state != "listening" and (not es.placeholder or es.dead_pair):
            return
        if not send:
            raise Reply(0, errno.ENOTCONN)
        if not flags & socket.MSG_NOSIGNAL:
            with contextlib.suppress(OSError):
                os.kill(n.pid, signal.SIGPIPE)
        raise Reply(0, errno.EPIPE)

    def _recvfrom(self, n: Notification) -> Callable[[], Awaitable[int]] | int:
        es = self._emulated_or_dead(n, n.args[0])
        size = n.args[2] & 0xFFFFFFFF
        flags = n.args[3] & 0xFFFFFFFF
        if flags & MSG_ERRQUEUE:   # trapped for this flag even without an address
            r = self._take_queued_error(es, size)
            memory.write(n.pid, n.args[1], r.data)
            self._write_addr(n, r.addr, es.family, n.args[4], n.args[5])
            return len(r.data)
        if es.type == socket.SOCK_STREAM:
            self._unconnected(n, es, 0, send=False)
            raise Continue()

        def deliver(data: bytes, addr: Any, stamp: RxMeta) -> int:
            memory.write(n.pid, n.args[1], data[:size])
            self._write_addr(n, addr, es.family, n.args[4], n.args[5])
            return len(data) if flags & MSG_TRUNC else min(len(data), size)
        return self._recv_common(n, es, n.args[0], flags, deliver)

    # msghdr: name(8) namelen(4)+pad(4) iov(8) iovlen(8) control(8) controllen(8) flags(4)+pad
    _MSGHDR = struct.Struct("<QI4xQQQQi4x")

    def _sendmsg(self, n: Notification) -> Callable[[], Awaitable[int]] | int:
        es = self._emulated_or_dead(n, n.args[0])
        if es.netlink is not None:
            return self._netlink_sendmsg(n, es)
        if es.type == socket.SOCK_STREAM:
            self._unconnected(n, es, n.args[2] & 0xFFFFFFFF, send=True)
            name, namelen, iov, iovlen, _c, _cl, _ = self._MSGHDR.unpack(
                memory.read(n.pid, n.args[1], self._MSGHDR.size))
            if not (name and namelen):
                raise Continue()   # the pair does it natively
            data = memory.gather(n.pid, memory.read_iovecs(n.pid, iov, iovlen))
            return self._stream_send(n, es, data, n.args[2] & 0xFFFFFFFF)
        return self._send_one(n, es, n.args[1], n.args[2] & 0xFFFFFFFF)

    def _stream_send(self, n: Notification, es: EmuSocket, data: bytes, flags: int
                     ) -> Callable[[], Awaitable[int]] | int:
        """A TCP send that carries an address: through the program's own end of
        the pair (so it stays in order with its write()s), address ignored."""
        if es.state not in ("connected", "connecting"):
            # (connecting: through the filled pair, so EAGAIN or a wait for the
            # handshake, as sk_stream_wait_connect)
            if not flags & socket.MSG_NOSIGNAL:   # Linux tcp_sendmsg -> sk_stream_error
                with contextlib.suppress(OSError):
                    os.kill(n.pid, signal.SIGPIPE)
            raise Reply(0, errno.EPIPE)
        dup = self._dup_from(n, n.args[0], socket.SOCK_STREAM)
        nonblock = bool(flags & MSG_DONTWAIT) or self._nonblocking(n, n.args[0])
        sendflags = (flags & ~MSG_DONTWAIT) | socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL

        def attempt(done: int) -> int:
            try:
                return done + dup.send(data[done:], sendflags)
            except BlockingIOError:
                return done
            except BrokenPipeError:
                if not flags & socket.MSG_NOSIGNAL:
                    with contextlib.suppress(OSError):
                        os.kill(n.pid, signal.SIGPIPE)   # as the kernel would
                raise Reply(0, errno.EPIPE) from None

        try:
            done = attempt(0)
        except BaseException:
            dup.close()
            raise
        if done == len(data) or nonblock:
            dup.close()
            if done == 0 and data:
                raise Reply(0, errno.EAGAIN)
            return done

        async def wait() -> int:
            sent = done
            try:
                while sent < len(data):
                    await trio.lowlevel.wait_writable(dup)
                    await self._drop_if_interrupted(n)
                    sent = attempt(sent)
                return sent
            finally:
                trio.lowlevel.notify_closing(dup)
                dup.close()
        return wait

    def _send_one(self, n: Notification, es: EmuSocket, hdr_ptr: int, flags: int) -> int:
        name, namelen, iov, iovlen, _ctl, _ctllen, _ = self._MSGHDR.unpack(
            memory.read(n.pid, hdr_ptr, self._MSGHDR.size))
        data = memory.gather(n.pid, memory.read_iovecs(n.pid, iov, iovlen))
        self._take_error(es)
        addr = None
        if name and namelen:
            fam, addr = self._read_sockaddr(n, es, name, namelen)
            if fam == socket.AF_UNSPEC:
                addr = None
        sent = es.sock.sendto(data, flags & ~MSG_DONTWAIT, addr)
        self.stack.kick()
        return int(sent)

    def _recvmsg(self, n: Notification) -> Callable[[], Awaitable[int]] | int:
        es = self._emulated_or_dead(n, n.args[0])
        if es.type == socket.SOCK_STREAM:
            if n.args[2] & MSG_ERRQUEUE:
                # tcp_recvmsg -> inet_recv_error: the (never filled) error
                # queue, not the stream the pair would hand out.
                raise Reply(0, errno.EAGAIN)
            self._unconnected(n, es, 0, send=False)
            raise Continue()
        hdr_ptr = n.args[1]
        flags = n.args[2] & 0xFFFFFFFF
        name, namelen, iov, iovlen, ctl, ctllen, _ = self._MSGHDR.unpack(
            memory.read(n.pid, hdr_ptr, self._MSGHDR.size))
        iovs = memory.read_iovecs(n.pid, iov, iovlen)
        if flags & MSG_ERRQUEUE:
            return self._recv_error_msg(n, es, hdr_ptr, iovs, name, namelen, ctl, ctllen)

        def deliver(data: bytes, addr: Any, stamp: RxMeta) -> int:
            return self._fill_msghdr(n, es, hdr_ptr, iovs, name, namelen, ctl, ctllen,
                                     flags, data, addr, stamp)
        return self._recv_common(n, es, n.args[0], flags, deliver)

    def _take_queued_error(self, es: EmuSocket, size: int) -> Any:
        """recv*(MSG_ERRQUEUE): the stack socket's oldest error-queue entry
        (a RecvResult with ``ee``); EAGAIN when empty (TCP: always)."""
        recvmsg = getattr(es.sock, "recvmsg", None)
        if es.type == socket.SOCK_STREAM or recvmsg is None:
            raise Reply(0, errno.EAGAIN)
        r = recvmsg(size, MSG_ERRQUEUE)
        # The dequeue re-armed or cleared sk_err (sock_dequeue_err_skb); an
        # error our receive pump already took from the stack is that same
        # sk_err, so it is replaced by what the stack holds now (a local
        # entry leaves it alone unless an ICMP one follows).
        pending = 0
        with contextlib.suppress(NetError):
            pending = struct.unpack("<i", es.sock.getsockopt(SOL_SOCKET, SO_ERROR, 4)[:4])[0]
        if pending or r.ee.origin != SO_EE_ORIGIN_LOCAL:
            es.error = pending
        return r

    def _recv_error_msg(self, n: Notification, es: EmuSocket, hdr_ptr: int,
                        iovs: list[tuple[int, int]], name: int, namelen: int, ctl: int,
                        ctllen: int) -> int:
        """recvmsg(MSG_ERRQUEUE) as ip_recv_error / ipv6_recv_error: the quoted
        payload, the original destination as name, one IP_RECVERR /
        IPV6_RECVERR control message, MSG_ERRQUEUE (and MSG_TRUNC) in flags."""
        size = sum(length for _, length in iovs)
        r = self._take_queued_error(es, size)
        written = memory.scatter(n.pid, iovs, r.data)
        out_flags = MSG_ERRQUEUE | (MSG_TRUNC if r.truncated else 0)
        if name:
            raw = _encode(r.addr, es.family)
            memory.write(n.pid, name, raw[:namelen])
            memory.write(n.pid, hdr_ptr + 8, struct.pack("<I", len(raw)))
        ee = r.ee
        off = ee.offender
        if es.family == socket.AF_INET:
            offender = sockaddr.encode((str(off), 0), socket.AF_INET) if off is not None \
                else bytes(16)
            level, ctype = IPPROTO_IP, IP_RECVERR
        else:
            if off is not None:
                off = _as_ipv6(off)
            offender = sockaddr.encode((str(off), 0, 0, 0), socket.AF_INET6) \
                if off is not None else bytes(28)   # a local error: no offender
            level, ctype = IPPROTO_IPV6, IPV6_RECVERR
        payload = struct.pack("<IBBBBII", ee.errno, ee.origin, ee.type, ee.code, 0, ee.info,
                              ee.data) + offender
        cmsgs = _error_control_messages(es, r) + _cmsg(level, ctype, payload)
        if not ctl or len(cmsgs) > ctllen:
            cmsgs = b""
            out_flags |= MSG_CTRUNC   # put_cmsg without room (no partial cmsgs here)
        if ctl:
            memory.write(n.pid, ctl, cmsgs)
            memory.write(n.pid, hdr_ptr + 40, struct.pack("<Q", len(cmsgs)))
        memory.write(n.pid, hdr_ptr + 48, struct.pack("<i", out_flags))
        return written

    def _fill_msghdr(self, n: Notification, es: EmuSocket, hdr_ptr: int,
                     iovs: list[tuple[int, int]], name: int, namelen: int, ctl: int,
                     ctllen: int, flags: int, data: bytes, addr: Any, stamp: RxMeta) -> int:
        size = sum(length for _, length in iovs)
        written = memory.scatter(n.pid, iovs, data[:size])
        out_flags = MSG_TRUNC if len(data) > size else 0
        if name:
            raw = _encode(addr, es.family) if addr is not None else b""
            memory.write(n.pid, name, raw[:namelen])
            memory.write(n.pid, hdr_ptr + 8, struct.pack("<I", len(raw)))
        cmsgs = _control_messages(es, stamp) if ctl and ctllen else b""
        if ctl:
            if len(cmsgs) > ctllen:
                cmsgs = b""
                out_flags |= MSG_CTRUNC
            memory.write(n.pid, ctl, cmsgs)
            memory.write(n.pid, hdr_ptr + 40, struct.pack("<Q", len(cmsgs)))
        memory.write(n.pid, hdr_ptr + 48, struct.pack("<i", out_flags))
        return len(data) if flags & MSG_TRUNC else written

    def _sendmmsg(self, n: Notification) -> int:
        es = self._emulated(n, n.args[0])
        if es.type == socket.SOCK_STREAM or es.netlink is not None:
            raise Continue()
        vec, vlen, flags = n.args[1], min(n.args[2] & 0xFFFFFFFF, 1024), n.args[3] & 0xFFFFFFFF
        done = 0
        for i in range(vlen):
            hdr = vec + 64 * i   # struct mmsghdr { msghdr (56); unsigned msg_len; pad }
            try:
                sent = self._send_one(n, es, hdr, flags)
            except (NetError, OSError, Reply):
                if done:
                    break
                raise
            memory.write(n.pid, hdr + 56, struct.pack("<I", sent))
            done += 1
        return done

    def _recvmmsg(self, n: Notification) -> Callable[[], Awaitable[int]] | int:
        es = self._emulated(n, n.args[0])
        if es.type == socket.SOCK_STREAM or es.netlink is not None:
            raise Continue()
        vec, vlen = n.args[1], min(n.args[2] & 0xFFFFFFFF, 1024)
        flags = n.args[3] & 0xFFFFFFFF
        if vlen == 0:
            return 0

        def take_rest(first: int) -> int:
            count = first
            for i in range(1, vlen):
                got = self._take_datagram(n, es, n.args[0], 0, flags)
                if got is None:
                    break
                self._recv_into_mmsg(n, es, vec + 64 * i, flags, *got)
                count += 1
                if flags & 0x10000:   # MSG_WAITFORONE
                    pass
            return count

        def deliver(data: bytes, addr: Any, stamp: RxMeta) -> int:
            self._recv_into_mmsg(n, es, vec, flags, data, addr, stamp)
            return take_rest(1)
        return self._recv_common(n, es, n.args[0], flags, deliver)

    def _recv_into_mmsg(self, n: Notification, es: EmuSocket, hdr: int, flags: int,
                        data: bytes, addr: Any, stamp: RxMeta) -> None:
        name, namelen, iov, iovlen, ctl, ctllen, _ = self._MSGHDR.unpack(
            memory.read(n.pid, hdr, self._MSGHDR.size))
        iovs = memory.read_iovecs(n.pid, iov, iovlen)
        got = self._fill_msghdr(n, es, hdr, iovs, name, namelen, ctl, ctllen, flags & ~MSG_TRUNC,
                                data, addr, stamp)
        memory.write(n.pid, hdr + 56, struct.pack("<I", got))

    # ------------------------------------------------------------ netlink
    def _netlink_sendmsg(self, n: Notification, es: EmuSocket) -> int:
        name, namelen, iov, iovlen, _c, _cl, _ = self._MSGHDR.unpack(
            memory.read(n.pid, n.args[1], self._MSGHDR.size))
        data = memory.gather(n.pid, memory.read_iovecs(n.pid, iov, iovlen))
        self._netlink_request(es, data, n.pid)
        return len(data)

    def _netlink_request(self, es: EmuSocket, data: bytes, pid: int) -> None:
        for reply in es.netlink.handle(data, pid):
            try:
                es.sup.send(reply)
            except OSError:
                break

    async def _netlink_pump(self, es: EmuSocket) -> None:
        while es.state != "closed":
            await trio.lowlevel.wait_readable(es.sup)
            try:
                data = es.sup.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                return
            if not data and self._hup(es.sup):
                return
            self._netlink_request(es, data, 0)


NL_KERNEL = ("netlink-kernel",)
# Socket ioctls that act on the socket itself, never on its namespace's devices:
# FIOSETOWN, SIOCSPGRP, FIOGETOWN, SIOCGPGRP, SIOCATMARK, SIOCGSTAMP(NS)_OLD, SIOCOUTQNSD.
_SOCKET_LOCAL_IOCTLS = frozenset(range(0x8901, 0x8908)) | {0x894B}
# Interface queries answered from the stack on any socket of the sandbox (+ SIOCGIFCONF).
_IFREQ_GETTERS = ifreq.IFREQ_IOCTLS | {0x8912}
# Our end of a TCP pair in the pair epoll: the program's writes and close, edge-triggered.
_PAIR_EVENTS = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET


def _encode(addr: Any, family: int) -> bytes:
    if family == socket.AF_NETLINK:
        return struct.pack("<HHII", socket.AF_NETLINK, 0, 0, 0)  # from the kernel: pid 0
    raw = sockaddr.encode(addr, family)
    if addr is None and family == socket.AF_INET6:
        raw = raw[:2]
    return raw


def _dup_fd(tid: int, fd: int) -> socket.socket:
    """Our own copy of fd ``fd`` of thread ``tid`` (pidfd_getfd)."""
    try:
        pidfd = os.pidfd_open(tid, PIDFD_THREAD)
    except OSError:
        pidfd = os.pidfd_open(tid)
    try:
        newfd = pidfd_getfd(pidfd, fd & 0xFFFFFFFF)
    finally:
        os.close(pidfd)
    return socket.socket(fileno=newfd)


def _fd_flags(tid: int, fd: int) -> int:
    """The "flags:" of /proc/TID/fdinfo/FD: the file's status flags, with
    O_CLOEXEC when the fd has FD_CLOEXEC (0 if unreadable)."""
    try:
        with open(f"/proc/{tid}/fdinfo/{fd}", "rb") as f:
            for line in f:
                if line.startswith(b"flags:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0


def _ns_pid(tid: int) -> int:
    """The thread group's pid as the program sees it (last NSpid field)."""
    try:
        with open(f"/proc/{tid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        pass
    return tid


# (level, option) -> the ancillary data recvmsg then adds (ip(7), ipv6(7), socket(7)).
_CMSG_OPTS = {(SOL_SOCKET, SO_TIMESTAMP_OLD): "timestamp", (IPPROTO_IP, IP_PKTINFO): "pktinfo",
              (IPPROTO_IP, IP_RECVTTL): "ttl", (IPPROTO_IPV6, 49): "pktinfo6",
              (IPPROTO_IPV6, 51): "hoplimit", (IPPROTO_IP, IP_RECVTOS): "tos",
              (IPPROTO_IPV6, IPV6_RECVTCLASS): "tclass"}


def _control_messages(es: EmuSocket, meta: RxMeta) -> bytes:
    """Control messages for one datagram, in the order Linux emits them
    (sock_recv_timestamp, then ip_cmsg_recv: PKTINFO, TTL, TOS; IPv6:
    ip6_datagram_recv_specific_ctl: PKTINFO, HOPLIMIT, TCLASS)."""
    out = _timestamp_cmsg(meta.stamp) if "timestamp" in es.cmsg else b""
    dst = meta.dst
    if "pktinfo" in es.cmsg and dst is not None and dst.version == 4:
        out += _cmsg(IPPROTO_IP, IP_PKTINFO, struct.pack("<i4s4s", meta.ifindex, dst.packed,
                                                         dst.packed))
    if "ttl" in es.cmsg and meta.ttl:
        out += _cmsg(IPPROTO_IP, IP_TTL, struct.pack("<i", meta.ttl))
    if "tos" in es.cmsg and (dst is None or dst.version == 4):
        out += _cmsg(IPPROTO_IP, IP_TOS, bytes((meta.tos & 0xFF,)))  # one byte, as Linux
    return out + _ipv6_cmsgs(es, _as_ipv6(dst) if dst is not None else None, meta.ifindex,
                             meta.ttl, meta.tos)


def _error_control_messages(es: EmuSocket, r: Any) -> bytes:
    """What recvmsg(MSG_ERRQUEUE) puts before IP_RECVERR / IPV6_RECVERR: the ICMP
    message's own ancillary data (ip_recv_error: sock_recv_timestamp, then
    ip_cmsg_recv, whose IP_PKTINFO has ipi_spec_dst 0; ipv6_recv_error:
    ip6_datagram_recv_common_ctl and _specific_ctl, or ip_cmsg_recv for an
    IPv4 error on an AF_INET6 socket)."""
    out = _timestamp_cmsg(time.time()) if "timestamp" in es.cmsg else b""
    dst = getattr(r, "dst", None)
    if dst is None:
        return out
    if dst.version == 4:
        if es.family == socket.AF_INET6 and "pktinfo6" in es.cmsg:
            out += _cmsg(IPPROTO_IPV6, 50, _as_ipv6(dst).packed + struct.pack("<i", r.ifindex))
        if "pktinfo" in es.cmsg:
            out += _cmsg(IPPROTO_IP, IP_PKTINFO, struct.pack("<i4s4s", r.ifindex, bytes(4),
                                                             dst.packed))
        if "ttl" in es.cmsg and r.ttl:
            out += _cmsg(IPPROTO_IP, IP_TTL, struct.pack("<i", r.ttl))
        if "tos" in es.cmsg:
            out += _cmsg(IPPROTO_IP, IP_TOS, bytes((r.tos & 0xFF,)))
        return out
    return out + _ipv6_cmsgs(es, dst, r.ifindex, r.ttl, r.tos)


def _timestamp_cmsg(stamp: float) -> bytes:
    """SO_TIMESTAMP (old struct timeval) for ``stamp``."""
    sec = int(stamp)
    return _cmsg(SOL_SOCKET, SO_TIMESTAMP_OLD, struct.pack("<qq", sec, int((stamp - sec) * 1e6)))


def _ipv6_cmsgs(es: EmuSocket, dst: ipaddress.IPv6Address | None, ifindex: int, hops: int,
                tclass: int) -> bytes:
    """IPV6_PKTINFO (when ``dst`` is known), IPV6_HOPLIMIT (when ``hops`` is),
    IPV6_TCLASS, those the socket asked for (ip6_datagram_recv_specific_ctl)."""
    out = b""
    if "pktinfo6" in es.cmsg and dst is not None:
        out += _cmsg(IPPROTO_IPV6, 50, dst.packed + struct.pack("<i", ifindex))
    if "hoplimit" in es.cmsg and hops:
        out += _cmsg(IPPROTO_IPV6, 52, struct.pack("<i", hops))
    if "tclass" in es.cmsg:
        out += _cmsg(IPPROTO_IPV6, IPV6_TCLASS, struct.pack("<i", tclass & 0xFF))
    return out


def _as_ipv6(addr: Any) -> ipaddress.IPv6Address:
    """``addr`` itself, or the v4-mapped form of an IPv4 address."""
    if addr.version == 6:
        return addr  # type: ignore[no-any-return]
    return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + addr.packed)


def _cmsg(level: int, ctype: int, payload: bytes) -> bytes:
    """One control message, padded to 8 bytes (CMSG_SPACE)."""
    length = 16 + len(payload)
    pad = (-length) % 8
    return struct.pack("<QiI", length, level, ctype) + payload + bytes(pad)


_NARGS = {"socket": 3, "connect": 3, "bind": 3, "listen": 2, "accept": 3, "accept4": 4,
          "getsockname": 3, "getpeername": 3, "setsockopt": 5, "getsockopt": 5,
          "shutdown": 2, "sendto": 6, "recvfrom": 6, "sendmsg": 3, "recvmsg": 3,
          "sendmmsg": 4, "recvmmsg": 5, "ioctl": 3}


def _famname(f: int) -> str:
    return {2: "inet", 10: "inet6", 16: "netlink"}.get(f, str(f))


def _typename(t: int) -> str:
    return {1: "stream", 2: "dgram", 3: "raw"}.get(t, str(t))
