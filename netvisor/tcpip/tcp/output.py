"""The send path of a connection: segment building, windows, what to send next.

Mixed into :class:`~netvisor.tcpip.tcp.connection.Connection` (state lives
there). RFC 9293 3.8.6 (windows), RFC 1122 4.2.3.3/4.2.3.4 (silly window
avoidance both sides, Nagle in Minshall's form as Linux), RFC 6675 5
(NextSeg and pipe), RFC 6582 (NewReno retransmission), RFC 8985 7 (TLP),
RFC 7323 (timestamps on every segment), RFC 2018/2883 (SACK blocks we report).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from netvisor.tcpip.tcp.constants import (
    CORK_CEILING,
    FIN,
    M32,
    NOFLAGS,
    PSH,
    RST,
    SENDING_STATES,
    SYNCHRONIZED,
    TSO_MAX_PAYLOAD,
    CaState,
)
from netvisor.tcpip.tcp.rack import WC_DELACK
from netvisor.tcpip.tcp.sack import receiver_blocks
from netvisor.tcpip.wire.checksum import checksum, fold
from netvisor.tcpip.wire.tcp import TcpRepr

if TYPE_CHECKING:
    from netvisor.tcpip.tcp.connection import Connection

# Each function takes the connection as ``self``: Connection binds them as its
# methods (``transmit = output.transmit``), so state stays in one place while
# each module keeps one job.

# Segments without SACK blocks (nearly all) are written by one pack: the fixed
# header, plus NOP NOP TIMESTAMP in Linux's layout when timestamps are on.
# Same bytes as TcpRepr.emit (tests/unit/tcp/test_fast_emit.py checks both).
_HDR_TS = struct.Struct("!HHIIBBHHHBBBBII")
_HDR_PLAIN = struct.Struct("!HHIIBBHHH")
_ACK_BIT = 0x10


def _emit_fast(self: "Connection", seq: int, flags: int, start: int, end: int,
               now: float) -> int:
    """Build and send [start, end) with <SEQ=seq><ACK=RCV.NXT> and no SACK blocks.

    The common case of ``_emit(_header(...))`` without building a TcpRepr:
    returns the header length. Callers check ``_sack_due()`` first.
    """
    n = end - start
    ts_ok = self.ts_ok
    hl = 32 if ts_ok else 20
    total = hl + n
    out = bytearray(total)
    if n:
        self.sndbuf.copy_into(out, hl, start, end)
    wnd = self._select_window()
    if ts_ok:
        _HDR_TS.pack_into(out, 0, self.lport, self.rport, seq & M32, self.rcv_nxt & M32,
                          0x80, flags | _ACK_BIT, wnd, 0, 0, 1, 1, 8, 10,
                          (int(now * 1000) + self.ts_offset) & M32, self.ts_recent & M32)
    else:
        _HDR_PLAIN.pack_into(out, 0, self.lport, self.rport, seq & M32, self.rcv_nxt & M32,
                             0x50, flags | _ACK_BIT, wnd, 0, 0)
    route = self.route
    if route.checksum_offload:
        c = fold(self.pseudo + total)
    else:
        c = checksum(out, self.pseudo + total)
    out[16] = c >> 8
    out[17] = c & 0xFF
    gso = 0
    if n and route.gso_max_size > 0:
        piece = self.snd_mss  # _seg_mss(hl): no SACK blocks beside the timestamps
        if n > piece:
            gso = piece
    self.host.output(self, out, gso)
    self.segs_out += 1
    self.last_send_at = now
    self.last_ack_sent = self.rcv_nxt
    self.ack_pending = False
    self.delack_at = None
    self.ack_soon_at = None
    self.unacked_rcv = 0
    self.dsack = None
    return hl


# SYN / SYN-ACK with every option on (the default): MSS, SACK-permitted +
# TIMESTAMP, NOP + WSCALE, in Linux's tcp_options_write layout (40-byte header).
_HDR_SYN_ALL = struct.Struct("!HHIIBBHHHBBHBBBBIIBBBB")


def _emit_syn_fast(self: "Connection", ack: int | None, wnd: int, tsval: int, tsecr: int,
                   now: float) -> None:
    """``_emit`` of ``_send_syn``'s TcpRepr when MSS, WS, SACK and TS are all on."""
    out = bytearray(40)
    _HDR_SYN_ALL.pack_into(out, 0, self.lport, self.rport, self.iss & M32,
                           (ack or 0) & M32, 0xA0, 0x02 | (_ACK_BIT if ack is not None else 0),
                           wnd, 0, 0, 2, 4, self.advmss & 0xFFFF, 4, 2, 8, 10,
                           tsval & M32, tsecr & M32, 1, 3, 3, self.rcv_wscale & 0xFF)
    if self.route.checksum_offload:
        c = fold(self.pseudo + 40)
    else:
        c = checksum(out, self.pseudo + 40)
    out[16] = c >> 8
    out[17] = c & 0xFF
    self.host.output(self, out, 0)
    self.segs_out += 1
    self.last_send_at = now
    if ack is not None:
        self.last_ack_sent = self.rcv_nxt
        self.ack_pending = False
        self.delack_at = None
        self.ack_soon_at = None
        self.unacked_rcv = 0
        self.dsack = None


