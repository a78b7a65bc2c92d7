"""The TCP socket: BSD socket calls with Linux semantics, never blocking.

Mirrors Linux's split between ``struct socket`` (``sock_state``:
unconnected / connecting / connected, as in ``__inet_stream_connect``) and
``struct sock`` (the connection's TCP state). Errors are the errnos Linux
gives in each state (``tcp_sendmsg_locked``, ``tcp_recvmsg_locked``,
``inet_shutdown``, ``inet_listen``, ``inet_bind``); ``poll`` is
``tcp_poll`` bit for bit (including POLLRDNORM/POLLWRNORM).
"""

from __future__ import annotations

import enum
import errno
import ipaddress
from typing import TYPE_CHECKING, Any, Final

from netvisor.tcpip.errors import NetError
from netvisor.tcpip.tcp import sockopts
from netvisor.tcpip.tcp.connection import Connection, conn_key
from netvisor.tcpip.tcp.constants import (
    AF_INET,
    AF_INET6,
    IPPROTO_TCP,
    MSG_MORE,
    MSG_OOB,
    MSG_PEEK,
    POLLERR,
    POLLHUP,
    POLLIN,
    POLLOUT,
    POLLRDHUP,
    POLLRDNORM,
    POLLWRNORM,
    RCV_SHUTDOWN,
    SEND_SHUTDOWN,
    SHUTDOWN_MASK,
    SOCK_STREAM,
    State,
)
from netvisor.tcpip.tcp.listener import Listener
from netvisor.tcpip.tcp.options import SockOpts
from netvisor.tcpip.tcp.transport import V4_ANY, V6_ANY, Binding, normalise

if TYPE_CHECKING:
    from netvisor.tcpip.api import IPAddress, SockAddr
    from netvisor.tcpip.tcp.transport import TcpTransport


SIOCINQ: Final = 0x541B  # = FIONREAD
SIOCOUTQ: Final = 0x5411  # = TIOCOUTQ
SIOCOUTQNSD: Final = 0x894B
SIOCATMARK: Final = 0x8905

_PARSED: dict[str, Any] = {}
"""Address strings already parsed: ipaddress.ip_address costs several us per
connect/bind, and programs talk to a few peers."""
_PARSED_MAX: Final = 1024


class SockState(enum.Enum):
    UNCONNECTED = 0
    CONNECTING = 1
    CONNECTED = 2


