"""The per-segment fast paths write the same bytes as the general ones.

``output._emit_fast`` packs the header (and NOP NOP TIMESTAMP) in one go
instead of building a ``TcpRepr``; ``_emit(_header(...))`` stays the
reference for every segment, and the one used when SACK blocks are due.
"""

from __future__ import annotations

from typing import Any

import pytest

from netvisor.tcpip.tcp.constants import FIN, NOFLAGS, PSH
from tests.unit.tcp.harness import Raw


@pytest.mark.parametrize("ts", [True, False])
@pytest.mark.parametrize("offload", [True, False])
@pytest.mark.parametrize("flags,payload", [(NOFLAGS, 0), (PSH, 1), (PSH, 700), (FIN, 0),
                                           (PSH | FIN, 3)])
def test_fast_emit_matches_repr_emit(ts: bool, offload: bool, flags: int, payload: int) -> None:
    raw = Raw(offload=offload)
    s, _ = raw.client(ts=ts)
    raw.advance(1.5)
    conn = s.conn
    conn.sndbuf.append(bytes(range(256)) * 3)
    start = conn.snd_nxt
    end = start + payload
    conn._emit(conn._header(start, flags, now=raw.ctx.now), start, end, raw.ctx.now)
    conn._emit_fast(start, flags, start, end, raw.ctx.now)
    general, fast = raw.ctx.take()
    assert fast.data == general.data
    assert (fast.gso_size, fast.checksum_offset) == (general.gso_size, general.checksum_offset)


def test_fast_emit_gso_size_matches(ts: bool = True) -> None:
    raw = Raw(offload=True, gso=65536)
    s, _ = raw.client(ts=ts)
    conn = s.conn
    conn.sndbuf.append(b"x" * 20000)
    start = conn.snd_nxt
    now = raw.ctx.now
    conn._emit(conn._header(start, NOFLAGS, now=now), start, start + 20000, now)
    conn._emit_fast(start, NOFLAGS, start, start + 20000, now)
    general, fast = raw.ctx.take()
    assert fast.data == general.data and fast.gso_size == general.gso_size > 0


def _select_window_reference(c: Any) -> int:
    """Linux __tcp_select_window as first written here (min/max form)."""
    space = c.window_space()
    free = max(0, space - len(c.rcvbuf) - c.rcvbuf.ooo_bytes)
    cur = max(0, c.rcv_adv - c.rcv_nxt)
    free = min(free, 65535 << c.rcv_wscale)
    if free < cur:
        new = cur
    elif free - cur < min(c.rcv_mss, space // 2) and cur > 0:
        new = cur
    elif free < min(c.rcv_mss, space // 2) and cur == 0:
        new = 0
    else:
        new = free
    field = min(65535, (new + (1 << c.rcv_wscale) - 1) >> c.rcv_wscale if new == cur
                else new >> c.rcv_wscale)
    c.rcv_adv = max(c.rcv_adv, c.rcv_nxt + (field << c.rcv_wscale))
    return int(field)


def test_select_window_matches_reference() -> None:
    import random
    from types import SimpleNamespace

    from netvisor.tcpip.tcp import output

    class Rcv:
        def __init__(self, n: int, ooo: int) -> None:
            self.n, self.ooo_bytes = n, ooo

        def __len__(self) -> int:
            return self.n

    rng = random.Random(5)
    for _ in range(20000):
        space = rng.choice([0, 1, 100, 1000, 65535, 131072, 3 << 20, rng.randrange(1 << 24)])
        state = {"rcv_wscale": rng.randrange(15),
                 "rcv_mss": rng.choice([536, 1448, rng.randrange(1, 9000)]),
                 "rcv_nxt": rng.randrange(1 << 33)}
        state["rcv_adv"] = state["rcv_nxt"] + rng.randrange(-5000, 1 << 22)
        held = (rng.randrange(space + 2) if space else 0, rng.choice([0, rng.randrange(10000)]))
        got = []
        for fn in (_select_window_reference, output._select_window):
            c: Any = SimpleNamespace(window_space=lambda space=space: space,
                                     rcvbuf=Rcv(*held), **state)
            got.append((fn(c), c.rcv_adv))
        assert got[0] == got[1], (space, state, held, got)


@pytest.mark.parametrize("synack", [False, True])
@pytest.mark.parametrize("offload", [True, False])
def test_syn_fast_emit_matches_repr_emit(synack: bool, offload: bool) -> None:
    from netvisor.tcpip.tcp.constants import SYN
    from netvisor.tcpip.wire.tcp import TcpRepr

    raw = Raw(offload=offload)
    s, _ = raw.client()
    conn = s.conn
    now = raw.ctx.now
    ack = (conn.rcv_nxt & 0xFFFFFFFF) if synack else None
    tsval, tsecr = conn.ts_now(now), (conn.ts_recent if synack else 0)
    rep = TcpRepr(conn.lport, conn.rport, conn.iss & 0xFFFFFFFF, ack, SYN, 29200, 0, conn.advmss,
                  conn.rcv_wscale, True, (), (tsval, tsecr))
    conn._emit(rep, 0, 0, now)
    conn._emit_syn_fast(ack, 29200, tsval, tsecr, now)
    general, fast = raw.ctx.take()
    assert fast.data == general.data
