"""``struct tcp_info`` (TCP_INFO) in Linux's layout (include/uapi/linux/tcp.h).

Times are microseconds (rto, ato, rtt, rttvar, rcv_rtt) or milliseconds
(last_*), windows and ssthresh in segments, as Linux reports them. Fields
Linux fills and we do not model (pacing rates, delivery rate, busy times)
are reported as zero.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Final

from netvisor.tcpip.tcp.constants import (
    TCPI_OPT_SACK,
    TCPI_OPT_TIMESTAMPS,
    TCPI_OPT_WSCALE,
    CaState,
    State,
)

if TYPE_CHECKING:
    from netvisor.tcpip.tcp.socket import TcpSocket

# u8 x7 + u8 padding-bitfield byte; u32 x 24; u64 x 4; u32 x 6; u64 x 4; u32 x 2;
# u64 x 2; u32 x 4; u32 rcv_wnd, rehash; u16 total_rto, total_rto_recoveries; u32 total_rto_time
TCP_INFO: Final = struct.Struct("=BBBBBBBB" + "I" * 24 + "QQQQ" + "I" * 6 + "QQQQ" + "II"
                                + "QQ" + "IIII" + "II" + "HHI")
INFINITE: Final = 0x7FFFFFFF


def tcp_info_bytes(sock: "TcpSocket") -> bytes:
    """Linux tcp_get_info for ``sock``."""
    conn = sock.conn
    state = sock.tcp_state()
    if sock.listener is not None:
        # Linux tcp_get_info on a listener: unacked = accept-queue length,
        # sacked = backlog (what ss shows as Recv-Q / Send-Q).
        vals = [0] * _count()
        vals[0] = int(state)
        vals[12] = len(sock.listener.accept_queue)
        vals[13] = sock.listener.backlog
        return TCP_INFO.pack(*vals)
    if conn is None:
        return TCP_INFO.pack(int(state), *([0] * (_count() - 1)))
    now = conn.host.ctx.now
    us = 1_000_000
    ms = 1000
    mss = max(conn.snd_mss, 1)
    opts = 0
    if conn.ts_ok:
        opts |= TCPI_OPT_TIMESTAMPS
    if conn.sack_ok:
        opts |= TCPI_OPT_SACK
    if conn.ws_ok:
        opts |= TCPI_OPT_WSCALE
    wscale = ((conn.snd_wscale & 0xF) | ((conn.rcv_wscale & 0xF) << 4)) if conn.ws_ok else 0
    srtt = conn.rtt.srtt or 0.0
    unacked_segs = -(-conn.flight // mss) if conn.flight > 0 else 0
    sacked_segs = -(-conn.board.sacked // mss) if conn.sack_ok else conn.dupacks
    # lost_out / retrans_out: holes deemed lost and not yet resent / resent, in segments.
    lost_end = min(conn._lost_end(), conn.snd_nxt)
    frm = max(conn.high_rxt, conn.snd_una)
    lost_bytes = conn.board.hole_bytes(frm, lost_end) if lost_end > frm else 0
    rx_bytes = conn.board.hole_bytes(conn.snd_una, frm) if conn.ca_state >= CaState.RECOVERY \
        else 0
    lost_segs = -(-lost_bytes // mss)
    retrans_segs = -(-rx_bytes // mss)
    ssthresh = conn.cc.ssthresh
    ssthresh_segs = INFINITE if ssthresh >= INFINITE else ssthresh // mss
    ca_state = conn.ca_state if state in (State.ESTABLISHED, State.CLOSE_WAIT,
                                          State.FIN_WAIT_1, State.LAST_ACK,
                                          State.CLOSING) else CaState.OPEN
    values = [
        int(state), int(ca_state), min(conn.retransmits, 255), min(conn.probes_out, 255),
        min(conn.rtt.backoff, 255), opts, wscale, 0,
        int(conn.rtt.rto * us), int(conn.ato * us), conn.snd_mss, conn.rcv_mss,
        unacked_segs, sacked_segs, lost_segs, retrans_segs, 0,
        int((now - conn.last_send_at) * ms), int((now - conn.last_send_at) * ms),
        int((now - conn.last_data_recv_at) * ms), int((now - conn.last_ack_recv_at) * ms),
        conn.pmtu, conn.window_space(), int(srtt * us), int(conn.rtt.rttvar * us),
        ssthresh_segs, conn.cc.cwnd // mss, conn.advmss, conn.reordering,
        int((conn.rcv_rtt or 0.0) * us), conn.rcv_space,
        conn.total_retrans,
        0, 0, conn.bytes_acked, conn.bytes_received,
        conn.segs_out, conn.segs_in, conn.notsent_bytes(),
        int((conn.rtt.min_rtt or 0.0) * us), conn.data_segs_in, conn.data_segs_out,
        0, 0, 0, 0,
        -(-conn.bytes_acked // mss), 0,
        conn.bytes_sent, conn.bytes_retrans,
        0, 0, 0, conn.snd_wnd,
        max(0, conn.rcv_adv - conn.rcv_nxt), 0,
        0, 0, 0,
    ]
    return TCP_INFO.pack(*[v & ((1 << 64) - 1) if isinstance(v, int) else v for v in values])


def _count() -> int:
    n = 0
    for ch in TCP_INFO.format:
        if ch.isalpha():
            n += 1
    return n
