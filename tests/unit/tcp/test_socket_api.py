"""The socket API's Linux semantics: errnos, bind rules, options, TCP_INFO, poll."""

from __future__ import annotations

import errno
import struct

import pytest

from netvisor.tcpip.errors import NetError
from netvisor.tcpip.tcp import TcpConfig
from netvisor.tcpip.tcp import constants as C
from netvisor.tcpip.tcp.constants import AF_INET, AF_INET6, State
from netvisor.tcpip.tcp.tcp_info import TCP_INFO
from netvisor.tcpip.wire.tcp import TcpFlags as F
from netvisor.tcpip.wire.tcp import TcpRepr
from tests.unit.tcp.harness import FakeCtx, Net, Raw

I32 = struct.Struct("i")


def err(fn, *a):  # type: ignore[no-untyped-def]
    with pytest.raises(NetError) as ei:
        fn(*a)
    return ei.value.errno


def opt(v: int) -> bytes:
    return I32.pack(v)


def test_fresh_socket_errnos_and_poll_like_linux() -> None:
    raw = Raw()
    s = raw.tcp.socket(AF_INET)
    assert s.poll() == C.POLLOUT | C.POLLWRNORM | C.POLLHUP  # tcp_poll on TCP_CLOSE
    assert err(s.recv, 10) == errno.ENOTCONN
    assert err(s.send, b"x") == errno.EPIPE
    assert err(s.getpeername) == errno.ENOTCONN
    assert err(s.accept) == errno.EINVAL
    assert err(s.shutdown, C.SHUT_WR) == errno.ENOTCONN
    assert err(s.shutdown, 7) == errno.EINVAL
    assert s.getsockname() == ("0.0.0.0", 0)
    assert err(raw.tcp.socket, 1) == errno.EAFNOSUPPORT


def test_listening_socket_errnos() -> None:
    raw = Raw()
    s = raw.tcp.socket(AF_INET)
    s.listen(5)  # autobinds an ephemeral port
    port = s.getsockname()[1]
    assert 32768 <= port <= 60999
    assert s.poll() == 0
    assert err(s.connect, ("10.0.0.1", 1)) == errno.EISCONN
    assert err(s.recv, 1) == errno.ENOTCONN
    assert err(s.accept) == errno.EAGAIN
    assert err(s.bind, ("10.0.0.2", 1)) == errno.EINVAL
    assert s.getsockopt(C.SOL_SOCKET, C.SO_ACCEPTCONN, 4) == opt(1)


def test_syn_sent_poll_and_send_eagain() -> None:
    raw = Raw()
    s = raw.tcp.socket(AF_INET)
    err(s.connect, ("10.0.0.1", 80))
    assert s.poll() == 0
    assert err(s.send, b"x") == errno.EAGAIN
    assert err(s.recv, 1) == errno.EAGAIN
    assert err(s.getpeername) == errno.ENOTCONN


def test_bind_errors() -> None:
    raw = Raw()
    s = raw.tcp.socket(AF_INET)
    assert err(s.bind, ("10.9.9.9", 80)) == errno.EADDRNOTAVAIL
    assert err(s.bind, ("::1", 80)) == errno.EAFNOSUPPORT
    s.bind(("10.0.0.2", 80))
    assert err(s.bind, ("10.0.0.2", 81)) == errno.EINVAL
    s2 = raw.tcp.socket(AF_INET)
    assert err(s2.bind, ("0.0.0.0", 80)) == errno.EADDRINUSE
    s.close()
    s2.bind(("0.0.0.0", 80))


def test_so_reuseaddr_shares_unless_listening() -> None:
    raw = Raw()
    a, b = raw.tcp.socket(AF_INET), raw.tcp.socket(AF_INET)
    for s in (a, b):
        s.setsockopt(C.SOL_SOCKET, C.SO_REUSEADDR, opt(1))
    a.bind(("0.0.0.0", 8080))
    b.bind(("10.0.0.2", 8080))
    a.listen(1)
    assert err(b.listen, 1) == errno.EADDRINUSE
    c = raw.tcp.socket(AF_INET)
    c.setsockopt(C.SOL_SOCKET, C.SO_REUSEADDR, opt(1))
    assert err(c.bind, ("10.0.0.2", 8080)) == errno.EADDRINUSE  # a listens


