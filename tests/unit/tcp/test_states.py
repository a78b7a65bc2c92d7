"""Per-state fixtures: the same inputs checked in every synchronized state (RFC 9293 3.10.7.4)."""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

import pytest

from netvisor.tcpip.errors import NetError
from netvisor.tcpip.tcp.constants import AF_INET, State
from netvisor.tcpip.wire.tcp import TcpFlags as F
from netvisor.tcpip.wire.tcp import TcpRepr
from tests.unit.tcp.harness import Raw


def _established() -> tuple[Raw, Any, int, int]:
    raw = Raw()
    s, _ = raw.client()
    return raw, s, 0, 0  # (peer offset consumed, our offset sent incl. FIN)


def _fin_wait_1() -> tuple[Raw, Any, int, int]:
    raw, s, p, o = _established()
    s.shutdown(1)
    raw.out()
    return raw, s, p, 1


def _fin_wait_2() -> tuple[Raw, Any, int, int]:
    raw, s, p, o = _fin_wait_1()
    raw.inject(raw.seg(0, ack=raw.ack_for(1)))
    return raw, s, p, 1


def _close_wait() -> tuple[Raw, Any, int, int]:
    raw, s, p, o = _established()
    raw.inject(raw.seg(0, F.FIN, ack=raw.ack_for(0)))
    raw.out()
    return raw, s, 1, 0


def _last_ack() -> tuple[Raw, Any, int, int]:
    raw, s, p, o = _close_wait()
    s.shutdown(1)
    raw.out()
    return raw, s, 1, 1


def _closing() -> tuple[Raw, Any, int, int]:
    raw, s, p, o = _fin_wait_1()
    raw.inject(raw.seg(0, F.FIN, ack=raw.ack_for(0)))  # peer FIN, our FIN not acked
    raw.out()
    return raw, s, 1, 1


def _time_wait() -> tuple[Raw, Any, int, int]:
    raw, s, p, o = _fin_wait_2()
    raw.inject(raw.seg(0, F.FIN, ack=raw.ack_for(1)))
    raw.out()
    return raw, s, 1, 1


STATES: dict[State, Callable[[], tuple[Raw, Any, int, int]]] = {
    State.ESTABLISHED: _established,
    State.FIN_WAIT_1: _fin_wait_1,
    State.FIN_WAIT_2: _fin_wait_2,
    State.CLOSE_WAIT: _close_wait,
    State.LAST_ACK: _last_ack,
    State.CLOSING: _closing,
    State.TIME_WAIT: _time_wait,
}


@pytest.fixture(params=list(STATES), ids=lambda s: s.name)
def conn_in_state(request: pytest.FixtureRequest) -> tuple[State, Raw, Any, int, int]:
    state = request.param
    raw, s, p, o = STATES[state]()
    assert s.conn.state == state
    return state, raw, s, p, o


def test_fixture_states_reached(conn_in_state: tuple[State, Raw, Any, int, int]) -> None:
    state, raw, s, p, o = conn_in_state
    assert s.tcp_state() == state


def test_rfc5961_3_2_in_window_rst_challenged_in_every_state(conn_in_state) -> None:  # type: ignore[no-untyped-def]
    state, raw, s, p, o = conn_in_state
    raw.inject(raw.seg(p + 100, F.RST, ack=None))
    out = raw.out()
    assert s.conn.state == state
    if state != State.TIME_WAIT:
        assert len(out) == 1 and out[0][0].flags == F.NONE  # challenge ACK
    else:
        assert out == []  # Linux ignores an out-of-sequence RST in TIME-WAIT


def test_rfc9293_exact_rst_closes_every_state(conn_in_state) -> None:  # type: ignore[no-untyped-def]
    state, raw, s, p, o = conn_in_state
    raw.inject(raw.seg(p, F.RST, ack=None))
    assert s.conn.state == State.CLOSED
    assert not raw.tcp.conns
    expected = {State.ESTABLISHED: errno.ECONNRESET, State.FIN_WAIT_1: errno.ECONNRESET,
                State.FIN_WAIT_2: errno.ECONNRESET, State.CLOSE_WAIT: errno.EPIPE}
    if state in expected:
        assert s.conn.sk_err == expected[state]


def test_rfc5961_4_2_syn_challenged_in_every_state(conn_in_state) -> None:  # type: ignore[no-untyped-def]
    state, raw, s, p, o = conn_in_state
    raw.inject(raw.seg(p + 7, F.SYN, ack=None))
    out = raw.out()
    assert s.conn.state == state
    assert len(out) == 1 and out[0][0].flags == F.NONE and out[0][0].ack is not None


def test_rfc9293_unacceptable_segment_acked_in_every_state(conn_in_state) -> None:  # type: ignore[no-untyped-def]
    state, raw, s, p, o = conn_in_state
    raw.inject(raw.seg(p - 10_000, ack=raw.ack_for(o)), b"old data")
    out = raw.out()
    assert len(out) == 1 and out[0][0].ack == (raw.peer_iss + 1 + p) & 0xFFFFFFFF
    assert s.conn.state == state


def test_rfc9293_data_accepted_only_while_peer_may_send(conn_in_state) -> None:  # type: ignore[no-untyped-def]
    state, raw, s, p, o = conn_in_state
    raw.inject(raw.seg(p, ack=raw.ack_for(o)), b"text")
    try:
        got = s.recv(10)
    except NetError as e:
        got = e.errno
    if state in (State.ESTABLISHED, State.FIN_WAIT_1, State.FIN_WAIT_2):
        assert got == b"text"  # RFC 9293 seventh: these states take segment text
    else:
        assert got == b""  # after the peer's FIN there is no more text (ignored, EOF)


def test_syn_sent_and_syn_received_states() -> None:
    raw = Raw()
    ls = raw.tcp.socket(AF_INET)
    ls.bind(("10.0.0.2", 80))
    ls.listen(1)
    raw.inject(TcpRepr(50000, 80, 7, None, F.SYN, 1000, 0, 1460))
    (sa, _), = raw.out()
    (conn,) = raw.tcp.conns.values()
    assert conn.state == State.SYN_RECEIVED
    raw.inject(TcpRepr(50000, 80, 7, None, F.SYN, 1000, 0, 1460))  # retransmitted SYN
    (sa2, _), = raw.out()
    assert sa2.seq == sa.seq and sa2.flags == F.SYN
    raw.inject(TcpRepr(50000, 80, 8, (sa.seq + 5) & 0xFFFFFFFF, F.NONE, 1000))  # bad ACK
    (rst, _), = raw.out()
    assert rst.flags == F.RST and rst.seq == (sa.seq + 5) & 0xFFFFFFFF
    raw.inject(TcpRepr(50000, 80, 8, None, F.RST, 0))  # RST in SYN-RECEIVED: back to LISTEN
    assert not raw.tcp.conns and ls.tcp_state() == State.LISTEN
