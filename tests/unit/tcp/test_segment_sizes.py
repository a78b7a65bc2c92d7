"""Segment sizes never exceed the path MTU, whatever options ride on them.

BUGS-H9 B1: data segments that carry SACK blocks (sent while the receive side
holds out-of-order data) were 12-28 bytes over the MTU. Linux
``tcp_current_mss()`` subtracts the option bytes actually added
(``tcp_established_options``) from the MSS, and that smaller MSS is both the
payload cut and the ``gso_size``.
"""

from __future__ import annotations

import pytest

from netvisor.tcpip.wire.tcp import TcpRepr, TcpView
from tests.unit.tcp.harness import Out, Raw

MTU = 1500
IP4 = 20


def _piece_sizes(o: Out) -> list[int]:
    """IP packet sizes on the wire for one output (TSO super-segments cut by gso_size)."""
    view = TcpView.checked(o.data)
    hl = view.header_len
    n = len(view.payload)
    if o.gso_size <= 0 or n <= o.gso_size:
        return [IP4 + hl + n]
    sizes = [IP4 + hl + o.gso_size] * (n // o.gso_size)
    if n % o.gso_size:
        sizes.append(IP4 + hl + n % o.gso_size)
    return sizes


def _establish_with_holes(raw: Raw, blocks: int, ts: bool) -> object:
    s, _ = raw.client(ts=ts)
    s.conn.quickack = 0
    # The peer's stream has holes: `blocks` out-of-order ranges above RCV.NXT.
    for k in range(blocks):
        raw.inject(raw.seg(1000 + 2000 * k, ack=raw.ack_for(0)), b"o" * 500)
    raw.out()
    assert len(s.conn.rcvbuf.ooo_blocks()) == blocks
    return s


@pytest.mark.parametrize("gso", [0, 65536])
@pytest.mark.parametrize("blocks,ts", [(1, True), (3, True), (4, False), (2, False)])
def test_data_segments_with_sack_blocks_fit_the_mtu_linux_tcp_current_mss(
        gso: int, blocks: int, ts: bool) -> None:
    raw = Raw(gso=gso)
    s = _establish_with_holes(raw, blocks, ts)
    s.send(b"d" * 60000)  # type: ignore[attr-defined]
    outs = raw.ctx.take()
    assert outs
    seen_sack = False
    for o in outs:
        rep = TcpRepr.parse(TcpView.checked(o.data), verify_checksum=False)
        seen_sack |= bool(rep.sack_blocks)
        assert max(_piece_sizes(o)) <= MTU, (rep, o.gso_size, len(o.data))
    assert seen_sack
    # Full-sized pieces use the whole room the options leave (no needless shrinking).
    o = outs[0]
    rep = TcpRepr.parse(TcpView.checked(o.data), verify_checksum=False)
    assert max(_piece_sizes(o)) == MTU
    assert len(rep.sack_blocks) == min(blocks, 3 if ts else 4)


def test_retransmission_with_sack_blocks_fits_the_mtu() -> None:
    """An RTO retransmission sent while our receive queue has holes is cut to fit too."""
    raw = Raw()
    s, _ = raw.client()
    s.send(b"r" * 1448)
    (_, p), = raw.out()
    assert len(p) == 1448  # full-sized before the peer's stream had a hole
    s.conn.quickack = 0
    raw.inject(raw.seg(1000, ack=raw.ack_for(0)), b"o" * 100)
    raw.inject(raw.seg(3000, ack=raw.ack_for(0)), b"o" * 100)
    raw.out()
    raw.advance(raw.ctx.now + 2.0)  # RTO
    outs = raw.ctx.take()
    data = [o for o in outs if TcpView.checked(o.data).payload]
    assert data
    assert all(max(_piece_sizes(o)) <= MTU for o in data)
    got = b"".join(bytes(TcpView.checked(o.data).payload) for o in data)
    assert got.startswith(b"r" * 1400)


@pytest.mark.parametrize("gso", [0, 65536])
def test_bidirectional_lossy_transfer_never_exceeds_the_mtu(gso: int) -> None:
    """Both ends send while both receive queues have holes (the interop echo case)."""
    import random

    from netvisor.tcpip.errors import NetError
    from netvisor.tcpip.tcp.constants import AF_INET
    from tests.unit.tcp.harness import Net

    net = Net(seed=7, loss=0.05, reorder=0.1)
    net.keep_trace = True
    a = net.add("10.0.0.1", gso=gso)
    b = net.add("10.0.0.2", gso=gso)
    ls = b.tcp.socket(AF_INET)
    ls.bind(("10.0.0.2", 7))
    ls.listen(4)
    c = a.tcp.socket(AF_INET)
    with pytest.raises(NetError):
        c.connect(("10.0.0.2", 7))
    data = random.Random(1).randbytes(300_000)
    st: dict[str, object] = {"srv": None}
    sent = {"c": 0, "s": 0}
    got = {"c": bytearray(), "s": bytearray()}

    def app() -> None:
        if st["srv"] is None:
            try:
                st["srv"], _ = ls.accept()
            except NetError:
                return
        for k, sock in (("c", c), ("s", st["srv"])):
            try:
                sent[k] += sock.send(data[sent[k]:sent[k] + 65536])  # type: ignore[attr-defined]
            except NetError:
                pass
            try:
                got[k] += sock.recv(1 << 20)  # type: ignore[attr-defined]
            except NetError:
                pass

    net.run(60, app, stop=lambda: len(got["c"]) == len(got["s"]) == len(data))
    assert bytes(got["c"]) == data and bytes(got["s"]) == data
    sacked = [o for _, o in net.trace
              if TcpRepr.parse(TcpView.checked(o.data), verify_checksum=False).sack_blocks
              and TcpView.checked(o.data).payload]
    assert sacked, "no data segment carried SACK blocks: the test lost its subject"
    assert max(max(_piece_sizes(o)) for _, o in net.trace) <= MTU