def test_so_reuseport_listeners_share_and_split_connections() -> None:
    net = Net(seed=5)
    a = net.add("10.0.0.1")
    b = net.add("10.0.0.2")
    l1, l2 = b.tcp.socket(AF_INET), b.tcp.socket(AF_INET)
    for s in (l1, l2):
        s.setsockopt(C.SOL_SOCKET, C.SO_REUSEPORT, opt(1))
        s.bind(("0.0.0.0", 9000))
        s.listen(16)
    clients = []
    for _ in range(12):
        c = a.tcp.socket(AF_INET)
        err(c.connect, ("10.0.0.2", 9000))
        clients.append(c)
    net.run(1)
    n1, n2 = len(l1.listener.accept_queue), len(l2.listener.accept_queue)
    assert n1 + n2 == 12 and n1 and n2


def test_v4_mapped_on_ipv6_listener_and_v6only() -> None:
    net = Net(seed=5)
    a = net.add("10.0.0.1")
    b = net.hosts.setdefault  # noqa: F841
    h = net.add("10.0.0.2")
    h.ctx.addrs.add(__import__("ipaddress").ip_address("fd00::2"))
    ls = h.tcp.socket(AF_INET6)
    ls.bind(("::", 80))
    ls.listen(4)
    c = a.tcp.socket(AF_INET)
    err(c.connect, ("10.0.0.2", 80))
    net.run(1)
    child, addr = ls.accept()
    assert addr == ("::ffff:10.0.0.1", c.getsockname()[1], 0, 0)
    assert child.getsockname() == ("::ffff:10.0.0.2", 80, 0, 0)
    ls.close()
    only = h.tcp.socket(AF_INET6)
    only.setsockopt(C.IPPROTO_IPV6, C.IPV6_V6ONLY, opt(1))
    only.bind(("::", 81))
    only.listen(4)
    v4 = h.tcp.socket(AF_INET)
    v4.bind(("0.0.0.0", 81))  # no conflict: the v6 socket is V6ONLY
    c2 = a.tcp.socket(AF_INET)
    err(c2.connect, ("10.0.0.2", 81))
    net.run(2)
    assert err(only.accept) == errno.EAGAIN
    assert err(c2.connect, ("10.0.0.2", 81)) == errno.ECONNREFUSED


def test_ipv6_any_without_v6only_conflicts_with_ipv4_bind() -> None:
    raw = Raw()
    s6 = raw.tcp.socket(AF_INET6)
    s6.bind(("::", 90))
    s4 = raw.tcp.socket(AF_INET)
    assert err(s4.bind, ("0.0.0.0", 90)) == errno.EADDRINUSE


def test_connect_refused_by_closed_port_and_reconnect_allowed() -> None:
    net = Net(seed=1)
    a = net.add("10.0.0.1")
    net.add("10.0.0.2")
    c = a.tcp.socket(AF_INET)
    err(c.connect, ("10.0.0.2", 1234))
    net.run(1)
    assert c.poll() & C.POLLERR
    assert c.getsockopt(C.SOL_SOCKET, C.SO_ERROR, 4) == opt(errno.ECONNREFUSED)
    assert c.getsockopt(C.SOL_SOCKET, C.SO_ERROR, 4) == opt(0)  # read clears it
    assert err(c.connect, ("10.0.0.2", 1234)) == errno.ECONNABORTED
    assert not a.tcp.ports  # the autobound port was released (Linux inet_put_port)


