"""TCP transport: demultiplexing, ports, timers, and RSTs for segments nobody owns.

Demux (RFC 9293 3.10.7.1/2): an exact 4-tuple match wins, then a listener
on the local address, then a wildcard listener (an AF_INET6 listener on ``::``
also takes IPv4 unless IPV6_V6ONLY). With several SO_REUSEPORT listeners
the 4-tuple hash picks one. A segment for no connection and no listener
gets an RST (RFC 9293 3.10.7.1), never an RST for an RST.

Ports follow Linux: ephemeral ports 32768-60999 (ip_local_port_range),
bind conflicts per ``inet_csk_bind_conflict`` (SO_REUSEADDR shares a port
unless the other socket listens; SO_REUSEPORT shares it when both set it).
Connections in TIME-WAIT keep their port, and a fresh SYN to a TIME-WAIT
connection may reopen it (Linux tcp_timewait_state_process TCP_TW_SYN).

Timers: each connection's ``next_deadline()`` is kept in a heap with lazy
invalidation, so ``next_deadline`` is O(1) and a timer turn touches only
due connections (10,000 idle connections cost nothing per turn). A deadline
that moves later keeps its earlier entry (one early wake-up instead of one
heap entry per segment).
"""

from __future__ import annotations

import dataclasses
import heapq
import ipaddress
import itertools
import logging
from typing import TYPE_CHECKING, Any, Final

from netvisor.tcpip.errors import MalformedPacket, NetError
from netvisor.tcpip.tcp.config import TcpConfig
from netvisor.tcpip.tcp.connection import Connection, conn_key
from netvisor.tcpip.tcp.constants import M32
from netvisor.tcpip.tcp.constants import AF_INET, AF_INET6, State
from netvisor.tcpip.tcp.isn import IsnGenerator
from netvisor.tcpip.tcp.syncookies import SynCookies
from netvisor.tcpip.wire.seq import seq_diff
from netvisor.tcpip.wire.tcp import TcpFlags, TcpRepr

if TYPE_CHECKING:
    from netvisor.tcpip.api import IcmpError, IPAddress, Route, TransportContext
    from netvisor.tcpip.tcp.socket import TcpSocket

log = logging.getLogger(__name__)

PROTO_TCP: Final = 6
_FIN, _SYN, _RST = int(TcpFlags.FIN), int(TcpFlags.SYN), int(TcpFlags.RST)
EGRESS_RETRY: Final = 0.001  # seconds between retries of egress-blocked connections
CHALLENGE_ACK_LIMIT: Final = 1000  # per second (Linux tcp_challenge_ack_limit, RFC 5961 7)
V4_ANY: Final = ipaddress.IPv4Address(0)
V6_ANY: Final = ipaddress.IPv6Address(0)


@dataclasses.dataclass(eq=False, slots=True)
class Binding:
    """A claim on a local port (a bound socket, a listener, or a live connection)."""

    addr: "IPAddress"
    """Local address, IPv4-mapped IPv6 normalised to IPv4."""
    port: int
    family: int
    v6only: bool
    reuseaddr: bool
    reuseport: bool
    listening: bool = False
    refs: int = 1
    auto: bool = False
    """Bound implicitly by connect() (may share the port with other such connections)."""

    def overlaps(self, other: "Binding") -> bool:
        a, b = self, other
        if a.addr.version == b.addr.version:
            if a.addr.version == 4 and a.family == b.family == AF_INET6 and (
                    a.addr == V4_ANY or b.addr == V4_ANY):
                return True
            return a.addr == b.addr or a.addr.is_unspecified or b.addr.is_unspecified
        v4, v6 = (a, b) if a.addr.version == 4 else (b, a)
        # An AF_INET6 binding covers IPv4 only on :: without V6ONLY.
        return v6.family == AF_INET6 and not v6.v6only and v6.addr == V6_ANY


