"""One TCP connection: the RFC 9293 state machine and its data paths, sans-IO.

Everything that changes a connection's state lives here (h11's rule). Read
first: RFC 9293 3.3.2 (states), 3.10.7 (SEGMENT ARRIVES), 3.8 (timeouts).

Implemented: RFC 9293 (all states: active, passive and simultaneous open,
simultaneous close, half-close, RST rules, acceptability tests), RFC 5961
(challenge ACKs for in-window RST and any SYN, ACK range check), RFC 6298
(RTO, Karn, backoff; ``rtt.py``), RFC 7323 (window scale, timestamps, PAWS),
RFC 2018/2883 (SACK, D-SACK generation), RFC 6675 (SACK loss recovery; pipe
and IsLost by bytes, ``sack.py``), RFC 6582 (NewReno partial ACKs without
SACK), RFC 5681 (congestion control via ``congestion/``), RFC 1122 4.2.3.2
delayed ACK (every second full segment, Linux 40-200 ms timer, quick-ack at
start), RFC 896 Nagle with TCP_NODELAY/TCP_CORK, RFC 1122 4.2.3.3/4 silly
window avoidance on both sides, zero-window probing with backoff, RFC 6691
MSS, RFC 5927 ICMP validation and RFC 1191/8201 PMTU, keepalive,
TCP_USER_TIMEOUT, TIME_WAIT and FIN_WAIT_2 timeouts.

Layout: this module holds the TCB fields and the input side (opening,
SEGMENT ARRIVES, ACK processing and recovery entry, segment text, closing,
ICMP); ``output.py`` the send path and ``timers.py`` timer expiry, bound
into :class:`Connection` as methods.

Deliberate departures (documented where they happen):

* Sequence numbers are unwrapped at the boundary: every received SEQ/ACK is
  converted with ``seq_diff`` against RCV.NXT/SND.UNA into an unbounded
  integer, so the state machine compares plain integers. Wire values are
  the low 32 bits.
* Urgent data is tolerated and delivered in line (as with SO_OOBINLINE);
  MSG_OOB is not supported.
* Loss detection combines RFC 6675's byte rule (DupThresh * MSS SACKed
  above a hole, DupThresh adapting to seen reordering) with RACK's time rule
  for original transmissions (``rack.py``); a lost retransmission is found
  when data sent after it is SACKed (Linux's older tcp_mark_lost_retrans)
  rather than by RACK's per-segment re-timing. TLP as RFC 8985 7.
* Spurious episodes are undone as Linux does: RTOs and fast recoveries by
  timestamps (Eifel, RFC 3522/4015; tcp_packet_delayed) or when every
  retransmission of the episode was D-SACKed (RFC 3708, tcp_try_undo_dsack);
  no F-RTO (RFC 5682). RACK.rtt is the latest RTT sample (timestamps),
  not the delivered segment's own: with our 1 ms timestamp clock and no
  per-segment retransmission stamps this is the conservative choice, and
  measured better under heavy reordering (tests/unit/tcp/test_reordering.py).
* No ECN, no TCP Fast Open, no pacing. HyStart++ (RFC 9406) only with
  timestamps' 1 ms RTT samples (Linux HyStart uses microsecond samples).
"""

from __future__ import annotations

import errno
import logging
from typing import TYPE_CHECKING, Any

from netvisor.tcpip.tcp import congestion
from netvisor.tcpip.tcp.constants import (
    DEFAULT_MSS_V4,
    DEFAULT_MSS_V6,
    FIN,
    M32,
    MAX_WSCALE,
    PAWS_24DAYS,
    PSH,
    QUICKACK_SEGMENTS,
    RCV_SHUTDOWN,
    RECEIVING_STATES,
    RST,
    SENDING_STATES,
    SHUTDOWN_MASK,
    SYN,
    SYNCHRONIZED,
    CaState,
    State,
)
from netvisor.tcpip.tcp import output as _output
from netvisor.tcpip.tcp import timers as _timers
from netvisor.tcpip.tcp.options import SockOpts
from netvisor.tcpip.tcp.rack import Rack
from netvisor.tcpip.tcp.recv_buffer import RecvBuffer
from netvisor.tcpip.tcp.rtt import RttEstimator
from netvisor.tcpip.tcp.sack import Scoreboard
from netvisor.tcpip.tcp.send_buffer import SendBuffer
from netvisor.tcpip.wire.checksum import pseudo_header_sum
from netvisor.tcpip.wire.seq import seq_diff
from netvisor.tcpip.wire.tcp import TcpRepr

if TYPE_CHECKING:
    from netvisor.tcpip.api import IPAddress, Route
    from netvisor.tcpip.tcp.transport import TcpTransport

log = logging.getLogger(__name__)




NEIGH_CONFIRM_INTERVAL = 0.05
"""Seconds between neighbour confirmations from one connection's ACKs. Linux
confirms per ACK (a store in C); here each costs a few dict lookups, and a
REACHABLE entry lasts ReachableTime (15-45 s, RFC 4861 6.3.2), so confirming
once per 50 ms keeps it exactly as reachable."""


def conn_key(laddr: "IPAddress", lport: int, raddr: "IPAddress", rport: int) -> tuple[int, ...]:
    """The key of ``TcpTransport.conns``: address integers, not address objects.

    ``ipaddress`` hashes an address in Python (``hash(hex(int(ip)))``), twice per
    tuple hash, and the table is looked up for every segment received; a tuple
    of ints hashes in C. An IPv6 key has a fifth item, so an IPv4 connection
    never equals the IPv6 one whose address integers happen to be the same.
    """
    if laddr.version == 4:
        return (laddr._ip, lport, raddr._ip, rport)  # type: ignore[union-attr]
    return (laddr._ip, lport, raddr._ip, rport, 6)  # type: ignore[union-attr]


class _ConnLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes records with the connection's 4-tuple, formatted only when a
    record is emitted (formatting four addresses per connection cost ~3 us)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        c: Any = (self.extra or {}).get("conn")
        name = f"{c.laddr}:{c.lport}->{c.raddr}:{c.rport}" if c is not None else "?"
        return f"[{name}] {msg}", kwargs


