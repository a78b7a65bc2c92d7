"""Timer expiry of a connection: RTO, zero-window probes, keepalive, TLP, delayed ACK,
TIME-WAIT / FIN-WAIT-2 lifetimes, TCP_DEFER_ACCEPT and the cork ceiling.

Mixed into :class:`~netvisor.tcpip.tcp.connection.Connection`. Timers are the
``*_at`` fields (absolute seconds); ``handle_timer(now)`` runs whatever is due.
RFC 6298 5 (RTO expiry, backoff), RFC 5681 3.1 (loss window), RFC 9293 3.8.6.1
(zero-window probing), RFC 1122 4.2.3.6 (keepalive), RFC 5482 / Linux
(TCP_USER_TIMEOUT), Linux tcp_write_err (ETIMEDOUT or the soft ICMP error).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from netvisor.tcpip.tcp.constants import (
    NOFLAGS,
    M32,
    SENDING_STATES,
    SYNCHRONIZED,
    CaState,
    State,
)
from netvisor.tcpip.wire.tcp import TcpRepr

if TYPE_CHECKING:
    from netvisor.tcpip.tcp.connection import Connection

# Each function takes the connection as ``self``: Connection binds them as its
# methods (``transmit = output.transmit``), so state stays in one place while
# each module keeps one job.



def handle_timer(self: "Connection", now: float) -> None:
    """Run every timer of the connection that is due at ``now``."""
    if self.dead:
        return
    if self.tw_at is not None and now >= self.tw_at:
        self.tw_at = None
        if self.state in (State.TIME_WAIT, State.FIN_WAIT_2):
            self._done(now)
            return
    if self.defer_at is not None and now >= self.defer_at:
        self.defer_at = None
        if self.state == State.SYN_RECEIVED and self.defer_acked:
            if self.host.can_establish(self):
                rep = TcpRepr(self.rport, self.lport, self.irs + 1 & M32,
                              (self.iss + 1) & M32, NOFLAGS, self.snd_wnd >> self.snd_wscale)
                self._syn_received_acked(rep, self.iss + 1, now)
    if self.rtx_at is not None and now >= self.rtx_at:
        self.rtx_at = None
        self.tlp_at = None
        self._on_rto(now)
        if self.dead:
            return
    if self.cork_at is not None and now >= self.cork_at:
        self.cork_at = None
        if self.state in SENDING_STATES and self.unsent > 0:
            cork, self.opts.cork = self.opts.cork, False
            more, self.more_pending = self.more_pending, False
            nodelay, self.opts.nodelay = self.opts.nodelay, True
            try:
                self.transmit(now)
            finally:
                self.opts.cork, self.opts.nodelay = cork, nodelay
                self.more_pending = more and self.unsent > 0
    if self.tlp_at is not None and now >= self.tlp_at:
        self.tlp_at = None
        self._on_tlp(now)
    if self.rack_at is not None and now >= self.rack_at:
        self.rack_at = None
        if self.state in SENDING_STATES and self.flight > 0:
            self._detect_loss(now, 0)
            self.transmit(now)
    if self.persist_at is not None and now >= self.persist_at:
        self.persist_at = None
        self._on_persist(now)
        if self.dead:
            return
    if self.keepalive_at is not None and now >= self.keepalive_at:
        self.keepalive_at = None
        self._on_keepalive(now)
        if self.dead:
            return
    if self.ack_soon_at is not None and now >= self.ack_soon_at:
        self.ack_soon_at = None
        if self.state in SYNCHRONIZED and (self.last_ack_sent != self.rcv_nxt
                                           or self.unacked_rcv):
            self.send_ack(now)
    if self.delack_at is not None and now >= self.delack_at:
        self.delack_at = None
        self.pingpong = 0  # Linux tcp_delack_timer_handler leaves pingpong mode
        if self.state in SYNCHRONIZED and self.last_ack_sent != self.rcv_nxt:
            self.send_ack(now)
        elif self.state in SYNCHRONIZED and self.unacked_rcv:
            self.send_ack(now)


def _timed_out(self: "Connection", now: float, limit: int) -> bool:
    ut = self.opts.user_timeout
    if ut and self.rtx_first_at is not None:
        return now - self.rtx_first_at >= ut
    return self.retransmits > limit


def _write_err(self: "Connection", now: float) -> None:
    """Linux tcp_write_err: ETIMEDOUT (or the soft ICMP error), no RST."""
    self.sk_err = self.sk_err_soft or errno.ETIMEDOUT
    self._done(now)


def _on_rto(self: "Connection", now: float) -> None:
    cfg = self.host.config
    st = self.state
    if self.rtx_first_at is None:
        self.rtx_first_at = now
    self.retransmits += 1
    if st in (State.SYN_SENT, State.SYN_RECEIVED):
        limit = (self.opts.syncnt or cfg.syn_retries) if st == State.SYN_SENT \
            else cfg.synack_retries
        if self._timed_out(now, limit) or (st == State.SYN_RECEIVED and self.passive
                                           and self.retransmits > limit):
            if st == State.SYN_RECEIVED and self.passive:
                self._done(now)
            else:
                self._write_err(now)
            return
        self.syn_retries += 1
        self.rtt_seq = None
        self.total_retrans += 1
        self.rtt.backoff += 1
        # RFC 6298 5.7: after a lost SYN, RTO must be >= 3 s once data flows;
        # Linux keeps the doubled RTO instead, as do we.
        self._send_syn(now)
        self.rtx_at = now + self.rtt.rto
        return
    if self.snd_una >= self.snd_nxt:
        return
    limit = cfg.orphan_retries if self.orphan else cfg.retries2
    if self._timed_out(now, limit):
        self._write_err(now)
        return
    # RFC 6298 5.4-5.6 and RFC 5681 3.1: retransmit the earliest segment,
    # back off, collapse cwnd to the loss window.
    if self.ca_state != CaState.LOSS or self.retransmits == 1:
        if self.ca_state not in (CaState.LOSS, CaState.RECOVERY) or self.undo is None:
            # Remember what to restore if this RTO proves spurious (RFC 3522/4015,
            # D-SACK RFC 3708); an RTO during a recovery keeps that episode's values.
            self._start_undo()
        self.cc.on_rto(now, self.flight)
    else:
        self.cc.cwnd = self.snd_mss
    self.ca_state = CaState.LOSS
    self.recover = self.snd_nxt
    self.high_rxt = self.snd_una
    self.dupacks = 0
    self.rtt_seq = None
    self.rtt.backoff += 1
    self.rack.tlp_high = None
    self.rtx_marks.clear()
    self.force_rxt = True
    self.transmit(now)
    self.rtx_at = now + self._clamped_rto(now)


def _on_persist(self: "Connection", now: float) -> None:
    """Zero-window probe (RFC 9293 3.8.6.1, Linux tcp_probe_timer / tcp_write_wakeup)."""
    if self.state not in SENDING_STATES or self.unsent <= 0 or self.flight > 0:
        self.persist_backoff = 0
        return
    cfg = self.host.config
    self.probes_out += 1
    limit = cfg.orphan_retries if self.orphan else cfg.retries2
    if self.opts.user_timeout:
        if self.rtx_first_at is None:
            self.rtx_first_at = now
        if now - self.rtx_first_at >= self.opts.user_timeout:
            self._write_err(now)
            return
    elif self.probes_out > limit:
        self._write_err(now)
        return
    if self.snd_wnd > 0:
        self.transmit(now)
    else:
        # Linux tcp_xmit_probe_skb: an old sequence number, no data.
        self._emit(self._header(self.snd_una - 1, NOFLAGS, with_sack=False), 0, 0, now)
    self.persist_backoff += 1
    self._arm_persist(now)


def _on_keepalive(self: "Connection", now: float) -> None:
    """Keep-alive probe (RFC 1122 4.2.3.6, Linux tcp_keepalive_timer)."""
    if not self.opts.keepalive or self.state not in (State.ESTABLISHED, State.CLOSE_WAIT,
                                                     State.FIN_WAIT_1, State.FIN_WAIT_2):
        return
    idle = self.opts.keepidle or self.host.config.keepalive_time
    intvl = self.opts.keepintvl or self.host.config.keepalive_intvl
    cnt = self.opts.keepcnt or self.host.config.keepalive_probes
    if self.flight > 0 or self.unsent > 0:
        self.keepalive_at = now + idle
        return
    elapsed = now - self.last_rcv_at
    if elapsed < idle:
        self.keepalive_at = self.last_rcv_at + idle
        return
    if (self.opts.user_timeout and elapsed >= self.opts.user_timeout
            and self.probes_out > 0) or self.probes_out >= cnt:
        self.send_rst(now)
        self.sk_err = self.sk_err_soft or errno.ETIMEDOUT
        self._done(now)
        return
    self._emit(self._header(self.snd_una - 1, NOFLAGS, with_sack=False), 0, 0, now)
    self.probes_out += 1
    self.keepalive_at = now + intvl