def normalise(addr: "IPAddress") -> "IPAddress":
    """IPv4-mapped IPv6 (::ffff:a.b.c.d) as IPv4; others unchanged."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class TcpTransport:
    """The ``Transport`` for protocol 6 (see ``netvisor.tcpip.api``)."""

    protocol = PROTO_TCP

    def __init__(self, ctx: "TransportContext", config: TcpConfig | None = None) -> None:
        self.ctx = ctx
        self.config = config or TcpConfig()
        key = ctx.rng.getrandbits(256).to_bytes(32, "big")
        secret = getattr(getattr(ctx, "config", None), "tcp_secret", None)
        self.isn_gen = IsnGenerator(secret or key)
        self.cookies = SynCookies(ctx.rng.getrandbits(256).to_bytes(32, "big"))
        self.conns: dict[tuple[int, ...], Connection] = {}
        """By ``conn_key(laddr, lport, raddr, rport)``."""
        self.ports: dict[int, list[Binding]] = {}
        self.listeners: dict[int, list["TcpSocket"]] = {}
        self._heap: list[tuple[float, int, Connection]] = []
        self._tick = itertools.count()
        self._challenge_window = 0
        self._challenge_count = 0
        self._next_ephemeral = ctx.rng.randrange(self.config.ephemeral_ports[0],
                                                 self.config.ephemeral_ports[1] + 1)
        self.stats: dict[str, int] = {"rst_sent": 0, "malformed": 0, "no_socket": 0}
        self._eph_counter = ctx.rng.randrange(1 << 16)
        self._blocked: set[Connection] = set()
        self._blocked_retry_at: float | None = None
        # TCP small queues: connections with bytes in a NIC's queue, per NIC, and
        # those waiting for it to drain (handle_egress_room).
        self._tsq_queued: dict[int, set[Connection]] = {}
        self._tsq_throttled: set[Connection] = set()
        self._tsq_ready_at: float | None = None
        # Added to the contract later (api.TransportContext.confirm_neighbor).
        self._confirm_neighbor = getattr(ctx, "confirm_neighbor", None)

    # ---------------------------------------------------------------- sockets

    def socket(self, family: int) -> "TcpSocket":
        from netvisor.tcpip.tcp.socket import TcpSocket
        if family not in (AF_INET, AF_INET6):
            from netvisor.tcpip.errors import NetError
            import errno
            raise NetError(errno.EAFNOSUPPORT)
        return TcpSocket(self, family)

    # ---------------------------------------------------------------- ports

    def bind_conflict(self, b: Binding, *, ignore: Binding | None = None) -> bool:
        for other in self.ports.get(b.port, ()):
            if other is b or other is ignore or not b.overlaps(other):
                continue
            if b.reuseaddr and other.reuseaddr and not other.listening and not b.listening:
                continue
            if b.reuseaddr and other.reuseaddr and not other.listening and b.listening:
                continue
            if b.reuseport and other.reuseport:
                continue
            return True
        return False

    def add_binding(self, b: Binding) -> None:
        self.ports.setdefault(b.port, []).append(b)

    def release(self, b: Binding | None) -> None:
        if b is None:
            return
        b.refs -= 1
        if b.refs <= 0:
            lst = self.ports.get(b.port)
            if lst is not None:
                try:
                    lst.remove(b)
                except ValueError:
                    pass
                if not lst:
                    del self.ports[b.port]

    def pick_ephemeral(self, b: Binding, raddr: "IPAddress | None" = None,
                       rport: int = 0) -> int:
        """A free port in ip_local_port_range (Linux __inet_hash_connect, simplified)."""
        lo, hi = self.config.ephemeral_ports
        span = hi - lo + 1
        if raddr is not None:
            # RFC 6056 3.3.3 (Algorithm 3, Linux __inet_hash_connect): a keyed hash of
            # the addresses picks where to start, a counter moves on each time.
            h = self.isn_gen.port_offset(b.addr, raddr, rport)
            start = lo + (h + self._eph_counter) % span
        else:
            start = self._next_ephemeral
        for i in range(span):
            port = lo + (start - lo + i) % span
            b.port = port
            if port in self.ports and (raddr is None or self._port_busy_for(b, raddr, rport)):
                continue
            if raddr is not None:
                self._eph_counter += i + 1
            else:
                self._next_ephemeral = lo + (port - lo + 1) % span
            return port
        from netvisor.tcpip.errors import NetError
        import errno
        raise NetError(errno.EADDRNOTAVAIL if raddr is not None else errno.EADDRINUSE)

    def _port_busy_for(self, b: Binding, raddr: "IPAddress", rport: int) -> bool:
        # connect() may share a port with other connect()-bound connections
        # to different destinations; anything explicitly bound or listening blocks it.
        for other in self.ports.get(b.port, ()):
            if other.listening or not other.auto:
                return True
        return conn_key(b.addr, b.port, raddr, rport) in self.conns

    # ---------------------------------------------------------------- connections

    def register_connection(self, conn: Connection, sock: "TcpSocket | None") -> None:
        self.conns[conn.key] = conn
        if sock is not None and sock.binding is not None and sock.listener is not None:
            lb = sock.binding
            b = Binding(conn.laddr, conn.lport, lb.family, lb.v6only, lb.reuseaddr,
                        lb.reuseport)
            self.add_binding(b)
            conn.bind_key = b

    def connection_closed(self, conn: Connection) -> None:
        if self.conns.get(conn.key) is conn:
            del self.conns[conn.key]
        if conn.listener is not None:
            conn.listener.forget(conn)
            conn.listener = None
        b = conn.bind_key
        conn.bind_key = None
        self.release(b)
        conn.wake_pending = True

    def connection_established(self, conn: Connection) -> None:
        lst = conn.listener
        if lst is not None:
            lst.established(conn)
            self.ctx.readiness_changed(lst.sock)

    def can_establish(self, conn: Connection) -> bool:
        lst = conn.listener
        if lst is None:
            return True
        if lst.accept_full():
            lst.overflows += 1
            return False
        return True

    def listener_wscale(self, sock: "TcpSocket") -> int:
        space = max(self.config.rmem[2], sock.opts.rcvbuf or 0)
        ws = 0
        while (space >> ws) > 65535 and ws < 14:
            ws += 1
        return ws

    def initial_window(self, sock: "TcpSocket") -> int:
        buf = sock.opts.rcvbuf or self.config.rmem[1]
        space = buf // 2
        if sock.opts.window_clamp:
            space = min(space, sock.opts.window_clamp)
        return space

    def post(self, conn: Connection) -> None:
        """After any work on ``conn``: re-arm its timer, wake its socket."""
        dl = None if conn.dead else conn.next_deadline()
        # Push only when the deadline moves earlier. A deadline that moves later
        # (the RTO re-armed by every ACK, keepalive pushed back by every segment)
        # keeps its earlier heap entry: it fires early, finds nothing due and
        # re-arms. So the heap holds about one entry per connection instead of
        # one per segment.
        sched = conn.scheduled_at
        if dl is not None and (sched is None or dl < sched):
            conn.scheduled_at = dl
            heapq.heappush(self._heap, (dl, next(self._tick), conn))
        if conn.wake_pending:
            conn.wake_pending = False
            if conn.sock is not None:
                self.ctx.readiness_changed(conn.sock)

    # ---------------------------------------------------------------- output

    def output(self, conn: Connection, segment: bytearray, gso_size: int) -> None:
        route = conn.route
        try:
            self.ctx.output(route, conn.raddr, PROTO_TCP, segment,
                            checksum_offset=16 if route.checksum_offload else -1,
                            gso_size=gso_size, tos=conn.opts.tos, ttl=conn.opts.ttl,
                            dont_fragment=False if conn.opts.df_off else None)
            local = conn.tsq_local
            if local is None:
                local = conn.tsq_local = self.ctx.is_local_address(conn.raddr)
            if local:
                return  # delivered inside the stack at the next timer pass: no NIC queue
            if not conn.tsq_bytes:
                queued = self._tsq_queued.get(route.nic_id)
                if queued is None:
                    queued = self._tsq_queued[route.nic_id] = set()
                queued.add(conn)
            conn.tsq_bytes += len(segment)
        except NetError as exc:
            # The route vanished under us (address removed, NIC gone): the segment is
            # lost like on a wire; retransmission and timeouts deal with it.
            self.stats["output_errors"] = self.stats.get("output_errors", 0) + 1
            log.debug("output to %s failed: %s", conn.raddr, exc)

    def output_raw(self, route: "Route", dst: "IPAddress", rep: TcpRepr,
                   src: "IPAddress") -> None:
        seg = rep.to_bytes(src=src, dst=dst,
                           checksum="partial" if route.checksum_offload else "full")
        self.ctx.output(route, dst, PROTO_TCP, seg,
                        checksum_offset=16 if route.checksum_offload else -1)

    def egress_has_room(self, nic_id: int) -> bool:
        return self.ctx.egress_has_room(nic_id)

    def confirm_neighbor(self, conn: Connection) -> None:
        """An ACK advanced SND.UNA: the next hop works (RFC 4861 7.3.1, Linux dst_confirm)."""
        confirm = self._confirm_neighbor
        if confirm is not None:
            confirm(conn.route, conn.raddr)

    def egress_blocked(self, conn: Connection, now: float) -> None:
        """``conn`` stopped sending because its NIC queue is full (shaper backpressure).

        Blocked connections are retried every EGRESS_RETRY seconds, and at every
        packet or timer turn, until the queue takes data again. (The per-connection
        small-queue limit, the common case, resumes on ``handle_egress_room``
        instead; this path covers a link whose own queue refuses frames.)
        """
        self._blocked.add(conn)
        if self._blocked_retry_at is None:
            self._blocked_retry_at = now + EGRESS_RETRY

    def _retry_blocked(self, now: float) -> None:
        blocked = self._blocked
        self._blocked = set()
        self._blocked_retry_at = None
        for conn in blocked:
            if conn.dead:
                continue
            if self.ctx.egress_has_room(conn.route.nic_id):
                conn.transmit(now)
                self.post(conn)
            else:
                self._blocked.add(conn)
        if self._blocked:
            self._blocked_retry_at = now + EGRESS_RETRY

    def tsq_throttle(self, conn: Connection) -> None:
        """``conn`` stopped at its small-queue limit until its NIC queue drains."""
        conn.tsq_throttled = True
        self._tsq_throttled.add(conn)

    def handle_egress_room(self, nic_id: int, now: float) -> None:
        """The network layer's queue of ``nic_id`` was drained (frames taken by the driver).

        Linux TSQ's tcp_wfree -> tcp_tsq_handler: the connections' queued bytes are
        gone; throttled ones send again from the next timer pass (deadline ``now``),
        never from inside this call, which may come from deep in an output path.
        """
        queued = self._tsq_queued.pop(nic_id, None)
        if not queued:
            return
        ready = False
        for conn in queued:
            conn.tsq_bytes = 0
            ready = ready or conn.tsq_throttled
        # Only a throttled connection of *this* NIC makes a timer pass due: the
        # driver drains every link each turn, so "any throttled" would spin while
        # another link (a shaper) still holds that connection's frames.
        if ready and self._tsq_ready_at is None:
            self._tsq_ready_at = now

    def _tsq_resume(self, now: float) -> None:
        self._tsq_ready_at = None
        ready = [c for c in self._tsq_throttled if c.tsq_bytes == 0 or c.dead]
        for conn in ready:
            self._tsq_throttled.discard(conn)
            conn.tsq_throttled = False
            if not conn.dead:
                conn.transmit(now)
                self.post(conn)

    def challenge_ack_allowed(self, now: float) -> bool:
        sec = int(now)
        if sec != self._challenge_window:
            self._challenge_window = sec
            self._challenge_count = 0
        self._challenge_count += 1
        return self._challenge_count <= CHALLENGE_ACK_LIMIT

    def send_reset(self, src: "IPAddress", dst: "IPAddress", rep: TcpRepr, plen: int) -> None:
        """RST in answer to ``rep`` (received from src to dst), RFC 9293 3.10.7.1."""
        if rep.flags & TcpFlags.RST:
            return
        if rep.ack is not None:
            out = TcpRepr(rep.dst_port, rep.src_port, rep.ack, None, TcpFlags.RST, 0)
        else:
            seglen = plen + (1 if rep.flags & TcpFlags.SYN else 0) + \
                (1 if rep.flags & TcpFlags.FIN else 0)
            out = TcpRepr(rep.dst_port, rep.src_port, 0, (rep.seq + seglen) & M32,
                          TcpFlags.RST, 0)
        try:
            route = self.ctx.route(src, src=dst)
        except Exception:  # noqa: BLE001 - unroutable: no answer
            return
        self.stats["rst_sent"] += 1
        self.output_raw(route, src, out, dst)

    def send_reset_for(self, conn: Connection, rep: TcpRepr, plen: int) -> None:
        self.send_reset(conn.raddr, conn.laddr, rep, plen)

    def pmtu_changed(self, conn: Connection, mtu: int) -> None:
        conn.route = dataclasses.replace(conn.route, mtu=mtu)

    # ---------------------------------------------------------------- input

    def handle_packet(self, src: "IPAddress", dst: "IPAddress", transport: memoryview,
                      now: float, *, checksum_valid: bool, nic_id: int) -> None:
        """One received segment (api.Transport); MalformedPacket on bad header/checksum."""
        rep, hl = TcpRepr.parse_segment(transport, src=src, dst=dst,
                                        verify_checksum=not checksum_valid)
        # Port 0 is an ordinary port on input, as in tcp_v4_rcv/tcp_v6_rcv: a
        # SYN to it finds no socket and is answered with RST (so a connect()
        # to port 0 fails with ECONNREFUSED), and one from it reaches a listener.
        fl = int(rep.flags)
        if fl & _SYN and fl & (_RST | _FIN):
            raise MalformedPacket("tcp: SYN with RST/FIN")  # Linux drops these
        payload = transport[hl:]
        # conn_key, inline (every segment): IPv4 keys have four items.
        if type(dst) is ipaddress.IPv4Address:
            key: tuple[int, ...] = (dst._ip, rep.dst_port,  # type: ignore[union-attr]
                                    src._ip, rep.src_port)  # type: ignore[union-attr]
        else:
            key = conn_key(dst, rep.dst_port, src, rep.src_port)
        conn = self.conns.get(key)
        iss = None
        if conn is not None and fl & _SYN and conn.state == State.TIME_WAIT and \
                rep.ack is None:
            newer_seq = seq_diff(rep.seq, conn.rcv_nxt & M32) > 0
            newer_ts = (conn.ts_ok and rep.timestamps is not None
                        and seq_diff(rep.timestamps[0], conn.ts_recent) > 0)
            lsock = self.find_listener(dst, rep.dst_port, src, rep.src_port)
            if (newer_seq or newer_ts) and lsock is not None:
                # RFC 6191 / Linux TCP_TW_SYN: reopen from TIME-WAIT with a larger ISN.
                iss = (conn.snd_nxt + 65535 + 2) & M32
                conn._done(now)
                self.post(conn)
                conn = None
        if conn is not None:
            conn.handle_segment(rep, payload, now)
            self.post(conn)
            if self._blocked and conn in self._blocked and len(self._blocked) > 1:
                self._retry_blocked(now)
            return
        lsock = self.find_listener(dst, rep.dst_port, src, rep.src_port)
        if lsock is not None and lsock.listener is not None:
            lsock.listener.handle_segment(self, src, dst, rep, payload, nic_id, now, iss)
            return
        self.stats["no_socket"] += 1
        log.debug("no socket for %s:%d -> %s:%d flags=%#x: RST", src, rep.src_port, dst,
                  rep.dst_port, int(rep.flags))
        self.send_reset(src, dst, rep, len(payload))

    def find_listener(self, dst: "IPAddress", port: int, src: "IPAddress",
                      sport: int) -> "TcpSocket | None":
        cands = self.listeners.get(port)
        if not cands:
            return None
        best: list["TcpSocket"] = []
        best_score = -1
        for s in cands:
            b = s.binding
            if b is None:
                continue
            if dst.version == 4:
                if b.addr.version == 4 and b.family == AF_INET:
                    score = 2 if b.addr == dst else (1 if b.addr == V4_ANY else -1)
                elif b.family == AF_INET6 and not b.v6only:
                    score = 2 if b.addr == dst else (
                        0 if b.addr in (V6_ANY, V4_ANY) else -1)
                else:
                    score = -1
            else:
                if b.family != AF_INET6 or b.addr.version != 6:
                    score = -1
                else:
                    score = 2 if b.addr == dst else (1 if b.addr == V6_ANY else -1)
            if score > best_score:
                best, best_score = [s], score
            elif score == best_score and score >= 0:
                best.append(s)
        if best_score < 0 or not best:
            return None
        if len(best) == 1:
            return best[0]
        h = hash((src, sport, dst, port))
        return best[h % len(best)]

    def handle_icmp_error(self, err: "IcmpError", now: float) -> None:
        q = err.quoted_transport
        if len(q) < 8:
            return
        sport = int.from_bytes(q[0:2], "big")
        dport = int.from_bytes(q[2:4], "big")
        seq = int.from_bytes(q[4:8], "big")
        conn = self.conns.get(conn_key(err.src, sport, err.dst, dport))
        if conn is None:
            return
        is_pmtu = (err.family == AF_INET and err.type == 3 and err.code == 4) or \
            (err.family == AF_INET6 and err.type == 2)
        if err.family == AF_INET and err.type == 4:
            return  # source quench: ignored (RFC 6633)
        conn.handle_icmp(err.errno, err.mtu, seq, is_pmtu, now)
        self.post(conn)

    # ---------------------------------------------------------------- timers

    def handle_timer(self, now: float) -> None:
        if self._tsq_ready_at is not None and now >= self._tsq_ready_at:
            self._tsq_resume(now)
        if self._blocked_retry_at is not None and now >= self._blocked_retry_at:
            self._retry_blocked(now)
        heap = self._heap
        while heap and heap[0][0] <= now:
            dl, _, conn = heapq.heappop(heap)
            if conn.dead or conn.scheduled_at != dl:
                continue
            conn.scheduled_at = None
            conn.handle_timer(now)
            self.post(conn)

    def next_deadline(self) -> float | None:
        heap = self._heap
        best = self._blocked_retry_at
        ready = self._tsq_ready_at
        if ready is not None and (best is None or ready < best):
            best = ready
        while heap:
            dl, _, conn = heap[0]
            if conn.dead or conn.scheduled_at != dl:
                heapq.heappop(heap)
                continue
            return dl if best is None or dl < best else best
        return best