def _sack_due(self: "Connection") -> bool:
    """True when our next segment reports SACK blocks (receive queue holes or a D-SACK)."""
    return self.sack_ok and bool(self.rcvbuf.ooo or self.dsack)



def _emit(self: "Connection", rep: TcpRepr, start: int, end: int, now: float) -> None:
    n = end - start
    hl = rep.header_len
    out = bytearray(hl + n)
    if n:
        self.sndbuf.copy_into(out, hl, start, end)
    offload = self.route.checksum_offload
    rep.emit(out, 0, src=self.laddr, dst=self.raddr, payload_len=n,
             checksum="partial" if offload else "full", pseudo=self.pseudo)
    gso = 0
    if n and self.route.gso_max_size > 0:
        # Every piece the NIC cuts repeats this header, SACK blocks included, so
        # gso_size is the MSS left beside *these* options (Linux tcp_current_mss).
        piece = self._seg_mss(hl)
        if n > piece:
            gso = piece
    self.host.output(self, out, gso)
    self.segs_out += 1
    self.last_send_at = now
    if rep.ack is not None:
        self.last_ack_sent = self.rcv_nxt
        self.ack_pending = False
        self.delack_at = None
        self.ack_soon_at = None
        self.unacked_rcv = 0
        self.dsack = None


def _select_window(self: "Connection") -> int:
    """The window field to send (Linux __tcp_select_window, RFC 1122 4.2.3.3 SWS).

    Never shrinks the right edge already advertised (RFC 9293 3.8.6.2.2);
    opens it only by at least min(MSS, half the buffer).
    """
    # Written with conditionals instead of min()/max() calls: once per segment.
    space = self.window_space()
    rcvbuf = self.rcvbuf
    free = space - len(rcvbuf) - rcvbuf.ooo_bytes
    if free < 0:
        free = 0
    nxt = self.rcv_nxt
    cur = self.rcv_adv - nxt
    if cur < 0:
        cur = 0
    ws = self.rcv_wscale
    max_wnd = 65535 << ws
    if free > max_wnd:
        free = max_wnd
    step = self.rcv_mss
    if space // 2 < step:
        step = space // 2
    if free < cur:
        new = cur
    elif free - cur < step and cur > 0:
        new = cur
    elif free < step and cur == 0:
        new = 0
    else:
        new = free
    field = ((new + (1 << ws) - 1) >> ws) if new == cur else new >> ws
    if field > 65535:
        field = 65535
    edge = nxt + (field << ws)
    if edge > self.rcv_adv:
        self.rcv_adv = edge
    return field


