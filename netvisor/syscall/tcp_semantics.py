"""Linux TCP semantics the socketpair data plane cannot express by itself.

The supervisor (``supervisor.py``) serves an emulated TCP socket as one end of
an AF_UNIX stream pair. The pair carries data, EOF and (by closing our end
with unread data) ECONNRESET, but not the rest of what Linux tells a program
about a connection. This module keeps the small pieces of state and policy
that fill those gaps; the supervisor calls them at a few points:

- :class:`DeadErrors`: once a connection died (RST, TCP_USER_TIMEOUT,
  keepalive, retransmission timeout) the supervisor forgets the socket (its
  pair end is closed so the program's reads fail), but Linux still owes the
  program the errno in getsockopt(SO_ERROR), once (sock_error() clears
  sk_err). getsockopt is always trapped, so the errno is kept per inode of
  the program's end until asked for (bounded, oldest dropped).
- :func:`abort_on_close`: Linux tcp_close() sends RST instead of FIN when
  the application closes with received data unread, and
  inet_csk_listen_stop() resets connections a closed listener never
  accepted. Setting SO_LINGER {1, 0} on the stack's socket before its
  close() makes the stack do exactly that (tcp_disconnect path).
- :func:`unread_on_close`: whether data the program never read is still on
  our side of the pair when the program closed.

Unconnected sockets. A TCP socket before connect()/listen() is, for the
program, an *unconnected* AF_UNIX stream socket (a placeholder), not yet a
pair end: poll() gives POLLOUT|POLLHUP as Linux's tcp_poll does for
TCP_CLOSE, and read()/write() fail instead of blocking or vanishing
(EINVAL and ENOTCONN: AF_UNIX has no EPIPE for an unconnected socket;
Linux gives ENOTCONN and EPIPE+SIGPIPE). connect()/listen() connect the
supervisor's copy of that same file to a listener of ours, so the program
keeps its fd, its dups, its O_NONBLOCK and its epoll registrations (a
swap of the fd with ADDFD_FLAG_SETFD would silently drop epoll
registrations made before connect(): nginx adds upstream sockets to epoll
before connecting them). A connect that fails closes our end: the
program's end then gives EOF/EPIPE (and ECONNRESET first after a
non-blocking connect, POLLERR, as Linux reports the error); a blocking
connect's failure, whose call is still pending, replaces the dead end by a
fresh placeholder at the same fd (ADDFD_FLAG_SETFD), so the socket is
unconnected again as on Linux (tcp_disconnect). The supervisor holds a
copy of an unconnected placeholder, so the program's close() of it is not
seen: :func:`closed_placeholders` is checked every CLOSE_RECHECK seconds
and at once when a bind()/listen() meets EADDRINUSE (a program that binds
port 0, closes and rebinds it).
"""

from __future__ import annotations

import collections
import os
import struct
from typing import Any

from netvisor.tcpip.errors import NetError

SOL_SOCKET, SO_SNDBUF, SO_LINGER = 1, 7, 13
IPPROTO_TCP, TCP_INFO = 6, 11
# Dead connections remembered for SO_ERROR; a program that never asks must
# not grow the supervisor without bound.
DEAD_MAX = 4096


class DeadErrors:
    """Pending SO_ERROR of connections whose emulated socket was torn down."""

    def __init__(self, limit: int = DEAD_MAX) -> None:
        self._errs: collections.OrderedDict[int, int] = collections.OrderedDict()
        self._not_in_pair: set[int] = set()
        self._limit = limit

    def record(self, ino: int, err: int, *, in_pair: bool = True) -> None:
        """Remember ``err`` for the program's end with inode ``ino``.

        ``in_pair``: the program's end itself reports the reset once
        (ECONNRESET, from our end closed with unread data); False when it
        was closed cleanly (a reset after the peer's FIN: EOF, EPIPE).
        """
        self._errs[ino] = err
        self._errs.move_to_end(ino)
        if in_pair:
            self._not_in_pair.discard(ino)
        else:
            self._not_in_pair.add(ino)
        while len(self._errs) > self._limit:
            old, _ = self._errs.popitem(last=False)
            self._not_in_pair.discard(old)

    def in_pair(self, ino: int) -> bool:
        """Whether the program's end of ``ino`` carries the reset too (see record)."""
        return ino not in self._not_in_pair

    def forget(self, ino: int) -> None:
        """A new socket reuses ``ino``: nothing is owed for it."""
        self._errs.pop(ino, None)
        self._not_in_pair.discard(ino)

    def take(self, ino: int) -> int | None:
        """The errno owed to the program's end ``ino`` (then cleared), or None.

        None when it is not a dead emulated socket (the kernel answers); 0
        once the errno was reported (Linux sock_error() clears sk_err).
        """
        err = self._errs.get(ino)
        if err:
            self._errs[ino] = 0
        return err

    def __len__(self) -> int:
        return len(self._errs)