def test_port_zero_is_an_ordinary_port_on_input() -> None:
    """tcp_v4_rcv has no port-0 check: a SYN to port 0 is refused with RST|ACK
    from port 0, the RST fails a connect() to port 0 with ECONNREFUSED, and a
    SYN from port 0 reaches a listener (all measured on Linux, see
    tests/integration/test_run_port_zero.py)."""
    raw = Raw()
    raw.inject(TcpRepr(40000, 0, 1000, None, F.SYN, 8192, 0))
    (rst, _), = raw.out()
    assert (rst.src_port, rst.dst_port) == (0, 40000)
    assert rst.flags == F.RST and rst.ack == 1001 and rst.seq == 0  # RST|ACK
    assert raw.tcp.stats["no_socket"] == 1

    c = raw.tcp.socket(AF_INET)
    assert err(c.connect, ("10.0.0.1", 0)) == errno.EINPROGRESS
    (syn, _), = raw.out()
    assert syn.dst_port == 0 and syn.flags == F.SYN
    raw.inject(TcpRepr(0, syn.src_port, 0, (syn.seq + 1) & 0xFFFFFFFF, F.RST, 0))
    assert c.poll() & C.POLLERR
    assert err(c.connect, ("10.0.0.1", 0)) == errno.ECONNREFUSED

    ls = raw.tcp.socket(AF_INET)
    ls.bind(("10.0.0.2", 80))
    ls.listen(4)
    raw.inject(TcpRepr(0, 80, 1000, None, F.SYN, 8192, 0))
    (synack, _), = raw.out()
    assert (synack.src_port, synack.dst_port) == (80, 0)
    assert synack.flags == F.SYN and synack.ack == 1001


def test_ephemeral_ports_distinct_for_many_connections() -> None:
    raw = Raw()
    ports = set()
    for _ in range(200):
        s = raw.tcp.socket(AF_INET)
        err(s.connect, ("10.0.0.1", 80))
        ports.add(s.getsockname()[1])
    assert len(ports) == 200 and all(32768 <= p <= 60999 for p in ports)


def test_unreachable_destination() -> None:
    raw = Raw()
    raw.ctx.unreachable.add(raw.peer)
    s = raw.tcp.socket(AF_INET)
    assert err(s.connect, ("10.0.0.1", 80)) == errno.ENETUNREACH


def test_sockopt_encodings_like_linux() -> None:
    raw = Raw()
    s = raw.tcp.socket(AF_INET)
    g = s.getsockopt
    assert g(C.SOL_SOCKET, C.SO_TYPE, 4) == opt(1)
    assert g(C.SOL_SOCKET, C.SO_DOMAIN, 4) == opt(AF_INET)
    assert g(C.SOL_SOCKET, C.SO_PROTOCOL, 4) == opt(6)
    assert g(C.SOL_SOCKET, C.SO_ACCEPTCONN, 4) == opt(0)
    assert g(C.SOL_SOCKET, C.SO_TYPE, 2) == opt(1)[:2]
    s.setsockopt(C.SOL_SOCKET, C.SO_RCVBUF, opt(10000))
    assert g(C.SOL_SOCKET, C.SO_RCVBUF, 4) == opt(20000)  # Linux doubles
    s.setsockopt(C.SOL_SOCKET, C.SO_RCVBUF, opt(10**9))
    assert g(C.SOL_SOCKET, C.SO_RCVBUF, 4) == opt(2 * 212992)  # capped at rmem_max
    s.setsockopt(C.SOL_SOCKET, C.SO_SNDBUF, opt(1))
    assert g(C.SOL_SOCKET, C.SO_SNDBUF, 4) == opt(C.SOCK_MIN_SNDBUF)
    s.setsockopt(C.SOL_SOCKET, C.SO_LINGER, struct.pack("ii", 1, 7))
    assert g(C.SOL_SOCKET, C.SO_LINGER, 8) == struct.pack("ii", 1, 7)
    assert g(C.IPPROTO_TCP, C.TCP_CONGESTION, 16) == b"cubic".ljust(16, b"\0")
    s.setsockopt(C.IPPROTO_TCP, C.TCP_CONGESTION, b"reno\0")
    assert g(C.IPPROTO_TCP, C.TCP_CONGESTION, 16).rstrip(b"\0") == b"reno"
    assert err(s.setsockopt, C.IPPROTO_TCP, C.TCP_CONGESTION, b"bbr") == errno.ENOENT
    assert g(C.IPPROTO_TCP, C.TCP_MAXSEG, 4) == opt(536)
    assert err(s.setsockopt, C.IPPROTO_TCP, C.TCP_MAXSEG, opt(10)) == errno.EINVAL
    assert err(s.setsockopt, C.IPPROTO_TCP, C.TCP_KEEPIDLE, opt(0)) == errno.EINVAL
    assert err(s.setsockopt, C.IPPROTO_TCP, C.TCP_NODELAY, b"\x01") == errno.EINVAL
    assert err(s.setsockopt, C.SOL_SOCKET, 999, opt(1)) == errno.ENOPROTOOPT
    assert err(s.getsockopt, C.IPPROTO_TCP, 999, 4) == errno.ENOPROTOOPT
    s.setsockopt(C.IPPROTO_TCP, C.TCP_USER_TIMEOUT, opt(1234))
    assert g(C.IPPROTO_TCP, C.TCP_USER_TIMEOUT, 4) == opt(1234)
    assert g(C.IPPROTO_TCP, C.TCP_KEEPIDLE, 4) == opt(7200)
    assert g(C.IPPROTO_TCP, C.TCP_LINGER2, 4) == opt(60)


