"""Passive open: the SYN queue, the accept queue and SYN cookies.

RFC 9293 3.10.7.2 (LISTEN state), RFC 4987 3.6 (SYN cookies) in Linux's
shape: the SYN queue holds half-open connections (SYN-RECEIVED) up to the
backlog; when it is full and ``tcp_syncookies`` allows, the SYN-ACK carries
a cookie and no state is kept; the accept queue holds established
connections up to backlog + 1 (Linux ``sk_acceptq_is_full``: ``>``). A SYN
that arrives while the accept queue is full is dropped, and so is a final
ACK (the peer retransmits; Linux ``tcp_abort_on_overflow`` = 0).
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from netvisor.tcpip.tcp.connection import Connection
from netvisor.tcpip.tcp.constants import State
from netvisor.tcpip.tcp.syncookies import CookieOptions, decode_ts, encode_ts
from netvisor.tcpip.wire.tcp import TcpFlags, TcpRepr

if TYPE_CHECKING:
    from netvisor.tcpip.api import IPAddress
    from netvisor.tcpip.tcp.transport import TcpTransport

log = logging.getLogger(__name__)


class Listener:
    """The listening half of a socket."""

    __slots__ = ("sock", "backlog", "syn_queue", "accept_queue", "cookies_sent",
                 "syn_dropped", "overflows")

    def __init__(self, sock: Any, backlog: int) -> None:
        self.sock = sock
        self.backlog = backlog
        self.syn_queue: set[Connection] = set()
        self.accept_queue: deque[Connection] = deque()
        self.cookies_sent = 0
        self.syn_dropped = 0
        self.overflows = 0

    def accept_full(self) -> bool:
        return len(self.accept_queue) > self.backlog

    def handle_segment(self, t: "TcpTransport", src: "IPAddress", dst: "IPAddress",
                       rep: TcpRepr, payload: memoryview, nic_id: int, now: float,
                       iss: int | None = None) -> None:
        """A segment for a listening port with no connection (RFC 9293 3.10.7.2)."""
        flags = int(rep.flags)
        if flags & TcpFlags.RST:
            return
        if rep.ack is not None:
            if self.accept_full() and not flags & TcpFlags.SYN:
                # Linux listen_overflow (tcp_abort_on_overflow = 0): drop, no RST;
                # the peer retransmits and may fit later.
                self.overflows += 1
                return
            if not flags & TcpFlags.SYN and t.config.syncookies and self._cookie_ack(
                    t, src, dst, rep, payload, nic_id, now):
                return
            log.debug("listener %s: ACK from %s:%d matches no request or cookie: RST",
                      rep.dst_port, src, rep.src_port)
            t.send_reset(src, dst, rep, len(payload))
            return
        if not flags & TcpFlags.SYN:
            return
        if self.accept_full():
            self.overflows += 1
            log.debug("listener %s: accept queue full, SYN dropped", rep.dst_port)
            return
        cookie = t.config.syncookies == 2 or len(self.syn_queue) >= max(self.backlog, 1)
        if cookie and not t.config.syncookies:
            self.syn_dropped += 1
            return
        try:
            route = t.ctx.route(src, src=dst)
        except Exception:  # noqa: BLE001 - no route back: nothing to answer
            return
        if cookie:
            self._send_cookie(t, src, dst, rep, route, now)
            return
        conn = Connection(t, self.sock.opts.clone(), self.sock.family, dst, rep.dst_port,
                          src, rep.src_port, route, now)
        conn.listener = self
        t.register_connection(conn, self.sock)
        self.syn_queue.add(conn)
        conn.open_passive(rep, now, iss=iss)
        t.post(conn)

    def _send_cookie(self, t: "TcpTransport", src: "IPAddress", dst: "IPAddress",
                     syn: TcpRepr, route: Any, now: float) -> None:
        peer_mss = syn.mss or 536
        isn, mss = t.cookies.make(src, dst, syn.src_port, syn.dst_port, syn.seq, peer_mss, now)
        self.cookies_sent += 1
        cfg = t.config
        ts = None
        ws = None
        sack = False
        if cfg.timestamps and syn.timestamps is not None:
            # Options survive only through the timestamp (Linux cookie_init_timestamp).
            sack = cfg.sack and syn.sack_permitted
            peer_ws = syn.window_scale if cfg.window_scaling else None
            tsval = encode_ts((int(now * 1000) + t.isn_gen.ts_offset(dst, src)) & 0xFFFFFFFF,
                              CookieOptions(mss, peer_ws, sack))
            ts = (tsval, syn.timestamps[0])
            if peer_ws is not None:
                ws = t.listener_wscale(self.sock)
        advmss = max(88, route.mtu - (40 if dst.version == 4 else 60))
        if self.sock.opts.user_mss:
            advmss = min(advmss, self.sock.opts.user_mss)
        rep = TcpRepr(syn.dst_port, syn.src_port, isn, (syn.seq + 1) & 0xFFFFFFFF,
                      TcpFlags.SYN, min(65535, t.initial_window(self.sock)), 0, advmss, ws,
                      sack, (), ts)
        t.output_raw(route, src, rep, dst)

    def _cookie_ack(self, t: "TcpTransport", src: "IPAddress", dst: "IPAddress", rep: TcpRepr,
                    payload: memoryview, nic_id: int, now: float) -> bool:
        """An ACK that may complete a cookie handshake (Linux cookie_v4_check)."""
        if self.accept_full():
            return False
        peer_isn = (rep.seq - 1) & 0xFFFFFFFF
        cookie = ((rep.ack or 0) - 1) & 0xFFFFFFFF
        mss = t.cookies.check(src, dst, rep.src_port, rep.dst_port, peer_isn, cookie, now)
        if mss is None:
            return False
        ws: int | None = None
        sack = False
        ts_ok = False
        if rep.timestamps is not None and t.config.timestamps:
            ws, sack, _ecn = decode_ts(rep.timestamps[1])
            ts_ok = True
            sack = sack and t.config.sack
        try:
            route = t.ctx.route(src, src=dst)
        except Exception:  # noqa: BLE001
            return False
        conn = Connection(t, self.sock.opts.clone(), self.sock.family, dst, rep.dst_port,
                          src, rep.src_port, route, now)
        conn.listener = self
        t.register_connection(conn, self.sock)
        syn = TcpRepr(rep.src_port, rep.dst_port, peer_isn, None, TcpFlags.SYN, rep.window, 0,
                      mss, ws, sack, (), (rep.timestamps[0], 0) if ts_ok and rep.timestamps
                      else None)
        conn.passive = True
        conn.iss = cookie
        conn.snd_una = conn.snd_nxt = cookie
        conn.irs = peer_isn
        conn.rcv_nxt = conn.rcv_adv = conn.last_ack_sent = peer_isn + 1
        conn._negotiate(syn, t.config.window_scaling, t.config.sack, t.config.timestamps)
        if ts_ok and rep.timestamps is not None:
            conn.ts_recent = rep.timestamps[0]
            conn.ts_recent_at = now
        conn.snd_nxt = cookie + 1
        conn._set_state(State.SYN_RECEIVED)
        conn.rcv_adv = conn.rcv_nxt + min(t.initial_window(self.sock), 65535)
        conn.handle_segment(rep, payload, now)
        t.post(conn)
        return not conn.dead

    def established(self, conn: Connection) -> None:
        self.syn_queue.discard(conn)
        self.accept_queue.append(conn)

    def forget(self, conn: Connection) -> None:
        self.syn_queue.discard(conn)
        try:
            self.accept_queue.remove(conn)
        except ValueError:
            pass

    def close(self, now: float) -> None:
        """Linux inet_csk_listen_stop: drop half-open requests, reset queued children."""
        for conn in list(self.syn_queue):
            conn.listener = None
            conn.abort(now, send_rst=False)
        self.syn_queue.clear()
        while self.accept_queue:
            conn = self.accept_queue.popleft()
            conn.listener = None
            conn.orphan = True
            conn.abort(now, send_rst=True)