class Connection:
    """A TCP control block (Linux ``struct tcp_sock``) and its rules.

    Inputs: ``handle_segment``, ``handle_timer``, ``handle_icmp`` and user
    calls (``send``, ``recv``, ``shutdown_write``, ``close``, ``abort``).
    Output goes through the owning :class:`TcpTransport`; deadlines are the
    ``*_at`` fields, summarised by ``next_deadline()``.
    """

    __slots__ = (
        "host", "opts", "family", "laddr", "lport", "raddr", "rport", "route", "state",
        "sock", "listener", "passive", "orphan", "sk_err", "sk_err_soft", "shutdown",
        "iss", "irs", "snd_una", "snd_nxt", "snd_wnd", "snd_wl1", "snd_wl2", "max_snd_wnd",
        "snd_wscale", "rcv_wscale", "rcv_nxt", "rcv_adv", "last_ack_sent",
        "sndbuf", "rcvbuf", "fin_queued", "fin_seq", "peer_fin_seq",
        "mss_clamp", "peer_mss", "snd_mss", "advmss", "rcv_mss", "pmtu",
        "ts_ok", "ts_recent", "ts_recent_at", "ts_offset", "sack_ok", "ws_ok",
        "rtt", "rtt_seq", "rtt_sent_at", "cc", "ca_state", "recover", "high_rxt",
        "dupacks", "board", "force_rxt", "retransmits", "total_retrans", "rtx_first_at",
        "rtx_at", "persist_at", "persist_backoff", "probes_out", "delack_at", "keepalive_at",
        "tw_at", "defer_at", "ack_pending", "quickack", "unacked_rcv", "dsack",
        "last_rcv_at", "last_send_at", "last_data_recv_at", "last_ack_recv_at",
        "created_at", "defer_acked", "rcv_space", "rcv_space_copied", "rcv_space_at",
        "bytes_acked", "bytes_received", "bytes_sent", "bytes_retrans", "segs_in", "segs_out",
        "data_segs_in", "data_segs_out", "ato", "syn_retries", "log", "scheduled_at",
        "wake_pending", "key", "dead", "rcv_wnd_clamp", "bind_key", "lost_count",
        "ca_name", "reordering", "rack", "rack_at", "tlp_at", "snd_sml", "cork_at",
        "more_pending", "pingpong", "output_pending", "rtx_marks", "undo", "spurious_rtos",
        "rcv_rtt", "ack_soon_at", "tsq_bytes", "tsq_throttled", "tsq_local",
        "neigh_confirmed_at",
        "undo_marker", "undo_retrans", "undos", "pseudo",
    )

    def __init__(self, host: "TcpTransport", opts: SockOpts, family: int,
                 laddr: "IPAddress", lport: int, raddr: "IPAddress", rport: int,
                 route: "Route", now: float) -> None:
        cfg = host.config
        self.host = host
        self.opts = opts
        self.family = family
        self.laddr, self.lport, self.raddr, self.rport = laddr, lport, raddr, rport
        self.key = conn_key(laddr, lport, raddr, rport)
        self.bind_key: Any = None
        self.route = route
        self.state = State.CLOSED
        self.sock: Any = None
        self.listener: Any = None
        self.passive = False
        self.orphan = False
        self.dead = False
        self.sk_err = 0
        self.sk_err_soft = 0
        self.shutdown = 0
        self.iss = host.isn_gen.isn(laddr, lport, raddr, rport, now)
        self.irs = 0
        self.snd_una = self.iss
        self.snd_nxt = self.iss
        self.snd_wnd = 0
        self.snd_wl1 = 0
        self.snd_wl2 = 0
        self.max_snd_wnd = 0
        self.snd_wscale = 0
        self.rcv_wscale = 0
        self.rcv_nxt = 0
        self.rcv_adv = 0
        self.last_ack_sent = 0
        self.sndbuf = SendBuffer(self.iss + 1)
        self.rcvbuf = RecvBuffer()
        self.fin_queued = False
        self.fin_seq = 0
        self.peer_fin_seq: int | None = None
        self.pmtu = route.mtu
        self.advmss = self._mss_for_mtu(route.mtu)
        if opts.user_mss:
            self.advmss = min(self.advmss, opts.user_mss)
        self.mss_clamp = self.advmss
        self.peer_mss = DEFAULT_MSS_V4 if laddr.version == 4 else DEFAULT_MSS_V6
        self.snd_mss = min(self.peer_mss, self.advmss)
        self.rcv_mss = min(self.advmss, DEFAULT_MSS_V4)
        self.ts_ok = False
        self.ts_recent = 0
        self.ts_recent_at = -PAWS_24DAYS
        self.ts_offset = host.isn_gen.ts_offset(laddr, raddr)
        self.sack_ok = False
        self.ws_ok = False
        self.rtt = RttEstimator(cfg.rto_initial, cfg.rto_min, cfg.rto_max)
        self.rtt_seq: int | None = None
        self.rtt_sent_at = 0.0
        self.ca_name = opts.congestion or cfg.congestion_control
        self.cc = congestion.make(self.ca_name, self.snd_mss, cfg.initial_cwnd_segments)
        self.ca_state = CaState.OPEN
        self.recover = self.iss
        self.high_rxt = self.iss
        self.dupacks = 0
        self.board = Scoreboard()
        self.force_rxt = False
        self.retransmits = 0
        self.total_retrans = 0
        self.lost_count = 0
        self.rtx_first_at: float | None = None
        self.rtx_at: float | None = None
        self.persist_at: float | None = None
        self.persist_backoff = 0
        self.probes_out = 0
        self.delack_at: float | None = None
        self.keepalive_at: float | None = None
        self.tw_at: float | None = None
        self.defer_at: float | None = None
        self.defer_acked = False
        self.ack_pending = False
        self.quickack = QUICKACK_SEGMENTS
        self.unacked_rcv = 0
        self.dsack: tuple[int, int] | None = None
        self.created_at = now
        self.last_rcv_at = now
        self.last_send_at = now
        self.last_data_recv_at = now
        self.last_ack_recv_at = now
        self.rcv_space = 0
        self.rcv_space_copied = 0
        self.rcv_space_at = now
        self.rcv_wnd_clamp = 0
        self.bytes_acked = self.bytes_received = self.bytes_sent = self.bytes_retrans = 0
        self.segs_in = self.segs_out = self.data_segs_in = self.data_segs_out = 0
        self.ato = cfg.delack_min
        self.syn_retries = 0
        self.scheduled_at: float | None = None
        self.wake_pending = False
        self.reordering = host.config.reordering
        self.rack = Rack()
        self.snd_sml = 0
        self.cork_at: float | None = None
        self.more_pending = False
        self.pingpong = 0
        self.output_pending = False
        self.rtx_marks: list[list[Any]] = []
        """[start, end, snd_nxt when sent, time sent] per retransmission in flight."""
        self.undo: tuple[int, int, int] | None = None
        """(cwnd, ssthresh, TSval of the first retransmission or -1) to restore if the
        episode proves spurious (Linux prior_cwnd/prior_ssthresh/retrans_stamp)."""
        self.pseudo = pseudo_header_sum(laddr, raddr, 6, 0)
        """Pseudo-header partial sum without the length (addresses are fixed)."""
        self.undo_marker = 0
        """SND.UNA when the episode began (Linux tp->undo_marker)."""
        self.undo_retrans = -1
        """Retransmitted segments of the episode not yet D-SACKed (tp->undo_retrans);
        -1 until the episode retransmits anything."""
        self.spurious_rtos = 0
        self.undos = 0
        self.rcv_rtt: float | None = None
        self.ack_soon_at: float | None = None
        self.rack_at: float | None = None
        self.tlp_at: float | None = None
        self.tsq_bytes = 0
        """Bytes handed to the network layer that its NIC queue has not drained yet."""
        self.tsq_throttled = False
        self.tsq_local: bool | None = None
        """Peer is one of our addresses (local delivery: no NIC queue to drain)."""
        self.neigh_confirmed_at = -NEIGH_CONFIRM_INTERVAL
        self.log = _ConnLog(log, {"conn": self})

    # ------------------------------------------------------------------ helpers

    def _mss_for_mtu(self, mtu: int) -> int:
        # RFC 6691: MSS = MTU - fixed IP header - fixed TCP header.
        return max(88, mtu - (20 if self.laddr.version == 4 else 40) - 20)

    def _set_state(self, new: State) -> None:
        if new != self.state:
            if self.log.isEnabledFor(logging.DEBUG):  # enum .name costs ~1 us each
                self.log.debug("%s -> %s", self.state.name, new.name)
            self.state = new
            self.wake_pending = True

    @property
    def rcvbuf_limit(self) -> int:
        """The receive buffer size (SO_RCVBUF semantics: Linux's sk_rcvbuf)."""
        return self.opts.rcvbuf or max(self.rcv_space_buf, self.host.config.rmem[1])

    @property
    def rcv_space_buf(self) -> int:
        return self.rcv_space * 4 if self.rcv_space else 0

    @property
    def sndbuf_limit(self) -> int:
        """Send buffer size: SO_SNDBUF when set, else grows with cwnd (tcp_sndbuf_expand)."""
        if self.opts.sndbuf is not None:
            return self.opts.sndbuf
        cfg = self.host.config
        return min(cfg.wmem[2], max(cfg.wmem[1], 2 * max(self.cc.cwnd, self.max_snd_wnd)))

    def window_space(self) -> int:
        """Bytes of buffer usable for the advertised window (tcp_adv_win_scale=1: half)."""
        # rcvbuf_limit inlined, without min/max calls: this runs for every segment sent.
        opts = self.opts
        buf = opts.rcvbuf
        if not buf:
            buf = self.host.config.rmem[1]
            tuned = self.rcv_space * 4
            if tuned > buf:
                buf = tuned
        space = buf // 2
        clamp = opts.window_clamp
        if clamp and clamp < space:
            space = clamp
        return space if space > 0 else 0

    def ts_now(self, now: float | None = None) -> int:
        """Our TSval clock: 1 ms ticks (Linux TCP_TS_HZ) plus a per-pair offset."""
        if now is None:
            now = self.host.ctx.now
        return (int(now * 1000) + self.ts_offset) & M32

    @property
    def flight(self) -> int:
        return self.snd_nxt - self.snd_una

    @property
    def unsent(self) -> int:
        return self.sndbuf.end - self.snd_nxt if self.snd_nxt <= self.sndbuf.end else 0

    def writable_space(self) -> int:
        """Bytes ``send`` would accept now."""
        return max(0, self.sndbuf_limit - len(self.sndbuf))

    def notsent_bytes(self) -> int:
        return max(0, self.sndbuf.end - self.snd_nxt)

    def next_deadline(self) -> float | None:
        best: float | None = None
        for t in (self.rtx_at, self.persist_at, self.delack_at, self.keepalive_at,
                  self.tw_at, self.defer_at, self.rack_at, self.tlp_at, self.cork_at,
                  self.ack_soon_at):
            if t is not None and (best is None or t < best):
                best = t
        return best

    def wake(self) -> None:
        self.wake_pending = True

    # ------------------------------------------------------------------ opening

    def _select_wscale(self) -> int:
        # Linux tcp_select_initial_window: the smallest shift that lets the
        # largest possible buffer (tcp_rmem[2] / SO_RCVBUF) fit the 16-bit window.
        space = max(self.host.config.rmem[2], self.rcvbuf_limit)
        if self.opts.window_clamp:
            space = min(space, self.opts.window_clamp)
        ws = 0
        while (space >> ws) > 65535 and ws < MAX_WSCALE:
            ws += 1
        return ws

    def open_active(self, now: float) -> None:
        """connect(): send a SYN (RFC 9293 3.10.4 OPEN, active)."""
        cfg = self.host.config
        self.ws_ok = cfg.window_scaling
        self.rcv_wscale = self._select_wscale() if self.ws_ok else 0
        self.sack_ok = cfg.sack
        self.ts_ok = cfg.timestamps
        self.snd_nxt = self.iss + 1
        self._set_state(State.SYN_SENT)
        self._send_syn(now)
        self.rtx_at = now + self.rtt.rto

    def open_passive(self, syn: TcpRepr, now: float, *, iss: int | None = None,
                     cookie_opts: Any = None) -> None:
        """A listener accepted a SYN: go to SYN-RECEIVED and answer SYN-ACK (RFC 9293 3.10.7.2)."""
        cfg = self.host.config
        self.passive = True
        if iss is not None:
            self.iss = iss
            self.snd_una = self.snd_nxt = iss
            self.sndbuf = SendBuffer(iss + 1)
            self.recover = self.high_rxt = iss
        self.irs = syn.seq
        self.rcv_nxt = syn.seq + 1
        self.rcv_adv = self.rcv_nxt
        self.last_ack_sent = self.rcv_nxt
        self._negotiate(syn, cfg.window_scaling, cfg.sack, cfg.timestamps)
        self.snd_wnd = syn.window  # never scaled in a SYN (RFC 7323 2.2)
        self.max_snd_wnd = self.snd_wnd
        self.snd_wl1 = syn.seq
        self.snd_wl2 = self.iss
        self.snd_nxt = self.iss + 1
        self._set_state(State.SYN_RECEIVED)
        if syn.timestamps is not None and self.ts_ok:
            self.ts_recent = syn.timestamps[0]
            self.ts_recent_at = now
        self._send_syn(now)
        self.rtx_at = now + self.rtt.rto

    def _negotiate(self, syn: TcpRepr, ws: bool, sack: bool, ts: bool) -> None:
        """Option negotiation from the peer's SYN (RFC 7323 2.2/3.2, RFC 2018 2)."""
        self.ws_ok = ws and syn.window_scale is not None
        if self.ws_ok:
            self.snd_wscale = min(syn.window_scale or 0, MAX_WSCALE)
            if self.state != State.SYN_SENT:
                self.rcv_wscale = self._select_wscale()
        else:
            self.snd_wscale = self.rcv_wscale = 0
        self.sack_ok = sack and syn.sack_permitted
        self.ts_ok = ts and syn.timestamps is not None
        if syn.mss is not None and syn.mss > 0:
            self.peer_mss = syn.mss
        self._update_mss()

    def _update_mss(self) -> None:
        """Effective send MSS (RFC 6691, RFC 9293 3.7.1): peer MSS, PMTU, options, user clamp."""
        mss = min(self.peer_mss, self._mss_for_mtu(self.pmtu))
        if self.opts.user_mss:
            mss = min(mss, self.opts.user_mss)
        if self.ts_ok:
            mss -= 12  # Linux tcp_current_mss: room for the timestamp option
        mss = max(mss, 48)
        self.snd_mss = mss
        self.cc.set_mss(mss)

    def _send_syn(self, now: float) -> None:
        """SYN (active) or SYN-ACK (passive / simultaneous open) with our options."""
        synack = self.state == State.SYN_RECEIVED
        ts = (self.ts_now(now), self.ts_recent if synack else 0) if self.ts_ok else None
        # RFC 7323 2.2: the window in a SYN or SYN-ACK is never scaled.
        wnd = min(self.window_space(), 65535)
        if synack:
            self.rcv_adv = self.rcv_nxt + wnd
        ack = (self.rcv_nxt & M32) if synack else None
        if ts is not None and self.ws_ok and self.sack_ok:
            self._emit_syn_fast(ack, wnd, ts[0], ts[1], now)
        else:
            rep = TcpRepr(self.lport, self.rport, self.iss & M32, ack, SYN, wnd, 0, self.advmss,
                          self.rcv_wscale if self.ws_ok else None, self.sack_ok, (), ts)
            self._emit(rep, 0, 0, now)
        if self.rtt_seq is None and self.syn_retries == 0:
            self.rtt_seq = self.iss
            self.rtt_sent_at = now

    # ------------------------------------------------------------------ output

    # ------------------------------------------------------------------ user calls

    def send(self, data: bytes | memoryview, now: float, more: bool = False) -> int:
        """Queue up to ``len(data)`` bytes; returns how many were taken (0 = no room)."""
        room = self.writable_space()
        if room <= 0:
            return 0
        n = min(room, len(data))
        self.sndbuf.append(data[:n] if n < len(data) else data)
        if self.flight == 0 and now - self.last_send_at > self.rtt.rto:
            # RFC 5681 4.1: restart window after idle.
            self.cc.on_idle_restart(self.host.config.initial_cwnd_segments)
        # MSG_MORE holds a partial segment like TCP_CORK until the next plain send.
        self.more_pending = more
        self.transmit(now)
        return n

    def recv(self, n: int, now: float, peek: bool = False) -> bytes:
        data = self.rcvbuf.read(n, peek)
        if data and not peek:
            self._rcv_space_adjust(len(data), now)
            self._maybe_window_update(now)
        return data

    def _rcv_space_adjust(self, copied: int, now: float) -> None:
        """Receive-buffer auto-tuning (Linux tcp_rcv_space_adjust, dynamic right-sizing).

        Once per RTT, if the application read more than the window space
        allows, grow the buffer to four times that amount (two RTTs of data,
        doubled for the tcp_adv_win_scale half). Locked by SO_RCVBUF.
        """
        self.rcv_space_copied += copied
        rtt = self.rcv_rtt or self.rtt.srtt or 0.1
        if now - self.rcv_space_at < rtt:
            return
        copied = self.rcv_space_copied
        self.rcv_space_copied = 0
        self.rcv_space_at = now
        if self.opts.rcvbuf is None and copied > self.rcv_space:
            self.rcv_space = min(copied, self.host.config.rmem[2] // 4)

    def _maybe_window_update(self, now: float) -> None:
        # Linux tcp_cleanup_rbuf: send a window update when the window can
        # at least double (or opens from zero by a full segment).
        if self.state not in RECEIVING_STATES:
            return
        cur = max(0, self.rcv_adv - self.rcv_nxt)
        space = self.window_space()
        free = max(0, space - len(self.rcvbuf) - self.rcvbuf.ooo_bytes)
        if free >= 2 * cur and free - cur >= min(self.rcv_mss, space // 2):
            self.send_ack(now)

    def queue_fin(self, now: float) -> None:
        """Mark the end of the send stream (after all queued data)."""
        if not self.fin_queued:
            self.fin_queued = True
            self.fin_seq = self.sndbuf.end

    def shutdown_write(self, now: float) -> None:
        """shutdown(SHUT_WR) / close: send FIN (Linux tcp_close_state + tcp_send_fin)."""
        st = self.state
        if st in (State.ESTABLISHED, State.SYN_RECEIVED):
            self._set_state(State.FIN_WAIT_1)
        elif st == State.CLOSE_WAIT:
            self._set_state(State.LAST_ACK)
        elif st == State.SYN_SENT:
            self._done(now)
            return
        else:
            return
        self.queue_fin(now)
        self.transmit(now)

    def abort(self, now: float, *, send_rst: bool = True, err: int = 0) -> None:
        """Drop the connection, sending RST from a synchronized state (Linux tcp_disconnect)."""
        if send_rst and self.state in (State.ESTABLISHED, State.CLOSE_WAIT, State.FIN_WAIT_1,
                                       State.FIN_WAIT_2, State.SYN_RECEIVED, State.CLOSING,
                                       State.LAST_ACK):
            self.send_rst(now)
        if err:
            self.sk_err = err
        self._done(now)

    def close(self, now: float) -> None:
        """close(2) on the socket (Linux __tcp_close)."""
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("close: state=%s sent=%d recv=%d retrans=%d cwnd=%d ssthresh=%d "
                           "snd_wnd=%d max_snd_wnd=%d rcv_window=%d srtt=%s", self.state.name,
                           self.bytes_sent, self.bytes_received, self.total_retrans,
                           self.cc.cwnd, self.cc.ssthresh, self.snd_wnd, self.max_snd_wnd,
                           self.window_space(), self.rtt.srtt)
        self.orphan = True
        self.shutdown = SHUTDOWN_MASK
        unread = len(self.rcvbuf)
        linger_on, linger_secs = self.opts.linger
        if self.state == State.CLOSED:
            self._done(now)
            return
        if unread:
            # RFC 9293 3.10.4 / RFC 2525 2.17, Linux: unread data -> RST, not FIN.
            if self.state in SYNCHRONIZED or self.state == State.SYN_RECEIVED:
                self.send_rst(now)
            self._done(now)
            return
        if linger_on and linger_secs == 0:
            self.abort(now)
            return
        self.shutdown_write(now)
        if self.state == State.FIN_WAIT_2:
            self._arm_fin_wait2(now)

    def _arm_fin_wait2(self, now: float) -> None:
        linger2 = self.opts.linger2
        tmo = self.host.config.fin_timeout if linger2 is None else linger2
        if tmo < 0:
            # Linux: TCP_LINGER2 < 0 resets right away.
            self.abort(now)
            return
        self.tw_at = now + tmo

    # ------------------------------------------------------------------ teardown

    def _done(self, now: float) -> None:
        """Connection is gone (Linux tcp_done): CLOSED, timers off, shutdown both ways."""
        if self.log.isEnabledFor(logging.DEBUG):
            self.log.debug("done: sent=%d retrans=%d (%d bytes) recoveries=%d tlp=%d dsacks=%d "
                           "srtt=%s cwnd=%d reordering=%d err=%d", self.bytes_sent,
                           self.total_retrans, self.bytes_retrans, self.lost_count,
                           self.rack.probes, self.rack.dsacks, self.rtt.srtt, self.cc.cwnd,
                           self.reordering, self.sk_err)
        self._set_state(State.CLOSED)
        self.shutdown = SHUTDOWN_MASK
        self.rtx_at = self.persist_at = self.delack_at = self.keepalive_at = None
        self.tw_at = self.defer_at = None
        self.rack_at = self.tlp_at = self.cork_at = self.ack_soon_at = None
        self.sndbuf.clear()
        self.dead = True
        self.wake_pending = True
        self.host.connection_closed(self)

    def _reset_received(self, now: float) -> None:
        """Linux tcp_reset: the errno depends on the state."""
        st = self.state
        if st == State.SYN_SENT:
            self.sk_err = errno.ECONNREFUSED
        elif st == State.CLOSE_WAIT:
            self.sk_err = errno.EPIPE
        elif st in (State.CLOSED, State.TIME_WAIT):
            pass
        elif st == State.SYN_RECEIVED and self.passive:
            pass  # RFC 9293: back to LISTEN; the request simply disappears
        else:
            self.sk_err = errno.ECONNRESET
        self._done(now)

    def _enter_time_wait(self, now: float) -> None:
        self._set_state(State.TIME_WAIT)
        self.rtx_at = self.persist_at = self.keepalive_at = self.delack_at = None
        self.rack_at = self.tlp_at = self.cork_at = None
        self.tw_at = now + self.host.config.time_wait_timeout
        self.sndbuf.clear()

    # ------------------------------------------------------------------ input

    def handle_segment(self, rep: TcpRepr, payload: memoryview, now: float) -> None:
        """SEGMENT ARRIVES (RFC 9293 3.10.7.3 SYN-SENT, 3.10.7.4 other states)."""
        self.segs_in += 1
        st = self.state
        if st is State.ESTABLISHED and self._predicted(rep, payload, now):
            pass
        elif st == State.SYN_SENT:
            self._segment_syn_sent(rep, payload, now)
        elif st == State.CLOSED:
            return
        else:
            self._segment_synchronized(rep, payload, now)
        if self.dead:
            return
        if self.output_pending:
            self.output_pending = False
            self.transmit(now)
            if self.state in SENDING_STATES and self.flight == 0 and self.unsent > 0 \
                    and self.snd_wnd == 0 and self.persist_at is None:
                self._arm_persist(now)
        elif self.ack_pending and self.state in SYNCHRONIZED:
            self.transmit(now)

    def _predicted(self, rep: TcpRepr, payload: memoryview, now: float) -> bool:
        """Header prediction (Linux tcp_rcv_established's fast path, after Van Jacobson).

        The segment every established transfer is made of: in sequence, ACK
        (and PSH) only, no SACK blocks, timestamps that pass PAWS, a non-zero
        send window, an ACK inside [SND.UNA, SND.NXT] that either advances it
        or comes with data, while nothing unusual is going on (no recovery,
        no SACK scoreboard, no FIN either way, no receive shutdown). Such a
        segment is processed here with exactly the effects the full
        ``_segment_synchronized`` path has on it; anything else returns False
        untouched and takes the full path.
        """
        if int(rep.flags) & ~PSH or rep.ack is None or rep.sack_blocks:
            return False
        nxt = self.rcv_nxt
        if rep.seq != nxt & M32:
            return False
        ts = rep.timestamps
        if self.ts_ok and (ts is None or (ts[0] - self.ts_recent) & 0x80000000):
            return False  # PAWS (RFC 7323 5.3) or a missing timestamp: full checks
        una = self.snd_una
        d = (rep.ack - una) & M32
        plen = len(payload)
        if d > self.snd_nxt - una or (d == 0 and plen == 0):
            return False  # duplicate ACK, window probe, or an ACK of unsent data
        wnd = rep.window << self.snd_wscale
        if (not wnd or self.ca_state or self.board or self.dupacks
                or self.fin_queued or self.peer_fin_seq is not None or self.shutdown
                & RCV_SHUTDOWN or self.undo is not None or self.rtx_marks):
            return False
        ack = una + d
        self.last_rcv_at = now
        self.probes_out = 0
        self.last_ack_recv_at = now
        # _process_ack, for this segment: TS.Recent (RFC 7323 4.3), window
        # bookkeeping (unchanged value), the ACK; no SACK, no dup-ACK, no loss.
        if ts is not None and self.ts_ok and nxt <= self.last_ack_sent:
            self.ts_recent = ts[0]
            self.ts_recent_at = now
        if self.snd_wl1 < nxt or (self.snd_wl1 == nxt and self.snd_wl2 <= ack):
            self.snd_wnd = wnd
            self.snd_wl1 = nxt
            self.snd_wl2 = ack
            if wnd > self.max_snd_wnd:
                self.max_snd_wnd = wnd
            self.persist_at = None  # wnd > 0 here
            self.persist_backoff = 0
        if d:
            self._ack_advanced(rep, ack, now)
        if self.snd_wnd > 0 and self.unsent > 0:
            self.persist_at = None
        self.output_pending = True
        if plen:
            self._process_text(nxt, payload, rep, now)
        if self.opts.keepalive:
            self._arm_keepalive(now)
        else:
            self.keepalive_at = None
        return True

    def _segment_syn_sent(self, rep: TcpRepr, payload: memoryview, now: float) -> None:
        flags = int(rep.flags)
        ack_ok = False
        if rep.ack is not None:
            ack = self.snd_una + seq_diff(rep.ack, self.snd_una & M32)
            # RFC 9293 3.10.7.3 first: SEG.ACK =< ISS or > SND.NXT is unacceptable.
            if ack <= self.iss or ack > self.snd_nxt:
                if not flags & RST:
                    self.host.send_reset_for(self, rep, len(payload))
                return
            ack_ok = True
        if flags & RST:
            # RFC 5961 3.2 / RFC 9293: in SYN-SENT a RST is only valid with an acceptable ACK.
            if ack_ok:
                self._reset_received(now)
            return
        if not flags & SYN:
            return
        self.irs = rep.seq
        self.rcv_nxt = rep.seq + 1
        self.rcv_adv = self.rcv_nxt
        self.last_ack_sent = self.rcv_nxt
        self._negotiate(rep, self.ws_ok, self.sack_ok, self.ts_ok)
        if rep.timestamps is not None and self.ts_ok:
            self.ts_recent = rep.timestamps[0]
            self.ts_recent_at = now
        if ack_ok:
            self.snd_una = self.snd_una + seq_diff(rep.ack or 0, self.snd_una & M32)
            self.sndbuf = SendBuffer(self.snd_una)
            self.high_rxt = self.recover = self.snd_una
            self.snd_wnd = rep.window  # SYN-ACK window is unscaled (RFC 7323 2.2)
            self.max_snd_wnd = self.snd_wnd
            self.snd_wl1 = rep.seq
            self.snd_wl2 = self.snd_una
            self._rtt_from_syn(rep, now)
            self.rtx_at = None
            self.retransmits = 0
            self.rtt.backoff = 0
            self._set_state(State.ESTABLISHED)
            self._established(now)
            if payload:
                self._process_text(self.rcv_nxt, payload, rep, now)
            # RFC 9293: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, now.
            self.ack_pending = True
            self.transmit(now)
        else:
            # Simultaneous open (RFC 9293 3.10.7.3, figure 7): SYN-RECEIVED, SYN-ACK.
            self.snd_wnd = rep.window
            self.max_snd_wnd = self.snd_wnd
            self.snd_wl1 = rep.seq
            self._set_state(State.SYN_RECEIVED)
            self._send_syn(now)

    def _rtt_from_syn(self, rep: TcpRepr, now: float) -> None:
        if self.syn_retries == 0 and self.rtt_seq is not None:
            self.rtt.sample(now - self.rtt_sent_at)
        elif self.ts_ok and rep.timestamps and rep.timestamps[1]:
            self.rtt.sample(((self.ts_now() - rep.timestamps[1]) & M32) / 1000)
        elif self.syn_retries > 0:
            # RFC 6298 5.7 / Linux TCP_TIMEOUT_FALLBACK: no sample after a lost
            # SYN -> RTO of 3 s once data flows.
            self.rtt.base_rto = max(self.rtt.base_rto, 3.0)
        if self.syn_retries > 1:
            # RFC 5681 3.1 / Linux tcp_init_transfer: lost SYNs -> initial window of 1.
            self.cc.cwnd = self.snd_mss
        self.rtt_seq = None
        self.rcv_space_at = now

    def _established(self, now: float) -> None:
        """Common work on reaching ESTABLISHED."""
        self.sndbuf = SendBuffer(self.snd_una) if len(self.sndbuf) == 0 else self.sndbuf
        self.recover = self.high_rxt = self.snd_una
        self.rcv_space = min(self.window_space(), 10 * self.advmss)
        self._arm_keepalive(now)
        self.wake_pending = True

    def _arm_keepalive(self, now: float) -> None:
        if self.opts.keepalive and self.state in (State.ESTABLISHED, State.CLOSE_WAIT,
                                                  State.FIN_WAIT_1, State.FIN_WAIT_2):
            idle = self.opts.keepidle or self.host.config.keepalive_time
            self.keepalive_at = self.last_rcv_at + idle
        else:
            self.keepalive_at = None

    def _paws_reject(self, rep: TcpRepr, now: float) -> bool:
        # RFC 7323 5.3 R1: drop a segment whose TSval is older than TS.Recent,
        # unless TS.Recent is more than 24 days old (5.5). RSTs are exempt (Linux).
        if not self.ts_ok or rep.timestamps is None or int(rep.flags) & RST:
            return False
        tsval = rep.timestamps[0]
        if seq_diff(tsval, self.ts_recent) >= 0:
            return False
        if now - self.ts_recent_at > PAWS_24DAYS:
            return False
        return True

    def _segment_synchronized(self, rep: TcpRepr, payload: memoryview, now: float) -> None:
        flags = int(rep.flags)
        st = self.state
        plen = len(payload)
        seg_seq = self.rcv_nxt + seq_diff(rep.seq, self.rcv_nxt & M32)
        seg_end = seg_seq + plen + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        # PAWS first (RFC 7323 5.3).
        if self._paws_reject(rep, now):
            self.ack_pending = True
            return
        # RFC 9293 3.10.7.4 first check, with Linux's tcp_sequence leniency.
        wnd = max(0, self.rcv_adv - self.rcv_nxt)
        acceptable = seg_end >= self.rcv_nxt and seg_seq <= self.rcv_nxt + wnd
        if plen == 0 and not flags & (SYN | FIN) and seg_seq > self.rcv_nxt + wnd:
            acceptable = False
        if st == State.TIME_WAIT:
            self._segment_time_wait(rep, seg_seq, seg_end, acceptable, now)
            return
        if not acceptable:
            if not flags & RST:
                if plen and seg_end <= self.rcv_nxt:
                    self.dsack = (seg_seq, seg_end)  # RFC 2883: report the duplicate
                self.ack_pending = True
            return
        self.last_rcv_at = now
        self.probes_out = 0 if rep.ack is not None else self.probes_out
        # Second: RST (RFC 5961 3.2).
        if flags & RST:
            if seg_seq == self.rcv_nxt or (
                    seg_seq == self.rcv_nxt - 1 and self.peer_fin_seq is not None):
                self._reset_received(now)
            else:
                self._challenge_ack(now)
            return
        # Fourth: SYN (RFC 5961 4.2: challenge ACK, whatever the sequence number).
        if flags & SYN:
            if st == State.SYN_RECEIVED and self.passive and seg_seq == self.irs:
                self._send_syn(now)  # retransmitted SYN: answer SYN-ACK again
                return
            self._challenge_ack(now)
            return
        # Fifth: ACK.
        if rep.ack is None:
            return
        ack = self.snd_una + seq_diff(rep.ack, self.snd_una & M32)
        if st == State.SYN_RECEIVED:
            if not self.snd_una < ack <= self.snd_nxt:
                self.host.send_reset_for(self, rep, plen)
                return
            if self.passive and self.opts.defer_accept and plen == 0 and not flags & FIN:
                # TCP_DEFER_ACCEPT: wait for data before waking accept (Linux).
                if self.defer_at is None:
                    self.defer_at = self.created_at + self.opts.defer_accept
                self.defer_acked = True
                self.rtx_at = None
                return
            if not self.host.can_establish(self):
                return  # accept queue full: drop the ACK, SYN-ACK will be resent (Linux)
            self._syn_received_acked(rep, ack, now)
        if ack > self.snd_nxt:
            # RFC 5961 5.2 / RFC 9293: ACK for data not yet sent -> ACK and drop.
            self._challenge_ack(now)
            return
        if ack < self.snd_una - max(self.max_snd_wnd, 1):
            self._challenge_ack(now)  # RFC 5961 5.2: too old
            return
        self.last_ack_recv_at = now
        self._process_ack(rep, ack, seg_seq, plen, now)
        if self.dead:
            return
        st = self.state
        # Seventh: segment text.
        if plen:
            if st in RECEIVING_STATES:
                if self.shutdown & RCV_SHUTDOWN and self.orphan and \
                        seg_end - (1 if flags & FIN else 0) > self.rcv_nxt:
                    # Linux tcp_rcv_state_process: data after close -> RST (ABORTONDATA).
                    self.send_rst(now)
                    self._reset_received(now)
                    return
                self._process_text(seg_seq, payload, rep, now)
        # Eighth: FIN.
        delay_ok = False
        if flags & FIN:
            fin_at = seg_seq + plen
            if self.peer_fin_seq is None and fin_at >= self.rcv_nxt:
                self.peer_fin_seq = fin_at
            # Only the FIN asks for this ACK (no gap, no D-SACK, nothing else due).
            delay_ok = not self.ack_pending and not self.rcvbuf.ooo and self.dsack is None
            self.ack_pending = True
        self._check_fin(now, delay_ok)
        self._arm_keepalive(now)

    def _syn_received_acked(self, rep: TcpRepr, ack: int, now: float) -> None:
        self.snd_una = ack
        self.sndbuf = SendBuffer(ack)
        self.snd_wnd = rep.window << self.snd_wscale
        self.max_snd_wnd = max(self.max_snd_wnd, self.snd_wnd)
        self.snd_wl1 = self.rcv_nxt + seq_diff(rep.seq, self.rcv_nxt & M32)
        self.snd_wl2 = ack
        self._rtt_from_syn(rep, now)
        self.rtx_at = None
        self.retransmits = 0
        self.rtt.backoff = 0
        self.defer_at = None
        self._set_state(State.ESTABLISHED)
        self._established(now)
        self.host.connection_established(self)

    def _segment_time_wait(self, rep: TcpRepr, seg_seq: int, seg_end: int, acceptable: bool,
                           now: float) -> None:
        """TIME-WAIT input, as Linux tcp_timewait_state_process (tcp_rfc1337 = 0)."""
        flags = int(rep.flags)
        if seg_seq == self.rcv_nxt and (seg_end == seg_seq or flags & RST):
            if flags & RST:
                self._done(now)  # an in-sequence RST kills TIME-WAIT
            return  # a bare in-sequence ACK: nothing to do
        if flags & RST:
            return  # any other RST is ignored
        # Everything else (retransmitted FIN, old data, a SYN no listener wants) is
        # ACKed; with an ACK flag the 2MSL timer restarts (RFC 9293 3.10.7.4).
        if rep.ack is not None:
            self.tw_at = now + self.host.config.time_wait_timeout
        if self.host.challenge_ack_allowed(now):
            self.send_ack(now)

    def _challenge_ack(self, now: float) -> None:
        if self.host.challenge_ack_allowed(now):
            self.send_ack(now)

    def _process_ack(self, rep: TcpRepr, ack: int, seg_seq: int, plen: int, now: float) -> None:
        """RFC 9293 3.10.7.4 fifth check, RFC 5681/6675/6582 recovery, RFC 7323 timestamps."""
        prior_una = self.snd_una
        # Update TS.Recent (RFC 7323 4.3: SEG.SEQ <= Last.ACK.sent).
        if self.ts_ok and rep.timestamps is not None and seg_seq <= self.last_ack_sent:
            if seq_diff(rep.timestamps[0], self.ts_recent) >= 0 or \
                    now - self.ts_recent_at > PAWS_24DAYS:
                self.ts_recent = rep.timestamps[0]
                self.ts_recent_at = now
        # Window update (RFC 9293 3.10.7.4: SND.WL1 < SEG.SEQ or (= and SND.WL2 =< SEG.ACK)).
        wnd = rep.window << self.snd_wscale
        window_changed = False
        if self.snd_wl1 < seg_seq or (self.snd_wl1 == seg_seq and self.snd_wl2 <= ack):
            if wnd != self.snd_wnd:
                window_changed = True
            self.snd_wnd = wnd
            self.snd_wl1 = seg_seq
            self.snd_wl2 = ack
            if wnd > self.max_snd_wnd:
                self.max_snd_wnd = wnd
            if wnd > 0:
                self.persist_at = None
                self.persist_backoff = 0
        newly_sacked = 0
        if self.sack_ok and rep.sack_blocks:
            newly_sacked = self._process_sack(rep.sack_blocks, ack)
            if (self.undo_retrans == 0 and self.undo is not None
                    and self.ca_state in (CaState.RECOVERY, CaState.LOSS)):
                # Every retransmission of the episode was D-SACKed: the originals
                # had arrived, nothing was lost (RFC 3708; Linux tcp_try_undo_dsack).
                self._undo_episode(now)
        acked = ack - prior_una
        if acked > 0:
            self._ack_advanced(rep, ack, now)
        elif (ack == prior_una and plen == 0 and not int(rep.flags) & (FIN | SYN)
              and not window_changed and self.flight > 0):
            # RFC 5681 2: a duplicate ACK.
            self.dupacks += 1
        if self.flight > 0 or self.unsent:
            self._detect_loss(now, newly_sacked)
        if self.rtx_marks and newly_sacked:
            self._lost_retransmissions(now)
        # State changes that an ACK of our FIN causes.
        fin_acked = self.fin_queued and self.snd_una > self.fin_seq
        st = self.state
        if fin_acked:
            if st == State.FIN_WAIT_1:
                self._set_state(State.FIN_WAIT_2)
                self.rtx_at = None
                if self.orphan:
                    self._arm_fin_wait2(now)
            elif st == State.CLOSING:
                self._enter_time_wait(now)
            elif st == State.LAST_ACK:
                self._done(now)
                return
        if self.snd_wnd > 0 and self.unsent > 0:
            self.persist_at = None
        # Transmission waits until the segment's text and FIN are processed
        # (handle_segment), so that what we send acknowledges them too.
        self.output_pending = True

    def _process_sack(self, blocks: tuple[tuple[int, int], ...], ack: int) -> int:
        newly = 0
        una = self.snd_una
        for i, (l, r) in enumerate(blocks):
            s = una + seq_diff(l, una & M32)
            e = una + seq_diff(r, una & M32)
            if e <= s or e > self.snd_nxt:
                continue  # invalid block (RFC 2018 / Linux tcp_is_sackblock_valid)
            if i == 0 and s < ack:
                self._dsack_seen(s, e)  # D-SACK (RFC 2883 4): below the cumulative ACK
                continue
            if s < ack:
                continue
            if i == 0 and len(blocks) > 1:
                s2 = una + seq_diff(blocks[1][0], una & M32)
                e2 = una + seq_diff(blocks[1][1], una & M32)
                if s2 <= s and e <= e2:
                    self._dsack_seen(s, e)  # D-SACK inside the second block
                    continue
            if s < una:
                # An ACK older than SND.UNA (reordered ACKs): only the part above counts.
                s = una
                if e <= s:
                    continue
            prior_high = self.board.high
            added = self.board.add(s, e)
            if added and prior_high is not None and s < prior_high and not (
                    self.ca_state in (CaState.RECOVERY, CaState.LOSS) and s < self.high_rxt):
                # Reordering seen: a never-retransmitted segment below the highest
                # SACK arrived late. Raise DupThresh to its distance (Linux
                # tcp_check_sack_reordering), bounded like tcp_max_reordering.
                dist = -(-(prior_high - s) // max(self.snd_mss, 1))
                self.reordering = min(max(self.reordering, dist + 1), 300)
                self.rack.reord_seen = True
            newly += added
        return newly

    def _dsack_seen(self, s: int, e: int) -> None:
        """A D-SACK: data we sent twice arrived twice (Linux tcp_dsack_seen).

        It widens RACK's reordering window (RFC 8985 6.2 step 4), and when it
        covers a retransmission of the current episode it counts towards
        undoing it (RFC 3708; Linux undo_retrans, tcp_try_undo_dsack).
        """
        self.rack.dsack(self.host.ctx.now, self.rtt.srtt or 0.0)
        self.rack.reord_seen = True
        if self.undo is not None and s >= self.undo_marker and self.undo_retrans > 0:
            self.undo_retrans -= max(1, -(-(e - s) // max(self.snd_mss, 1)))

    def _start_undo(self) -> None:
        """Remember what a spurious episode must give back (Linux tcp_init_undo)."""
        self.undo = (self.cc.cwnd, self.cc.ssthresh, self.ts_now() if self.ts_ok else -1)
        self.undo_marker = self.snd_una
        self.undo_retrans = -1

    def _undo_episode(self, now: float) -> None:
        """The recovery or RTO episode was spurious: restore cwnd/ssthresh and go
        back to OPEN (Linux tcp_undo_cwnd_reduction + tcp_try_keep_open; RFC 4015)."""
        assert self.undo is not None
        cwnd, ssthresh, _ = self.undo
        if self.ca_state == CaState.LOSS:
            self.spurious_rtos += 1
        self.cc.cwnd = max(self.cc.cwnd, cwnd)
        self.cc.ssthresh = max(self.cc.ssthresh, ssthresh)
        self.ca_state = CaState.DISORDER if self.board else CaState.OPEN
        self.high_rxt = self.snd_nxt
        self.recover = self.snd_una
        self.force_rxt = False
        self.rtx_marks.clear()
        self.undo = None
        self.undos += 1
        self.log.debug("undo: cwnd=%d ssthresh=%d", self.cc.cwnd, self.cc.ssthresh)

    def _ack_advanced(self, rep: TcpRepr, ack: int, now: float) -> None:
        prior_una = self.snd_una
        acked = ack - prior_una
        data_acked = self.sndbuf.consume(min(ack, self.sndbuf.end))
        self.snd_una = ack
        # Forward progress confirms the neighbour (Linux tcp_ack -> sk_dst_confirm),
        # at most every NEIGH_CONFIRM_INTERVAL: an entry stays REACHABLE for 15-45 s.
        if now - self.neigh_confirmed_at >= NEIGH_CONFIRM_INTERVAL:
            self.neigh_confirmed_at = now
            self.host.confirm_neighbor(self)
        self.bytes_acked += data_acked
        self.board.advance(ack)
        self.rack.acked(ack, now)
        if self.rack.tlp_high is not None and ack >= self.rack.tlp_high:
            self.rack.tlp_high = None
        if self.high_rxt < ack:
            self.high_rxt = ack
        # RTT (RFC 7323 4.1 with timestamps, else one timed segment with Karn's rule).
        sample: float | None = None
        if self.ts_ok and rep.timestamps is not None and rep.timestamps[1]:
            sample = ((self.ts_now(now) - rep.timestamps[1]) & M32) / 1000
            if sample > 600:
                sample = None
        elif self.rtt_seq is not None and ack > self.rtt_seq:
            if self.retransmits == 0 and self.ca_state != CaState.LOSS:
                sample = now - self.rtt_sent_at
            self.rtt_seq = None
        if sample is not None:
            self.rtt.sample(sample)
        if self.cc.hystart.enabled and self.cc.in_slow_start():
            self.cc.on_round_sample(ack, self.snd_nxt, sample)
        self.rtt.backoff = 0
        self.retransmits = 0
        self.rtx_first_at = None
        self.probes_out = 0
        flight = self.flight
        # Eifel detection (RFC 3522) with the RFC 4015 response, as Linux
        # tcp_packet_delayed: an ACK echoing a timestamp older than our first
        # retransmission acknowledges the original, so the episode was spurious:
        # restore the window and stop resending what is in flight. After an RTO
        # at once (tcp_try_undo_loss); in fast recovery once no retransmission
        # is left outstanding (tcp_try_undo_partial / tcp_try_undo_recovery).
        undo = self.undo
        if (undo is not None and undo[2] >= 0 and self.ca_state in (CaState.LOSS,
                                                                     CaState.RECOVERY)
                and rep.timestamps is not None and rep.timestamps[1]
                and seq_diff(rep.timestamps[1], undo[2]) < 0
                and (self.ca_state == CaState.LOSS or ack >= self.high_rxt
                     or ack >= self.recover)):
            self._undo_episode(now)
        # Congestion control and recovery (RFC 6582 3.2, RFC 6675 5).
        if self.ca_state in (CaState.RECOVERY, CaState.LOSS):
            if ack >= self.recover:
                if self.ca_state == CaState.RECOVERY:
                    self.cc.on_recovery_exit()
                self.ca_state = CaState.OPEN
                self.dupacks = 0
                self.rtx_marks.clear()
                self.undo = None
            else:
                if not self.sack_ok:
                    # Partial ACK: NewReno (RFC 6582 3.2 step 5) deflates by acked segments.
                    self.dupacks = max(0, self.dupacks - max(1, acked // self.snd_mss))
                if self.ca_state == CaState.LOSS:
                    self.cc.on_ack(data_acked, self.rtt.srtt, now, flight)
                else:
                    self.force_rxt = not self.sack_ok
        else:
            self.dupacks = 0
            if self.ca_state == CaState.DISORDER and not self.board:
                self.ca_state = CaState.OPEN
            self.cc.on_ack(data_acked, self.rtt.srtt, now, flight)
        # RFC 6298 5.2/5.3: stop or restart the retransmission timer.
        if self.snd_una >= self.snd_nxt:
            self.rtx_at = None
        else:
            self.rtx_at = now + self._clamped_rto(now)
        if data_acked:
            self.wake_pending = True

    def _lost_retransmissions(self, now: float) -> None:
        """Resend a retransmission that was lost too (RFC 8985 6.1's effect; Linux's
        older tcp_mark_lost_retrans): data sent after it has been SACKed while the
        retransmitted range is still a hole. Without this, only the RTO finds it.
        """
        high = self.board.high
        if high is None:
            return
        una = self.snd_una
        keep: list[list[Any]] = []
        for mark in self.rtx_marks:
            s, e, sent_before, _ = mark
            if e <= una:
                continue
            keep.append(mark)
            if high <= sent_before + self.snd_mss:
                continue  # nothing sent after it has been delivered yet

            pos = max(s, una)
            resent = False
            mss = self._cur_mss()
            while True:
                hole = self.board.next_hole(pos, e)
                if hole is None:
                    break
                # The hole is resent in pieces that fit beside today's options.
                hs, he = hole[0], min(hole[1], hole[0] + self._tso_limit(mss))
                self._send_range(hs, he, now, retrans=True)
                pos = he
                resent = True
            if resent:
                mark[2] = self.snd_nxt
                mark[3] = now
        self.rtx_marks = keep

    def _detect_loss(self, now: float, newly_sacked: int) -> None:
        if self.ca_state in (CaState.RECOVERY, CaState.LOSS):
            return
        thr = self.reordering
        lost = False
        if self.sack_ok and self.board:
            lost = self._sack_lost_end() > self.snd_una
            if not lost and self.dupacks >= thr and not self.board.is_sacked(self.snd_una):
                lost = True
            if not lost:
                self.ca_state = CaState.DISORDER
        elif self.dupacks >= thr and self.snd_una > self.recover - 1:
            # RFC 6582 3.2 step 1/2: only when the ACK covers more than "recover".
            lost = True
        elif self.dupacks:
            self.ca_state = CaState.DISORDER
        if lost:
            self._enter_recovery(now)

    def _enter_recovery(self, now: float) -> None:
        self._start_undo()
        self.cc.on_loss(now, self.flight)
        self.cc.cwnd = max(self.cc.ssthresh, 2 * self.snd_mss)
        self.ca_state = CaState.RECOVERY
        self.recover = self.snd_nxt
        self.high_rxt = self.snd_una
        self.force_rxt = True
        self.lost_count += 1
        self.log.debug("fast recovery: cwnd=%d", self.cc.cwnd)

    def _clamped_rto(self, now: float) -> float:
        rto = self.rtt.rto
        ut = self.opts.user_timeout
        if ut and self.rtx_first_at is not None:
            # Linux tcp_clamp_rto_to_user_timeout.
            rto = max(0.001, min(rto, self.rtx_first_at + ut - now))
        return rto

    def _process_text(self, seg_seq: int, payload: memoryview, rep: TcpRepr, now: float) -> None:
        """Queue segment data (RFC 9293 3.10.7.4 seventh), in order or out of order."""
        plen = len(payload)
        end = seg_seq + plen
        self.last_data_recv_at = now
        self.data_segs_in += 1
        if self.ts_ok and rep.timestamps is not None and rep.timestamps[1]:
            # Receiver-side RTT from echoed timestamps (Linux tcp_rcv_rtt_measure_ts),
            # for buffer auto-tuning on connections that only receive.
            sample = ((self.ts_now(now) - rep.timestamps[1]) & M32) / 1000
            if sample < 600:
                r = self.rcv_rtt
                self.rcv_rtt = sample if r is None or sample < r else r + (sample - r) / 8
        if plen > self.rcv_mss:
            self.rcv_mss = min(plen, self.advmss)
        if end <= self.rcv_nxt:
            self.dsack = (seg_seq, end)
            self.ack_pending = True
            return
        wnd_end = self.rcv_adv if self.rcv_adv > self.rcv_nxt else self.rcv_nxt
        if seg_seq >= wnd_end:
            # Beyond the window (e.g. zero-window probe with data): ACK, drop.
            self.ack_pending = True
            return
        if end > wnd_end:
            payload = payload[:wnd_end - seg_seq]
            end = wnd_end
        if seg_seq < self.rcv_nxt:
            self.dsack = (seg_seq, self.rcv_nxt)
            payload = payload[self.rcv_nxt - seg_seq:]
            seg_seq = self.rcv_nxt
        if seg_seq == self.rcv_nxt:
            self.rcvbuf.append(payload)
            n = len(payload)
            self.rcv_nxt += n
            self.bytes_received += n
            had_ooo = bool(self.rcvbuf.ooo)
            if had_ooo:
                before = self.rcv_nxt
                self.rcv_nxt = self.rcvbuf.pull_ooo(self.rcv_nxt)
                self.bytes_received += self.rcv_nxt - before
                # RFC 5681 4.2: ACK at once when a segment fills (part of) a gap.
                self.ack_pending = True
            self.unacked_rcv += n
            ack_now = False
            if self.quickack > 0 and not self.pingpong:
                # Linux quick-ack mode (start of a connection, TCP_QUICKACK): ACK every
                # segment, unless the exchange is interactive (tcp_in_quickack_mode).
                self.quickack -= max(1, n // max(self.rcv_mss, 1))
                ack_now = True
            elif self.unacked_rcv >= 2 * self.rcv_mss:
                # RFC 1122 4.2.3.2 / RFC 5681 4.2: ACK at least every second full segment.
                ack_now = True
            if ack_now and not self.ack_pending:
                # Due now, but sent by the timer pass that ends the driver's turn:
                # one ACK covers every in-order segment of the batch (what GRO does
                # for Linux), unless data leaving in this turn carries it first.
                self.ack_soon_at = now
            elif not self.ack_pending and self.delack_at is None:
                self.delack_at = now + self.ato
            self.wake_pending = True
        else:
            self.rcvbuf.add_ooo(seg_seq, payload, self.host.config.max_ooo_segments)
            # RFC 5681 4.2: out-of-order data -> immediate duplicate ACK (with SACK).
            self.ack_pending = True
            self.quickack = max(self.quickack, 1)

    def _check_fin(self, now: float, delay_ok: bool = False) -> None:
        """Consume the peer's FIN once everything before it arrived (RFC 9293 eighth).

        ``delay_ok``: the in-order FIN is the only reason to ACK. Then, as Linux
        ``tcp_fin`` (ESTABLISHED -> CLOSE_WAIT enters pingpong mode and only
        schedules the ACK), the ACK is delayed: an application that closes on
        EOF sends its FIN with it, one segment instead of two per connection.
        """
        if self.peer_fin_seq is None or self.rcv_nxt != self.peer_fin_seq:
            return
        if self.shutdown & RCV_SHUTDOWN and self.state in (State.CLOSE_WAIT, State.CLOSING,
                                                            State.LAST_ACK, State.TIME_WAIT):
            return
        st = self.state
        if st not in (State.SYN_RECEIVED, State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2):
            return
        self.rcv_nxt += 1
        self.peer_fin_seq = -1  # consumed
        self.shutdown |= RCV_SHUTDOWN
        self.ack_pending = True
        self.delack_at = None
        self.wake_pending = True
        if st in (State.SYN_RECEIVED, State.ESTABLISHED):
            self._set_state(State.CLOSE_WAIT)
            if delay_ok:
                self.pingpong = max(self.pingpong, 1)
                self.ack_pending = False
                self.delack_at = now + self.ato
                return
        elif st == State.FIN_WAIT_1:
            fin_acked = self.fin_queued and self.snd_una > self.fin_seq
            if fin_acked:
                self._enter_time_wait(now)
            else:
                self._set_state(State.CLOSING)  # simultaneous close
        elif st == State.FIN_WAIT_2:
            self._enter_time_wait(now)
        self.send_ack(now)

    # ------------------------------------------------------------------ timers

    # ------------------------------------------------------------------ send path, timers
    # Defined in output.py and timers.py (one job per module), bound here as methods.
    _emit = _output._emit
    _emit_fast = _output._emit_fast
    _emit_syn_fast = _output._emit_syn_fast
    _select_window = _output._select_window
    _header = _output._header
    send_ack = _output.send_ack
    send_rst = _output.send_rst
    _tso_limit = _output._tso_limit
    _tsq_limit = _output._tsq_limit
    _cur_mss = _output._cur_mss
    _seg_mss = _output._seg_mss
    _send_range = _output._send_range
    _lost_end = _output._lost_end
    _sack_lost_end = _output._sack_lost_end
    pipe = _output.pipe
    transmit = _output.transmit
    _finish_output = _output._finish_output
    _schedule_tlp = _output._schedule_tlp
    _on_tlp = _output._on_tlp
    _arm_persist = _output._arm_persist
    handle_timer = _timers.handle_timer
    _timed_out = _timers._timed_out
    _write_err = _timers._write_err
    _on_rto = _timers._on_rto
    _on_persist = _timers._on_persist
    _on_keepalive = _timers._on_keepalive

    # ------------------------------------------------------------------ ICMP

    def handle_icmp(self, err_errno: int, mtu: int, quoted_seq: int, is_pmtu: bool,
                    now: float) -> None:
        """An ICMP error quoting our segment (RFC 5927 4.1 validation, RFC 1191/8201 PMTU)."""
        seq = self.snd_una + seq_diff(quoted_seq, self.snd_una & M32)
        if not self.snd_una <= seq <= self.snd_nxt:
            return  # RFC 5927 4.1: not in flight -> ignore
        if is_pmtu:
            if mtu <= 0 or mtu >= self.pmtu:
                return
            floor = 1280 if self.laddr.version == 6 else 552  # RFC 8201 / Linux min_pmtu
            self.pmtu = max(mtu, floor)
            self.host.pmtu_changed(self, self.pmtu)
            self._update_mss()
            if self.state in SENDING_STATES and self.flight > 0:
                # Linux tcp_simple_retransmit: resend what no longer fits now.
                self.high_rxt = self.snd_una
                self.recover = self.snd_nxt
                self.ca_state = CaState.LOSS
                self.force_rxt = True
                self.transmit(now)
            return
        if self.state in (State.SYN_SENT, State.SYN_RECEIVED) and not self.passive:
            # Linux tcp_v4_err: hard errors abort a connection attempt.
            self.sk_err = err_errno
            self._done(now)
            return
        if self.state == State.SYN_RECEIVED and self.passive:
            self._done(now)
            return
        self.sk_err_soft = err_errno