def test_tcp_maxseg_limits_mss_in_syn() -> None:
    raw = Raw()
    s, syn = raw.client(setup=lambda s: s.setsockopt(C.IPPROTO_TCP, C.TCP_MAXSEG, opt(1000)))
    assert syn.mss == 1000
    assert s.getsockopt(C.IPPROTO_TCP, C.TCP_MAXSEG, 4) == opt(1000 - 12)


def test_tcp_window_clamp_bounds_advertised_window() -> None:
    raw = Raw()
    s, syn = raw.client(setup=lambda s: s.setsockopt(C.IPPROTO_TCP, C.TCP_WINDOW_CLAMP,
                                                     opt(20000)))
    assert syn.window <= 20000
    assert s.conn.window_space() <= 20000


def test_tcp_info_layout_and_values() -> None:
    raw = Raw()
    s, _ = raw.client(ts=False)
    info = s.getsockopt(C.IPPROTO_TCP, C.TCP_INFO, 512)
    assert len(info) == TCP_INFO.size == 248
    f = TCP_INFO.unpack(info)
    state, ca_state, retransmits, probes, backoff, options, wscale = f[:7]
    assert state == 1 and ca_state == 0 and retransmits == 0
    assert options == C.TCPI_OPT_SACK | C.TCPI_OPT_WSCALE
    assert wscale == 7 | (7 << 4)
    rto, ato, snd_mss, rcv_mss = f[8:12]
    assert rto == int(s.conn.rtt.rto * 1e6) and snd_mss == 1460
    assert ato == 40000
    snd_cwnd = f[8 + 18]
    assert snd_cwnd == 10  # RFC 6928 initial window
    short = s.getsockopt(C.IPPROTO_TCP, C.TCP_INFO, 8)
    assert short == info[:8]
    fresh = raw.tcp.socket(AF_INET).getsockopt(C.IPPROTO_TCP, C.TCP_INFO, 512)
    assert fresh[0] == State.CLOSED


def test_tcp_info_counts_retransmissions() -> None:
    raw = Raw()
    s, _ = raw.client(ts=False)
    s.send(b"x" * 100)
    raw.advance(raw.ctx.now + 0.21)
    f = TCP_INFO.unpack(s.getsockopt(C.IPPROTO_TCP, C.TCP_INFO, 512))
    assert f[2] == 1 and f[1] == 4  # retransmits, ca_state Loss
    assert f[12] == 1 and f[14] == 0 and f[15] == 1  # unacked, lost, retrans (segments)
    assert f[8 + 24 - 1] == 1  # total_retrans


def test_so_error_soft_icmp_reported_on_timeout() -> None:
    raw = Raw(TcpConfig(syn_retries=1))
    s = raw.tcp.socket(AF_INET)
    err(s.connect, ("10.0.0.1", 80))
    raw.advance(10)
    assert s.getsockopt(C.SOL_SOCKET, C.SO_ERROR, 4) == opt(errno.ETIMEDOUT)