class TcpSocket:
    """A TCP socket of the stack (implements ``netvisor.tcpip.api.Socket``)."""

    type = SOCK_STREAM
    protocol = IPPROTO_TCP

    def __init__(self, transport: "TcpTransport", family: int,
                 conn: Connection | None = None, opts: SockOpts | None = None) -> None:
        self.t = transport
        self.family = family
        self.opts = opts or SockOpts()
        self.conn = conn
        self.listener: Listener | None = None
        self.binding: Binding | None = None
        self.sock_state = SockState.CONNECTED if conn is not None else SockState.UNCONNECTED
        self.closed = False
        self.sk_err = 0
        self.shutdown_bits = 0
        self.close_at: float | None = None
        if conn is not None:
            conn.sock = self

    # ------------------------------------------------------------ addresses

    def _parse(self, addr: "SockAddr") -> tuple["IPAddress", int]:
        if not isinstance(addr, tuple) or len(addr) < 2:
            raise NetError(errno.EINVAL, "bad address tuple")
        host, port = addr[0], addr[1]
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise NetError(errno.EINVAL, "bad port")
        ip = _PARSED.get(host) if type(host) is str else None
        if ip is None:
            try:
                ip = ipaddress.ip_address(host if host not in ("", None) else (
                    "0.0.0.0" if self.family == AF_INET else "::"))
            except ValueError as e:
                raise NetError(errno.EINVAL, str(e)) from None
            if type(host) is str and host:
                if len(_PARSED) >= _PARSED_MAX:
                    _PARSED.clear()
                _PARSED[host] = ip
        if self.family == AF_INET:
            if ip.version != 4 or len(addr) != 2:
                raise NetError(errno.EAFNOSUPPORT)
        else:
            if ip.version != 6:
                raise NetError(errno.EINVAL, "AF_INET6 socket needs an IPv6 address")
        return ip, port

    def _fmt(self, ip: "IPAddress", port: int) -> "SockAddr":
        if self.family == AF_INET:
            return (str(ip), port)
        if ip.version == 4:
            return (f"::ffff:{ip}", port, 0, 0)
        scope = 0
        if ip.is_link_local and self.conn is not None:
            scope = self.conn.route.nic_id  # Linux reports sin6_scope_id for link-local
        return (str(ip), port, 0, scope)

    # ------------------------------------------------------------ bind/listen/connect

    def _check_open(self) -> None:
        if self.closed:
            raise NetError(errno.EBADF)

    def bind(self, addr: "SockAddr") -> None:
        self._check_open()
        ip, port = self._parse(addr)
        if self.binding is not None or self.conn is not None:
            raise NetError(errno.EINVAL, "already bound")
        nip = normalise(ip)
        if nip.version == 4 and self.family == AF_INET6 and self.opts.v6only:
            raise NetError(errno.EINVAL)
        if not nip.is_unspecified and not self.t.ctx.is_local_address(nip):
            raise NetError(errno.EADDRNOTAVAIL)
        b = Binding(nip, port, self.family, self.opts.v6only, self.opts.reuseaddr,
                    self.opts.reuseport)
        if port == 0:
            self.t.pick_ephemeral(b)
        elif self.t.bind_conflict(b):
            raise NetError(errno.EADDRINUSE)
        self.t.add_binding(b)
        self.binding = b

    def listen(self, backlog: int) -> None:
        self._check_open()
        if self.sock_state != SockState.UNCONNECTED or (
                self.conn is not None and not self.conn.dead):
            raise NetError(errno.EINVAL)
        cap = self.t.config.somaxconn
        backlog = cap if backlog < 0 or backlog > cap else backlog
        if self.listener is not None:
            self.listener.backlog = backlog
            return
        if self.binding is None:
            any_ip = V4_ANY if self.family == AF_INET else V6_ANY
            b = Binding(any_ip, 0, self.family, self.opts.v6only, self.opts.reuseaddr,
                        self.opts.reuseport)
            self.t.pick_ephemeral(b)
            self.t.add_binding(b)
            self.binding = b
        b = self.binding
        b.listening = True
        b.reuseaddr, b.reuseport = self.opts.reuseaddr, self.opts.reuseport
        if self.t.bind_conflict(b):
            b.listening = False
            raise NetError(errno.EADDRINUSE)
        self.conn = None
        self.listener = Listener(self, backlog)
        self.t.listeners.setdefault(b.port, []).append(self)

    def connect(self, addr: "SockAddr") -> None:
        self._check_open()
        now = self.t.ctx.now
        if self.listener is not None:
            raise NetError(errno.EISCONN)
        if self.sock_state == SockState.CONNECTED:
            raise NetError(errno.EISCONN)
        if self.sock_state == SockState.CONNECTING:
            conn = self.conn
            assert conn is not None
            if conn.state in (State.SYN_SENT, State.SYN_RECEIVED):
                raise NetError(errno.EALREADY)
            if conn.state == State.CLOSED:
                self.sock_state = SockState.UNCONNECTED
                err = conn.sk_err or errno.ECONNABORTED
                conn.sk_err = 0
                raise NetError(err)
            self.sock_state = SockState.CONNECTED
            return
        if self.conn is not None and not self.conn.dead:
            raise NetError(errno.EISCONN)
        ip, port = self._parse(addr)
        dst = normalise(ip)
        if dst.version == 4 and self.family == AF_INET6 and self.opts.v6only:
            raise NetError(errno.ENETUNREACH)
        b = self.binding
        bound_src = b.addr if b is not None and not b.addr.is_unspecified else None
        if bound_src is not None and bound_src.version != dst.version:
            raise NetError(errno.ENETUNREACH)
        if dst.is_unspecified:
            # Linux: connecting to INADDR_ANY means the loopback address.
            dst = ipaddress.IPv4Address("127.0.0.1") if dst.version == 4 else \
                ipaddress.IPv6Address("::1")
        scope: int | None = None
        if dst.version == 6 and dst.is_link_local:
            # Linux: a link-local destination needs a scope id (interface).
            scope = int(addr[3]) if len(addr) >= 4 and addr[3] else 0
            if not scope:
                raise NetError(errno.EINVAL)
        route = self.t.ctx.route(dst, src=bound_src, bound_nic=scope)
        src = bound_src or route.src
        if b is None:
            nb = Binding(src, 0, self.family, self.opts.v6only, self.opts.reuseaddr,
                         self.opts.reuseport, auto=True)
            self.t.pick_ephemeral(nb, dst, port)
            self.t.add_binding(nb)
            lport = nb.port
            conn_binding = nb
        else:
            lport = b.port
            if conn_key(src, lport, dst, port) in self.t.conns:
                raise NetError(errno.EADDRNOTAVAIL)
            b.refs += 1
            conn_binding = b
        conn = Connection(self.t, self.opts, self.family, src, lport, dst, port, route, now)
        conn.sock = self
        conn.bind_key = conn_binding
        self.conn = conn
        self.t.register_connection(conn, None)
        conn.open_active(now)
        self.t.post(conn)
        self.sock_state = SockState.CONNECTING
        raise NetError(errno.EINPROGRESS)

    def accept(self) -> tuple["TcpSocket", "SockAddr"]:
        self._check_open()
        lst = self.listener
        if lst is None:
            raise NetError(errno.EINVAL)
        while lst.accept_queue:
            conn = lst.accept_queue.popleft()
            conn.listener = None
            child = TcpSocket(self.t, self.family, conn, conn.opts)
            child.binding = None
            self.t.ctx.readiness_changed(self)
            return child, child._fmt(conn.raddr, conn.rport)
        raise NetError(errno.EAGAIN)

    # ------------------------------------------------------------ data

    def send(self, data: bytes | memoryview, flags: int = 0) -> int:
        self._check_open()
        conn = self.conn
        if conn is None or self.listener is not None:
            err, self.sk_err = self.sk_err, 0
            raise NetError(err or errno.EPIPE)
        st = conn.state
        if st not in (State.ESTABLISHED, State.CLOSE_WAIT):
            # Linux sk_stream_wait_connect.
            if conn.sk_err:
                err, conn.sk_err = conn.sk_err, 0
                self.t.ctx.readiness_changed(self)
                raise NetError(err)
            if st in (State.SYN_SENT, State.SYN_RECEIVED):
                raise NetError(errno.EAGAIN)
            raise NetError(errno.EPIPE)
        if conn.sk_err or conn.shutdown & SEND_SHUTDOWN:
            raise NetError(errno.EPIPE)
        if flags & MSG_OOB:
            raise NetError(errno.EOPNOTSUPP, "urgent data is not supported")
        if len(data) == 0:
            return 0
        n = conn.send(data, self.t.ctx.now, more=bool(flags & MSG_MORE))
        self.t.post(conn)
        if n == 0:
            raise NetError(errno.EAGAIN)
        return n

    def sendto(self, data: bytes | memoryview, flags: int, addr: "SockAddr | None") -> int:
        # TCP ignores the address (Linux tcp_sendmsg without Fast Open).
        return self.send(data, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._check_open()
        if bufsize < 0:
            raise NetError(errno.EINVAL)
        if flags & MSG_OOB:
            raise NetError(errno.EINVAL)
        conn = self.conn
        if self.listener is not None:
            raise NetError(errno.ENOTCONN)
        if bufsize == 0:
            return b""  # Linux tcp_recvmsg: a zero-length read has reached its target
        if conn is None:
            raise NetError(errno.ENOTCONN)
        if len(conn.rcvbuf):
            data = conn.recv(bufsize, self.t.ctx.now, peek=bool(flags & MSG_PEEK))
            self.t.post(conn)
            return data
        if conn.peer_fin_seq == -1:
            return b""  # SOCK_DONE: the peer's FIN was consumed
        if conn.sk_err:
            err, conn.sk_err = conn.sk_err, 0
            self.t.ctx.readiness_changed(self)
            raise NetError(err)
        if conn.shutdown & RCV_SHUTDOWN:
            return b""
        if conn.state == State.CLOSED:
            raise NetError(errno.ENOTCONN)
        raise NetError(errno.EAGAIN)

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, "SockAddr | None"]:
        return self.recv(bufsize, flags), None

    def shutdown(self, how: int) -> None:
        """Linux inet_shutdown + tcp_shutdown."""
        self._check_open()
        if how not in (0, 1, 2):
            raise NetError(errno.EINVAL)
        bits = how + 1
        now = self.t.ctx.now
        conn = self.conn
        if self.sock_state == SockState.CONNECTING and conn is not None:
            if conn.state not in (State.SYN_SENT, State.SYN_RECEIVED, State.CLOSED):
                self.sock_state = SockState.CONNECTED
        if self.listener is not None:
            if bits & RCV_SHUTDOWN:
                self._stop_listening(now)
            self.shutdown_bits |= bits
            self.t.ctx.readiness_changed(self)
            return
        if conn is None or conn.state == State.CLOSED:
            self.shutdown_bits |= bits
            if conn is not None:
                conn.shutdown |= bits
            self.t.ctx.readiness_changed(self)
            raise NetError(errno.ENOTCONN)
        if conn.state == State.SYN_SENT:
            conn.abort(now, send_rst=False)
            self.sock_state = SockState.UNCONNECTED
            self.t.post(conn)
            return
        conn.shutdown |= bits
        if bits & SEND_SHUTDOWN:
            conn.shutdown_write(now)
        conn.wake()
        self.t.post(conn)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        now = self.t.ctx.now
        if self.listener is not None:
            self._stop_listening(now)
            self.t.release(self.binding)
            self.binding = None
            return
        conn = self.conn
        if conn is not None and not conn.dead:
            linger_on, secs = self.opts.linger
            if linger_on and secs > 0:
                self.close_at = now + secs
            conn.close(now)
            self.t.post(conn)
        # An explicit bind keeps the socket's own reference; connections hold theirs.
        if self.binding is not None:
            self.t.release(self.binding)
            self.binding = None

    def _stop_listening(self, now: float) -> None:
        lst = self.listener
        if lst is None:
            return
        self.listener = None
        if self.binding is not None:
            self.binding.listening = False
            socks = self.t.listeners.get(self.binding.port, [])
            if self in socks:
                socks.remove(self)
            if not socks:
                self.t.listeners.pop(self.binding.port, None)
        lst.close(now)

    # ------------------------------------------------------------ linger (SO_LINGER > 0)

    @property
    def lingering(self) -> bool:
        """True while a close() with SO_LINGER > 0 should still wait (Linux sk_stream_wait_close).

        The driver waits on readiness changes until this turns False or
        ``close_at`` passes; the connection goes on in the background either way.
        """
        conn = self.conn
        if self.close_at is None or conn is None:
            return False
        if self.t.ctx.now >= self.close_at:
            return False
        return conn.state in (State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK)

    # ------------------------------------------------------------ names

    def getsockname(self) -> "SockAddr":
        conn = self.conn
        if conn is not None and (not conn.dead or self.binding is None):
            return self._fmt(conn.laddr, conn.lport)
        if self.binding is not None:
            return self._fmt(self.binding.addr, self.binding.port)
        return self._fmt(V4_ANY if self.family == AF_INET else V6_ANY, 0)

    def getpeername(self) -> "SockAddr":
        conn = self.conn
        if conn is None or self.listener is not None or conn.state in (State.CLOSED,
                                                                       State.SYN_SENT):
            raise NetError(errno.ENOTCONN)
        return self._fmt(conn.raddr, conn.rport)

    # ------------------------------------------------------------ options

    def setsockopt(self, level: int, optname: int, value: bytes) -> None:
        self._check_open()
        sockopts.setsockopt(self, level, optname, value)

    def getsockopt(self, level: int, optname: int, buflen: int) -> bytes:
        self._check_open()
        return sockopts.getsockopt(self, level, optname, buflen)

    # ------------------------------------------------------------ readiness

    def tcp_state(self) -> State:
        if self.listener is not None:
            return State.LISTEN
        if self.conn is None:
            return State.CLOSED
        return self.conn.state

    def poll(self) -> int:
        """Linux tcp_poll."""
        if self.closed:
            return POLLHUP  # not reachable for a program; defensive
        if self.listener is not None:
            return (POLLIN | POLLRDNORM) if self.listener.accept_queue else 0
        conn = self.conn
        state = self.tcp_state()
        shutdown = conn.shutdown if conn is not None else self.shutdown_bits
        mask = 0
        if shutdown == SHUTDOWN_MASK or state == State.CLOSED:
            mask |= POLLHUP
        if shutdown & RCV_SHUTDOWN:
            mask |= POLLIN | POLLRDNORM | POLLRDHUP
        if state != State.SYN_SENT and state != State.SYN_RECEIVED:
            if conn is not None and len(conn.rcvbuf) >= max(1, self.opts.rcvlowat):
                mask |= POLLIN | POLLRDNORM
            if not shutdown & SEND_SHUTDOWN:
                if conn is None or self._stream_writable(conn):
                    mask |= POLLOUT | POLLWRNORM
            else:
                mask |= POLLOUT | POLLWRNORM
        err = conn.sk_err if conn is not None else self.sk_err
        if err:
            mask |= POLLERR
        return mask

    def _stream_writable(self, conn: Connection) -> bool:
        # Linux sk_stream_is_writeable: free space >= a third of what is queued
        # (sk_stream_min_wspace = wmem_queued / 2), and below TCP_NOTSENT_LOWAT.
        limit = conn.sndbuf_limit
        queued = len(conn.sndbuf)
        if limit - queued < queued // 2 or limit - queued <= 0:
            return False
        lowat = self.opts.notsent_lowat
        if lowat and conn.notsent_bytes() >= lowat:
            return False
        return True

    def ioctl(self, request: int) -> int:
        """Integer socket ioctls as Linux tcp_ioctl.

        SIOCINQ/FIONREAD, SIOCOUTQ, SIOCOUTQNSD, SIOCATMARK.
        """
        self._check_open()
        conn = self.conn
        if request in (SIOCINQ, SIOCOUTQ, SIOCOUTQNSD) and self.listener is not None:
            raise NetError(errno.EINVAL)
        if request == SIOCINQ:
            return len(conn.rcvbuf) if conn is not None else 0
        if request == SIOCOUTQ:
            if conn is None or conn.state in (State.SYN_SENT, State.SYN_RECEIVED):
                return 0
            return max(0, conn.sndbuf.end - conn.snd_una) if not conn.dead else 0
        if request == SIOCOUTQNSD:
            if conn is None or conn.state in (State.SYN_SENT, State.SYN_RECEIVED) or conn.dead:
                return 0
            return conn.notsent_bytes()
        if request == SIOCATMARK:
            return 0  # urgent data is delivered in line
        raise NetError(errno.ENOTTY)  # what a program sees for an unknown ioctl

    def fileno(self) -> int:  # pragma: no cover - sockets of the stack have no fd
        return -1

    def __repr__(self) -> str:
        return f"<TcpSocket {self.tcp_state().name} {self.getsockname()}>"

    def _info(self) -> Any:
        return self.conn
