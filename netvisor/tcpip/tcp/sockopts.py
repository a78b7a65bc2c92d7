"""setsockopt/getsockopt for TCP sockets, with Linux's byte encodings.

Integers are 4-byte native ``int`` (Linux reads at least 4 bytes and
returns ``min(optlen, 4)``); SO_LINGER is ``struct linger``; TCP_INFO is
``struct tcp_info`` (``tcp_info.py``); TCP_CONGESTION a NUL-padded name.
SO_RCVBUF/SO_SNDBUF store twice the value (capped at net.core.*mem_max),
as Linux does, and lock auto-tuning.
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

from netvisor.tcpip.consts import (
    IP_MTU_DISCOVER,
    IP_PMTUDISC_DONT,
    IP_RECVERR,
    IPV6_MTU_DISCOVER,
    IPV6_RECVERR,
)
from netvisor.tcpip.errors import NetError
from netvisor.tcpip.tcp import congestion
from netvisor.tcpip.tcp import constants as C
from netvisor.tcpip.tcp.tcp_info import tcp_info_bytes

if TYPE_CHECKING:
    from netvisor.tcpip.tcp.socket import TcpSocket

_INT = struct.Struct("=i")
_LINGER = struct.Struct("=ii")
TCP_CA_NAME_MAX = 16
IP_PMTUDISC_OMIT = 5   # the last valid IP(V6)_MTU_DISCOVER mode (linux/in.h)


def _int(value: bytes) -> int:
    if len(value) < 4:
        raise NetError(errno.EINVAL)  # Linux: optlen < sizeof(int)
    return int(_INT.unpack_from(value)[0])


def _out_int(v: int, buflen: int) -> bytes:
    if buflen < 0:
        raise NetError(errno.EINVAL)
    return _INT.pack(v)[:min(buflen, 4)]


def setsockopt(sock: "TcpSocket", level: int, optname: int, value: bytes) -> None:
    o = sock.opts
    conn = sock.conn
    now = sock.t.ctx.now
    cfg = sock.t.config
    if level == C.SOL_SOCKET:
        if optname == C.SO_LINGER:
            if len(value) < 8:
                raise NetError(errno.EINVAL)
            onoff, secs = _LINGER.unpack_from(value)
            o.linger = (bool(onoff), max(0, secs))
            return
        v = _int(value)
        if optname == C.SO_REUSEADDR:
            o.reuseaddr = bool(v)
            if sock.binding is not None:
                sock.binding.reuseaddr = o.reuseaddr
        elif optname == C.SO_REUSEPORT:
            o.reuseport = bool(v)
            if sock.binding is not None:
                sock.binding.reuseport = o.reuseport
        elif optname == C.SO_KEEPALIVE:
            o.keepalive = bool(v)
            if conn is not None and not conn.dead:
                conn._arm_keepalive(now)
                sock.t.post(conn)
        elif optname in (C.SO_RCVBUF, C.SO_RCVBUFFORCE):
            v = max(0, v)
            if optname == C.SO_RCVBUF:
                v = min(v, cfg.core_rmem_max)
            o.rcvbuf = max(v * 2, C.SOCK_MIN_RCVBUF)
        elif optname in (C.SO_SNDBUF, C.SO_SNDBUFFORCE):
            v = max(0, v)
            if optname == C.SO_SNDBUF:
                v = min(v, cfg.core_wmem_max)
            o.sndbuf = max(v * 2, C.SOCK_MIN_SNDBUF)
            if conn is not None:
                sock.t.ctx.readiness_changed(sock)
        elif optname == C.SO_RCVLOWAT:
            o.rcvlowat = max(1, v)
        elif optname == C.SO_OOBINLINE:
            o.oobinline = bool(v)
        elif optname == C.SO_PRIORITY:
            o.priority = v
        elif optname == C.SO_DONTROUTE:
            o.dontroute = bool(v)
        elif optname == C.SO_DEBUG:
            o.debug = bool(v)
        elif optname == C.SO_BROADCAST:
            o.broadcast = bool(v)
        elif optname in (C.SO_TYPE, C.SO_ERROR, C.SO_PROTOCOL, C.SO_DOMAIN, C.SO_ACCEPTCONN):
            raise NetError(errno.ENOPROTOOPT)
        else:
            raise NetError(errno.ENOPROTOOPT)
        return
    if level == C.IPPROTO_TCP:
        if optname == C.TCP_CONGESTION:
            name = bytes(value).split(b"\0", 1)[0].decode("ascii", "replace")
            if name not in congestion.ALGORITHMS:
                raise NetError(errno.ENOENT)
            o.congestion = name
            if conn is not None and not conn.dead and conn.ca_name != name:
                old = conn.cc
                new = congestion.make(name, conn.snd_mss, cfg.initial_cwnd_segments)
                new.cwnd, new.ssthresh = old.cwnd, old.ssthresh
                conn.cc = new
                conn.ca_name = name
            return
        v = _int(value)
        if optname == C.TCP_NODELAY:
            o.nodelay = bool(v)
            if v and conn is not None and not conn.dead:
                conn.transmit(now)  # Linux tcp_push_pending_frames
                sock.t.post(conn)
        elif optname == C.TCP_CORK:
            o.cork = bool(v)
            if not v and conn is not None and not conn.dead:
                conn.transmit(now)
                sock.t.post(conn)
        elif optname == C.TCP_MAXSEG:
            # Linux: 0 resets; otherwise TCP_MIN_MSS..MAX_TCP_WINDOW.
            if v and (v < C.TCP_MSS_MIN or v > C.MAX_TCP_WINDOW):
                raise NetError(errno.EINVAL)
            o.user_mss = v
            if conn is not None and not conn.dead and v:
                conn._update_mss()
        elif optname == C.TCP_KEEPIDLE:
            if v < 1 or v > C.MAX_TCP_KEEPIDLE:
                raise NetError(errno.EINVAL)
            o.keepidle = float(v)
            if conn is not None and not conn.dead:
                conn._arm_keepalive(now)
                sock.t.post(conn)
        elif optname == C.TCP_KEEPINTVL:
            if v < 1 or v > C.MAX_TCP_KEEPINTVL:
                raise NetError(errno.EINVAL)
            o.keepintvl = float(v)
        elif optname == C.TCP_KEEPCNT:
            if v < 1 or v > C.MAX_TCP_KEEPCNT:
                raise NetError(errno.EINVAL)
            o.keepcnt = v
        elif optname == C.TCP_SYNCNT:
            if v < 1 or v > C.MAX_TCP_SYNCNT:
                raise NetError(errno.EINVAL)
            o.syncnt = v
        elif optname == C.TCP_LINGER2:
            # Linux: < 0 -> -1 (RST), 0 -> sysctl default, capped at tcp_fin_timeout max.
            o.linger2 = -1.0 if v < 0 else (None if v == 0 else float(min(v, 120)))
        elif optname == C.TCP_DEFER_ACCEPT:
            o.defer_accept = float(max(0, v))
        elif optname == C.TCP_WINDOW_CLAMP:
            if v and v < C.SOCK_MIN_RCVBUF // 2:
                v = C.SOCK_MIN_RCVBUF // 2  # Linux tcp_set_window_clamp floor
            if v < 0:
                raise NetError(errno.EINVAL)
            o.window_clamp = v
        elif optname == C.TCP_QUICKACK:
            o.quickack = bool(v)
            if v and conn is not None and not conn.dead:
                conn.quickack = max(conn.quickack, 16)
                conn.pingpong = 0
                if conn.delack_at is not None:
                    conn.send_ack(now)
                    sock.t.post(conn)
        elif optname == C.TCP_USER_TIMEOUT:
            if v < 0:
                raise NetError(errno.EINVAL)
            o.user_timeout = v / 1000.0
        elif optname == C.TCP_NOTSENT_LOWAT:
            o.notsent_lowat = max(0, v)
            sock.t.ctx.readiness_changed(sock)
        elif optname == C.TCP_FASTOPEN:
            # Accepted and remembered like Linux, but no Fast Open happens: a SYN
            # with data is answered as a plain SYN (the data is resent after).
            if v < 0:
                raise NetError(errno.EINVAL)
            o.fastopen = v
        elif optname == C.TCP_FASTOPEN_CONNECT:
            if v not in (0, 1):
                raise NetError(errno.EINVAL)
            o.fastopen_connect = bool(v)
        elif optname == C.TCP_INFO:
            raise NetError(errno.ENOPROTOOPT)
        else:
            raise NetError(errno.ENOPROTOOPT)
        return
    if level == C.IPPROTO_IP and sock.family in (C.AF_INET, C.AF_INET6):
        v = _int(value) if len(value) >= 4 else (value[0] if value else 0)
        if optname == C.IP_TOS:
            o.tos = v & 0xFF
        elif optname == C.IP_TTL:
            if v == -1:
                o.ttl = None
            elif not 1 <= v <= 255:
                raise NetError(errno.EINVAL)
            else:
                o.ttl = v
        elif optname == IP_MTU_DISCOVER:
            if not IP_PMTUDISC_DONT <= v <= IP_PMTUDISC_OMIT:
                raise NetError(errno.EINVAL)   # do_ip_setsockopt
            o.pmtudisc = v
            o.df_off = v not in (1, 2)   # IP_PMTUDISC_WANT, IP_PMTUDISC_DO
        elif optname == IP_RECVERR:
            o.recverr = bool(v)
        else:
            raise NetError(errno.ENOPROTOOPT)
        return
    if level == C.IPPROTO_IPV6 and sock.family == C.AF_INET6:
        v = _int(value)
        if optname == C.IPV6_V6ONLY:
            if sock.binding is not None:
                raise NetError(errno.EINVAL)  # Linux: only before bind
            o.v6only = bool(v)
        elif optname == C.IPV6_TCLASS:
            o.tos = v & 0xFF
        elif optname == C.IPV6_UNICAST_HOPS:
            o.ttl = None if v == -1 else v
        elif optname == IPV6_MTU_DISCOVER:
            if not IP_PMTUDISC_DONT <= v <= IP_PMTUDISC_OMIT:
                raise NetError(errno.EINVAL)   # do_ipv6_setsockopt
            o.pmtudisc6 = v   # IPv6 never sets DF; stored and reported
        elif optname == IPV6_RECVERR:
            o.recverr6 = bool(v)
        else:
            raise NetError(errno.ENOPROTOOPT)
        return
    raise NetError(errno.ENOPROTOOPT)


def getsockopt(sock: "TcpSocket", level: int, optname: int, buflen: int) -> bytes:
    o = sock.opts
    conn = sock.conn
    cfg = sock.t.config
    if buflen < 0:
        raise NetError(errno.EINVAL)
    if level == C.SOL_SOCKET:
        if optname == C.SO_LINGER:
            return _LINGER.pack(int(o.linger[0]), o.linger[1])[:min(buflen, 8)]
        if optname == C.SO_ERROR:
            err = 0
            if conn is not None and conn.sk_err:
                err, conn.sk_err = conn.sk_err, 0
            elif sock.sk_err:
                err, sock.sk_err = sock.sk_err, 0
            elif conn is not None and conn.sk_err_soft and conn.state == C.State.CLOSED:
                err = conn.sk_err_soft
            return _out_int(err, buflen)
        values = {
            C.SO_TYPE: C.SOCK_STREAM,
            C.SO_PROTOCOL: C.IPPROTO_TCP,
            C.SO_DOMAIN: sock.family,
            C.SO_ACCEPTCONN: int(sock.listener is not None),
            C.SO_REUSEADDR: int(o.reuseaddr),
            C.SO_REUSEPORT: int(o.reuseport),
            C.SO_KEEPALIVE: int(o.keepalive),
            C.SO_RCVBUF: o.rcvbuf if o.rcvbuf is not None else (
                conn.rcvbuf_limit if conn is not None else cfg.rmem[1]),
            C.SO_SNDBUF: o.sndbuf if o.sndbuf is not None else (
                conn.sndbuf_limit if conn is not None else cfg.wmem[1]),
            C.SO_RCVLOWAT: o.rcvlowat,
            C.SO_SNDLOWAT: 1,
            C.SO_OOBINLINE: int(o.oobinline),
            C.SO_PRIORITY: o.priority,
            C.SO_DONTROUTE: int(o.dontroute),
            C.SO_DEBUG: int(o.debug),
            C.SO_BROADCAST: int(o.broadcast),
        }
        if optname in values:
            return _out_int(values[optname], buflen)
        raise NetError(errno.ENOPROTOOPT)
    if level == C.IPPROTO_TCP:
        if optname == C.TCP_INFO:
            return tcp_info_bytes(sock)[:buflen]
        if optname == C.TCP_CONGESTION:
            name = (conn.ca_name if conn is not None else (o.congestion or cfg.congestion_control))
            return name.encode().ljust(TCP_CA_NAME_MAX, b"\0")[:min(buflen, TCP_CA_NAME_MAX)]
        if optname == C.TCP_MAXSEG:
            # Linux: mss_cache once connected, else user_mss or TCP_MSS_DEFAULT (536).
            if conn is not None and conn.state not in (C.State.CLOSED, C.State.LISTEN,
                                                       C.State.SYN_SENT):
                v = conn.snd_mss
            else:
                v = o.user_mss or 536
            return _out_int(v, buflen)
        if optname == C.TCP_DEFER_ACCEPT:
            return _out_int(int(o.defer_accept), buflen)
        if optname == C.TCP_LINGER2:
            v2 = o.linger2
            return _out_int(int(cfg.fin_timeout) if v2 is None else int(v2), buflen)
        if optname == C.TCP_WINDOW_CLAMP:
            v3 = o.window_clamp or (conn.window_space() if conn is not None else 0)
            return _out_int(v3, buflen)
        values2 = {
            C.TCP_NODELAY: int(o.nodelay),
            C.TCP_CORK: int(o.cork),
            C.TCP_KEEPIDLE: int(o.keepidle or cfg.keepalive_time),
            C.TCP_KEEPINTVL: int(o.keepintvl or cfg.keepalive_intvl),
            C.TCP_KEEPCNT: o.keepcnt or cfg.keepalive_probes,
            C.TCP_SYNCNT: o.syncnt or cfg.syn_retries,
            C.TCP_QUICKACK: int(o.quickack),
            C.TCP_USER_TIMEOUT: int(round(o.user_timeout * 1000)),
            C.TCP_NOTSENT_LOWAT: o.notsent_lowat,
            C.TCP_FASTOPEN: o.fastopen,
            C.TCP_FASTOPEN_CONNECT: int(o.fastopen_connect),
        }
        if optname in values2:
            return _out_int(values2[optname], buflen)
        raise NetError(errno.ENOPROTOOPT)
    if level == C.IPPROTO_IP:
        if optname == C.IP_TOS:
            return _out_int(o.tos, buflen)
        if optname == C.IP_TTL:
            return _out_int(o.ttl or 64, buflen)
        if optname == IP_MTU_DISCOVER:
            return _out_int(o.pmtudisc, buflen)
        if optname == IP_RECVERR:
            return _out_int(int(o.recverr), buflen)
        raise NetError(errno.ENOPROTOOPT)
    if level == C.IPPROTO_IPV6 and sock.family == C.AF_INET6:
        if optname == C.IPV6_V6ONLY:
            return _out_int(int(o.v6only), buflen)
        if optname == C.IPV6_TCLASS:
            return _out_int(o.tos, buflen)
        if optname == C.IPV6_UNICAST_HOPS:
            return _out_int(o.ttl or 64, buflen)
        if optname == IPV6_MTU_DISCOVER:
            return _out_int(o.pmtudisc6, buflen)
        if optname == IPV6_RECVERR:
            return _out_int(int(o.recverr6), buflen)
        raise NetError(errno.ENOPROTOOPT)
    raise NetError(errno.ENOPROTOOPT)
