"""Random segments, timers and socket calls against live connections: nothing but
counted drops (MalformedPacket) may escape, and the TCB invariants hold."""

from __future__ import annotations

import errno

from hypothesis import given, settings, strategies as st

from netvisor.tcpip.errors import MalformedPacket, NetError
from netvisor.tcpip.tcp.constants import AF_INET, State
from netvisor.tcpip.wire.tcp import TcpFlags as F
from netvisor.tcpip.wire.tcp import TcpRepr
from tests.unit.tcp.harness import Raw

FLAGS = [F.NONE, F.SYN, F.FIN, F.RST, F.PSH, F.URG, F.SYN | F.FIN, F.FIN | F.PSH, F.RST | F.FIN]

event = st.one_of(
    st.tuples(st.just("seg"), st.sampled_from(FLAGS), st.integers(-70000, 70000),
              st.one_of(st.none(), st.integers(-70000, 70000)), st.integers(0, 65535),
              st.binary(max_size=300),
              st.one_of(st.none(), st.tuples(st.integers(-5000, 5000), st.integers(1, 3000))),
              st.booleans()),
    st.tuples(st.just("time"), st.floats(0, 5)),
    st.tuples(st.just("send"), st.integers(0, 5000)),
    st.tuples(st.just("recv"), st.integers(0, 5000)),
    st.tuples(st.just("shut"), st.integers(0, 2)),
    st.tuples(st.just("close")),
)


def _check(raw: Raw) -> None:
    for c in list(raw.tcp.conns.values()):
        assert c.snd_una <= c.snd_nxt or c.state in (State.SYN_SENT, State.CLOSED)
        assert len(c.sndbuf) >= 0 and c.rcvbuf.ooo_bytes >= 0
        assert c.board.sacked >= 0
        assert not c.dead


@settings(max_examples=150, deadline=None)
@given(st.lists(event, max_size=40), st.booleans())
def test_random_inputs_never_crash(events: list, passive: bool) -> None:  # type: ignore[type-arg]
    raw = Raw()
    if passive:
        ls = raw.tcp.socket(AF_INET)
        ls.bind(("10.0.0.2", 80))
        ls.listen(2)
        raw.inject(TcpRepr(40000, 80, raw.peer_iss, None, F.SYN, 65535, 0, 1460, 7, True, (),
                           (1, 0)))
        (sa, _), = raw.out()
        raw.our_iss = sa.seq
        raw.ts_echo = sa.timestamps[0] if sa.timestamps else None
        raw.local_port = 80
        raw.inject(raw.seg(0, ack=raw.ack_for(0)))
        s, _ = ls.accept()
    else:
        s, _ = raw.client()
    for ev in events:
        kind = ev[0]
        try:
            if kind == "seg":
                _, flags, soff, aoff, win, payload, sack, ts = ev
                sack_blocks = ()
                if sack is not None:
                    left = raw.ack_for(sack[0])
                    sack_blocks = ((left, (left + sack[1]) & 0xFFFFFFFF),)
                rep = raw.seg(soff, flags, ack=None if aoff is None else raw.ack_for(aoff),
                              window=win, ts=ts, sack_blocks=sack_blocks)
                try:
                    raw.inject(rep, payload)
                except MalformedPacket:
                    pass
            elif kind == "time":
                raw.advance(raw.ctx.now + ev[1])
            elif kind == "send":
                s.send(b"s" * ev[1])
            elif kind == "recv":
                s.recv(ev[1])
            elif kind == "shut":
                s.shutdown(ev[1])
            elif kind == "close":
                s.close()
        except NetError as e:
            assert e.errno in (errno.EAGAIN, errno.EPIPE, errno.ENOTCONN, errno.ECONNRESET,
                               errno.ETIMEDOUT, errno.EBADF, errno.EINVAL)
        raw.out()
        _check(raw)
    raw.advance(raw.ctx.now + 1000)
    _check(raw)
    s.close()
    raw.advance(raw.ctx.now + 1000)
    assert not raw.tcp.conns or all(c.state == State.TIME_WAIT for c in raw.tcp.conns.values())