def _header(self: "Connection", seq: int, flags: int, *, with_sack: bool = True,
            tsval: int | None = None, now: float | None = None) -> TcpRepr:
    ts = None
    if self.ts_ok:
        ts = (self.ts_now(now) if tsval is None else tsval, self.ts_recent)
    blocks: tuple[tuple[int, int], ...] = ()
    if self.sack_ok and with_sack and (self.rcvbuf.ooo or self.dsack):
        chosen = receiver_blocks(self.rcvbuf.ooo_blocks(), self.rcvbuf.last_ooo, self.dsack,
                                 3 if ts else 4)
        blocks = tuple((s & M32, e & M32) for s, e in chosen)
    wnd = self._select_window()
    return TcpRepr(self.lport, self.rport, seq & M32, self.rcv_nxt & M32, flags, wnd, 0,
                   None, None, False, blocks, ts)


def send_ack(self: "Connection", now: float) -> None:
    """A pure ACK (also window updates, duplicate ACKs, challenge ACKs)."""
    if not (self.sack_ok and (self.rcvbuf.ooo or self.dsack)):
        self._emit_fast(self.snd_nxt, NOFLAGS, 0, 0, now)
        return
    self._emit(self._header(self.snd_nxt, NOFLAGS, now=now), 0, 0, now)


def send_rst(self: "Connection", now: float) -> None:
    """<SEQ=SND.NXT><CTL=RST,ACK> (RFC 9293 3.10.7.4, Linux tcp_send_active_reset)."""
    rep = TcpRepr(self.lport, self.rport, self.snd_nxt & M32, self.rcv_nxt & M32, RST, 0)
    self._emit(rep, 0, 0, now)


def _cur_mss(self: "Connection") -> int:
    """Payload room of the next segment (Linux tcp_current_mss).

    ``snd_mss`` already leaves room for the timestamp option (the options on
    every segment, Linux's tcp_header_len); SACK blocks reported while our
    receive queue has holes (RFC 2018 4) or a D-SACK (RFC 2883) come on top,
    so their bytes are taken off the payload, never added beyond the MTU.
    ``_header`` picks at most as many blocks as counted here.
    """
    mss = self.snd_mss
    if self.sack_ok and (self.rcvbuf.ooo or self.dsack is not None):
        n = self.rcvbuf.ooo_block_count() + (1 if self.dsack is not None else 0)
        n = min(n, 3 if self.ts_ok else 4)
        mss -= 4 + 8 * n
    return mss


def _seg_mss(self: "Connection", header_len: int) -> int:
    """The MSS left beside a header of ``header_len`` bytes (a built segment's)."""
    return self.snd_mss - (header_len - (32 if self.ts_ok else 20))


def _tso_limit(self: "Connection", mss: int) -> int:
    gmax = self.route.gso_max_size
    if gmax <= 0:
        return mss
    payload = min(gmax, 65535) - (20 if self.raddr.version == 4 else 40) - 60
    payload = min(payload, TSO_MAX_PAYLOAD)
    return max(mss, payload - payload % mss)


def _tsq_limit(self: "Connection", mss: int, tso_limit: int | None = None) -> int:
    """TCP small queues (Linux tcp_small_queue_check): bytes this connection may
    keep queued below TCP (NIC queue, driver) before it waits for them to drain.

    Linux: max(2 TSO segments, ~1 ms at the pacing rate), capped by
    tcp_limit_output_bytes; the pacing rate is cwnd/SRTT times 2 in slow start,
    1.2 after (tcp_update_pacing_rate). Departure: the floor is at least
    ``tsq_min_bytes`` (64 KiB), because here every drain costs a driver turn
    (tens of microseconds) where Linux pays a TX-completion interrupt; with
    1448-byte segments and no TSO a 2-segment limit would cost a turn per
    two frames.
    """
    cfg = self.host.config
    floor = max(2 * (self._tso_limit(mss) if tso_limit is None else tso_limit),
                cfg.tsq_min_bytes)
    srtt = self.rtt.srtt
    cc = self.cc
    if srtt:
        factor = 2.0 if cc.cwnd < cc.ssthresh // 2 else 1.2
        per_ms = int(cc.cwnd * factor / max(srtt, 1e-6) / 1000)
        floor = max(floor, per_ms)
    return min(floor, cfg.limit_output_bytes)


