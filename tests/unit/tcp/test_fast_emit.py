"""The per-segment fast paths write the same bytes as the general ones.

``output._emit_fast`` packs the header (and NOP NOP TIMESTAMP) in one go
instead of building a ``TcpRepr``; ``_emit(_header(...))`` stays the
reference for every segment, and the one used when SACK blocks are due.
"""

from __future__ import annotations

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