def abort_on_close(sock: Any) -> None:
    """Make the stack socket's coming close() an abort (RST), as SO_LINGER {1, 0}."""
    try:
        sock.setsockopt(SOL_SOCKET, SO_LINGER, struct.pack("<ii", 1, 0))
    except NetError:
        pass   # already closed or not TCP: nothing to reset


def unread_on_close(es: Any) -> bool:
    """Whether the program closed with data of ours it never read.

    Data still in the program's end shows as ECONNRESET on our end (the
    supervisor's receive path checks that); this covers data the pump took
    from the stack but could not yet write into the pair.
    """
    return bool(getattr(es, "down_pending", b""))


def bound_pair(sup: Any, value: bytes) -> int:
    """Bound what the pair holds for the program to about its SO_RCVBUF.

    Linux advertises a window from the application's receive buffer, so a
    program that does not read closes the window. Here received data moves
    on from the stack's socket into the pair; an AF_UNIX stream writer blocks
    once its SO_SNDBUF worth (skb truesize) is queued at the reader, so our
    end's SO_SNDBUF set to the program's SO_RCVBUF keeps the pair about that
    size, the receive pump then stops reading the stack socket, its buffer
    fills and TCP's window closes as on Linux (the kernel doubles the value
    and applies its minimum, SOCK_MIN_SNDBUF, as for SO_RCVBUF). Returns the
    value set (0 if unreadable).
    """
    if len(value) < 4:
        return 0
    want = int(struct.unpack_from("<i", value)[0])
    if want <= 0:
        want = 1
    try:
        sup.setsockopt(SOL_SOCKET, SO_SNDBUF, want)
    except OSError:
        return 0
    return want


def accept_queue_len(sock: Any) -> int | None:
    """Connections in a stack listener's accept queue (None: not known).

    Read as Linux reports it, TCP_INFO on a listener: tcpi_unacked (the u32
    at offset 24) is the accept queue's length, tcpi_sacked the backlog.
    """
    try:
        raw = sock.getsockopt(IPPROTO_TCP, TCP_INFO, 104)
    except (NetError, AttributeError):
        return None
    if len(raw) < 28:
        return None
    return int(struct.unpack_from("<I", raw, 24)[0])


# A program that closed a shut-down socket through another copy (dup, fork)
# is noticed at the latest after this long (seconds).
CLOSE_RECHECK = 5.0


def still_open(owner: tuple[int, int], ino: int) -> bool:
    """Whether fd ``owner[1]`` of thread ``owner[0]`` still is the socket ``ino``."""
    tid, fd = owner
    try:
        return os.stat(f"/proc/{tid}/fd/{fd}").st_ino == ino
    except OSError:
        return False


def held_sockets(netns_ino: int) -> set[int]:
    """Inodes of the sockets held by any process in network namespace ``netns_ino``
    (the sandbox's: the program, its children, forks and threads), from /proc."""
    held: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry.name}/ns/net").st_ino != netns_ino:
                continue
            fds = os.scandir(f"/proc/{entry.name}/fd")
        except OSError:
            continue
        with fds:
            for fd in fds:
                try:
                    link = os.readlink(fd.path)
                except OSError:
                    continue
                if link.startswith("socket:["):
                    held.add(int(link[8:-1]))
    return held


def closed_placeholders(socks: list[Any], netns_ino: int) -> list[Any]:
    """The unconnected sockets among ``socks`` that no process holds any more.

    The fd each was last used through is checked first (one stat each); only
    if some fail that, one scan of the sandbox's processes decides (a dup,
    another thread's or a forked child's copy keeps the socket).
    """
    doubtful = [es for es in socks if not still_open(es.owner, es.ino)]
    if not doubtful or not netns_ino:
        return doubtful
    held = held_sockets(netns_ino)
    return [es for es in doubtful if es.ino not in held]