def _send_range(self: "Connection", start: int, end: int, now: float, retrans: bool) -> None:
    """Send sequence range [start, end) (data, plus FIN when it covers fin_seq)."""
    flags = NOFLAGS
    data_end = end
    if self.fin_queued and end > self.fin_seq:
        flags |= FIN
        data_end = self.fin_seq
    if data_end > start and data_end == self.sndbuf.end:
        flags |= PSH
    if not (self.sack_ok and (self.rcvbuf.ooo or self.dsack)):
        seg_mss = self._seg_mss(self._emit_fast(start, flags, start, max(start, data_end), now))
    else:
        rep = self._header(start, flags, now=now)
        self._emit(rep, start, max(start, data_end), now)
        seg_mss = self._seg_mss(rep.header_len)
    n = max(0, data_end - start)
    if n:
        self.data_segs_out += 1
    if retrans:
        self.total_retrans += 1
        self.bytes_retrans += n
        if self.undo is not None:
            self.undo_retrans = max(self.undo_retrans, 0) + max(1, -(-n // max(seg_mss, 1)))
    else:
        self.bytes_sent += n
        if n and now - self.last_data_recv_at < self.ato and self.data_segs_in:
            # Linux tcp_event_data_sent: answering soon after data arrived means
            # an interactive exchange -> delay ACKs so that they ride on data.
            self.pingpong = min(self.pingpong + 1, 3)
        if n < seg_mss:
            self.snd_sml = end  # Minshall: end of the last small segment
        if self.sack_ok:
            self.rack.sent(end, now)
        if self.rtt_seq is None and not self.ts_ok:
            self.rtt_seq = start
            self.rtt_sent_at = now
    if self.rtx_at is None:
        self.rtx_at = now + self.rtt.rto
    self.persist_at = None


def _lost_end(self: "Connection") -> int:
    """Sequence number below which un-SACKed data counts as lost."""
    if self.ca_state == CaState.LOSS:
        return self.recover
    if self.ca_state == CaState.RECOVERY:
        if self.sack_ok:
            return max(self._sack_lost_end(), self.snd_una + (
                self.snd_mss if self.high_rxt <= self.snd_una else 0))
        return self.snd_una + self.snd_mss
    return self.snd_una


def _sack_lost_end(self: "Connection") -> int:
    """RFC 6675 IsLost (DupThresh * MSS SACKed above) or RFC 8985 RACK, whichever is further."""
    thr = self.reordering * self.snd_mss
    una = self.snd_una
    end = self.board.lost_end(una, thr)
    high = self.board.high
    if high is None:
        return end
    rtt = self.rtt
    srtt = rtt.srtt or self.host.config.rto_initial
    rack = self.rack
    reo = rack.reo_wnd(rack.min_rtt or rtt.min_rtt or srtt, srtt,
                       self.ca_state == CaState.RECOVERY, self.board.sacked >= thr)
    now = self.host.ctx.now
    rack_end, nxt = rack.lost_end(una, high, now, (rtt.latest or srtt) + reo)
    self.rack_at = nxt
    return max(end, rack_end)


def pipe(self: "Connection") -> int:
    """RFC 6675 pipe: bytes believed in the network."""
    flight = self.flight
    if self.ca_state == CaState.OPEN and not self.board and not self.dupacks:
        return flight
    if self.sack_ok:
        sacked = self.board.sacked
    else:
        sacked = min(self.dupacks * self.snd_mss, flight)
    lost_end = min(self._lost_end(), self.snd_nxt)
    frm = max(self.high_rxt, self.snd_una)
    lost = self.board.hole_bytes(frm, lost_end) if lost_end > frm else 0
    return max(0, flight - sacked - lost)


def transmit(self: "Connection", now: float) -> None:
    """Send what windows and rules allow: retransmissions first, then new data."""
    if self.state not in SENDING_STATES:
        if self.ack_pending and self.state in SYNCHRONIZED:
            self.send_ack(now)
        return
    if (self.snd_nxt >= self.sndbuf.end and not (self.fin_queued and self.snd_nxt <= self.fin_seq)
            and self.ca_state != CaState.RECOVERY and self.ca_state != CaState.LOSS):
        # Nothing to send or resend (most calls: after an ACK of everything):
        # what the full pass below ends with, without its limits.
        self.cork_at = None
        self._finish_output(now)
        return
    if _send_small(self, now):
        return
    host = self.host
    nic = self.route.nic_id
    mss = self._cur_mss()
    cwnd = self.cc.cwnd
    # 1. Retransmit lost holes (RFC 6675 5 NextSeg rule 1, RFC 6582, RTO recovery).
    if self.ca_state in (CaState.RECOVERY, CaState.LOSS):
        while True:
            lost_end = min(self._lost_end(), self.snd_nxt)
            frm = max(self.high_rxt, self.snd_una)
            hole = self.board.next_hole(frm, lost_end)
            if hole is None:
                break
            if not self.force_rxt and self.pipe() >= cwnd:
                break
            if not host.egress_has_room(nic):
                host.egress_blocked(self, now)
                self._finish_output(now)
                return
            s, e = hole
            e = min(e, s + (self._tso_limit(mss) if self.ca_state == CaState.LOSS else mss))
            self._send_range(s, e, now, retrans=True)
            self.high_rxt = e
            self.force_rxt = False
            if self.sack_ok:
                self.rtx_marks.append([s, e, self.snd_nxt, now])
    # 2. New data (RFC 5681, Nagle, SWS, windows).
    limit = self._tso_limit(mss)
    tsq_limit = self._tsq_limit(mss, limit)
    buf_end = self.sndbuf.end
    corked = self.opts.cork or self.more_pending
    while True:
        unsent = buf_end - self.snd_nxt
        fin_pending = self.fin_queued and self.snd_nxt <= self.fin_seq
        if unsent <= 0 and not fin_pending:
            break
        if self.snd_nxt < self.snd_una:
            self.snd_nxt = self.snd_una
        n = min(unsent, limit)
        if n > 0:
            wnd_room = self.snd_una + self.snd_wnd - self.snd_nxt
            cwnd_room = cwnd - self.pipe()
            room = min(wnd_room, cwnd_room)
            if wnd_room <= 0:
                if self.flight == 0 and self.persist_at is None:
                    self._arm_persist(now)
                break
            if cwnd_room <= 0:
                break
            if room < n:
                n = room
                # Sender SWS avoidance (RFC 1122 4.2.3.4): only a full segment, all
                # remaining data, or at least half the peer's largest window.
                if n < mss and n < unsent and n < self.max_snd_wnd // 2:
                    if self.flight == 0 and wnd_room < mss and self.persist_at is None:
                        self._arm_persist(now)
                    break
            if n > mss and n < unsent:
                n -= n % mss
            if n < mss and n == unsent and self.snd_sml > self.snd_una and not fin_pending:
                # Nagle (RFC 896, RFC 1122 4.2.3.4) in Minshall's form, as Linux
                # (tcp_minshall_check): hold a small segment only while another
                # small one is unacknowledged. TCP_NODELAY turns it off; CORK
                # holds partial segments regardless of what is in flight.
                if not self.opts.nodelay or corked:
                    break
            if n < mss and n == unsent and corked and not fin_pending:
                # TCP_CORK / MSG_MORE: hold the partial segment; Linux sends it
                # anyway after 200 ms (tcp(7)), hence cork_at.
                if self.cork_at is None:
                    self.cork_at = now + CORK_CEILING
                break
        if not host.egress_has_room(nic):
            host.egress_blocked(self, now)
            break
        if self.tsq_bytes >= tsq_limit and n > 0:
            # TCP small queues: enough of ours waits below; resume when the NIC
            # queue drains (TcpTransport.handle_egress_room), not by polling.
            host.tsq_throttle(self)
            break
        end = self.snd_nxt + n
        if fin_pending and end == self.fin_seq:
            end += 1
        self._send_range(self.snd_nxt, end, now, retrans=False)
        self.snd_nxt = end
        if n == 0:
            break
    if self.snd_nxt >= buf_end:
        self.cork_at = None
    self._finish_output(now)


def _send_small(self: "Connection", now: float) -> bool:
    """The interactive case of ``transmit``: everything unsent fits one segment,
    every window has room for it, and nothing (recovery, Nagle, cork, TSQ,
    SACK blocks to report, FIN) calls for the general pass. Sends it exactly as
    the general loop would and returns True; otherwise returns False untouched.
    """
    una, nxt = self.snd_una, self.snd_nxt
    unsent = self.sndbuf.end - nxt
    if (unsent <= 0 or unsent > self.snd_mss or nxt < una or self.fin_queued
            or self.ca_state == CaState.RECOVERY or self.ca_state == CaState.LOSS
            or self.opts.cork or self.more_pending
            or (unsent < self.snd_mss and self.snd_sml > una and not self.opts.nodelay)
            or (self.sack_ok and (self.rcvbuf.ooo or self.dsack))):
        return False
    if una + self.snd_wnd - nxt < unsent or self.cc.cwnd - self.pipe() < unsent:
        return False
    cfg = self.host.config
    if self.tsq_bytes >= min(cfg.tsq_min_bytes, cfg.limit_output_bytes):
        return False
    if not self.host.egress_has_room(self.route.nic_id):
        return False
    end = nxt + unsent
    self._send_range(nxt, end, now, retrans=False)
    self.snd_nxt = end
    self.cork_at = None
    self._finish_output(now)
    return True


def _finish_output(self: "Connection", now: float) -> None:
    if self.ack_pending:
        self.send_ack(now)
    self._schedule_tlp(now)


def _schedule_tlp(self: "Connection", now: float) -> None:
    """Arm the tail-loss probe (RFC 8985 7.2) when it would fire before the RTO."""
    if (not self.sack_ok or self.flight <= 0 or self.rack.tlp_high is not None
            or self.ca_state not in (CaState.OPEN, CaState.DISORDER)
            or self.state not in SENDING_STATES):
        self.tlp_at = None
        return
    srtt = self.rtt.srtt
    if srtt is None:
        pto = self.host.config.rto_initial
    else:
        pto = 2 * srtt
        if self.flight <= self.snd_mss:
            pto += WC_DELACK
    pto = max(pto, 0.01)
    if self.rtx_at is not None and now + pto >= self.rtx_at:
        self.tlp_at = None
        return
    self.tlp_at = now + pto


def _on_tlp(self: "Connection", now: float) -> None:
    """Send the loss probe (RFC 8985 7.3): new data if allowed, else the last segment."""
    if self.state not in SENDING_STATES or self.flight <= 0:
        return
    mss = self._cur_mss()
    room = self.snd_una + self.snd_wnd - self.snd_nxt
    if self.unsent > 0 and room > 0:
        n = min(self.unsent, mss, room)
        end = self.snd_nxt + n
        if self.fin_queued and end == self.fin_seq:
            end += 1
        self._send_range(self.snd_nxt, end, now, retrans=False)
        self.snd_nxt = end
    else:
        start = max(self.snd_una, self.snd_nxt - mss)
        self._send_range(start, self.snd_nxt, now, retrans=True)
    self.rack.tlp_high = self.snd_nxt
    self.rack.probes += 1
    self.rtx_at = now + self._clamped_rto(now)


def _arm_persist(self: "Connection", now: float) -> None:
    # Linux tcp_probe0_when: RTO << backoff, capped at TCP_RTO_MAX.
    cfg = self.host.config
    delay = min(cfg.rto_max, self.rtt.base_rto * (1 << min(self.persist_backoff, 16)))
    self.persist_at = now + max(delay, cfg.rto_min)