def test_poll_established_writable_until_buffer_full() -> None:
    raw = Raw()
    s, _ = raw.client(window=0, ws=None)
    s.setsockopt(C.SOL_SOCKET, C.SO_SNDBUF, opt(5000))
    total = 0
    while True:
        try:
            total += s.send(b"z" * 4096)
        except NetError as e:
            assert e.errno == errno.EAGAIN
            break
    assert total == 10000
    assert not s.poll() & C.POLLOUT


def test_shutdown_rd_returns_eof_to_reader() -> None:
    raw = Raw()
    s, _ = raw.client()
    s.shutdown(C.SHUT_RD)
    assert s.recv(10) == b""
    assert s.poll() & C.POLLRDHUP


def test_readiness_changed_on_data_and_accept() -> None:
    raw = Raw()
    s, _ = raw.client()
    raw.ctx.woken.clear()
    raw.inject(raw.seg(0, ack=raw.ack_for(0)), b"x")
    assert s in raw.ctx.woken


def test_ipv6_client_socket_names() -> None:
    raw = Raw(addr="fd00::2", peer="fd00::1")
    s, syn = raw.client(family=AF_INET6)
    assert syn.mss == 1440
    assert s.getpeername() == ("fd00::1", 40000, 0, 0)
    assert s.getsockname()[0] == "fd00::2"


def test_fake_ctx_is_a_transport_context() -> None:
    ctx = FakeCtx(["10.0.0.1"])
    assert ctx.egress_has_room(1)
    # A segment with SYN+FIN is malformed (Linux drops it).
    from netvisor.tcpip.errors import MalformedPacket
    raw = Raw()
    with pytest.raises(MalformedPacket):
        raw.inject(TcpRepr(1, 80, 1, None, F.SYN | F.FIN, 0))


def test_ioctls_inq_outq_like_linux() -> None:
    from netvisor.tcpip.tcp.socket import SIOCINQ, SIOCOUTQ, SIOCOUTQNSD
    raw = Raw()
    s, _ = raw.client(window=1000, ws=None)
    s.send(b"a" * 3000)
    raw.out()
    assert s.ioctl(SIOCOUTQ) == 3000 and s.ioctl(SIOCOUTQNSD) == 2000
    raw.inject(raw.seg(0, ack=raw.ack_for(1000), window=1000), b"xyz")
    assert s.ioctl(SIOCINQ) == 3 and s.ioctl(SIOCOUTQ) == 2000
    ls = raw.tcp.socket(AF_INET)
    ls.listen(1)
    assert err(ls.ioctl, SIOCINQ) == errno.EINVAL


def test_tcp_info_on_listener_reports_queue_and_backlog() -> None:
    raw = Raw()
    ls = raw.tcp.socket(AF_INET)
    ls.bind(("10.0.0.2", 80))
    ls.listen(7)
    raw.inject(TcpRepr(50000, 80, 7, None, F.SYN, 1000, 0, 1460))
    (sa, _), = raw.out()
    raw.inject(TcpRepr(50000, 80, 8, (sa.seq + 1) & 0xFFFFFFFF, F.NONE, 1000))
    f = TCP_INFO.unpack(ls.getsockopt(C.IPPROTO_TCP, C.TCP_INFO, 512))
    assert f[0] == State.LISTEN and f[12] == 1 and f[13] == 7


def test_tcp_fastopen_options_accepted_without_fast_open() -> None:
    raw = Raw()
    ls = raw.tcp.socket(AF_INET)
    ls.setsockopt(C.IPPROTO_TCP, C.TCP_FASTOPEN, opt(16))
    assert ls.getsockopt(C.IPPROTO_TCP, C.TCP_FASTOPEN, 4) == opt(16)
    c = raw.tcp.socket(AF_INET)
    c.setsockopt(C.IPPROTO_TCP, C.TCP_FASTOPEN_CONNECT, opt(1))
    assert err(c.setsockopt, C.IPPROTO_TCP, C.TCP_FASTOPEN_CONNECT, opt(2)) == errno.EINVAL
