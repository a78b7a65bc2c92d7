"""Resegmented, reordered, duplicated and overlapping streams deliver identical bytes.

RFC 9293 3.10.7.4 (segment text, trimming to the window), RFC 5681 4.2
(immediate ACKs for out-of-order data), RFC 2018 (SACK blocks describe the
queue). The receiver is driven directly; the test plays the sender.
"""

from __future__ import annotations

import random

from hypothesis import given, settings, strategies as st

from netvisor.tcpip.errors import NetError
from netvisor.tcpip.tcp.recv_buffer import RecvBuffer
from netvisor.tcpip.tcp.sack import Scoreboard
from tests.unit.tcp.harness import Raw


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 30_000), st.integers(0, 2**31))
def test_any_segmentation_and_order_gives_the_same_bytes(peer_iss: int, size: int,
                                                         seed: int) -> None:
    rnd = random.Random(seed)
    data = rnd.randbytes(size)
    raw = Raw()
    raw.peer_iss = peer_iss  # exercises sequence wrap-around too
    s, _ = raw.client()
    pieces = []
    pos = 0
    while pos < size:
        n = rnd.randint(1, 3000)
        pieces.append((pos, data[pos:pos + n]))
        pos += n
    # Overlapping retransmissions and duplicates.
    for _ in range(rnd.randint(0, 10)):
        a = rnd.randrange(size)
        b = min(size, a + rnd.randint(1, 4000))
        pieces.append((a, data[a:b]))
    rnd.shuffle(pieces)
    got = bytearray()
    for off, chunk in pieces:
        raw.inject(raw.seg(off, ack=raw.ack_for(0)), chunk)
        for rep, _ in raw.out():
            if raw.ts_echo is not None and rep.timestamps:
                raw.ts_echo = rep.timestamps[0]
        try:
            got += s.recv(1 << 20)
        except NetError:
            pass
    assert bytes(got) == data
    assert s.conn.rcvbuf.ooo_bytes == 0 and not s.conn.rcvbuf.ooo


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 500), st.integers(1, 100)), max_size=30))
def test_ooo_queue_stores_every_byte_once(ranges: list[tuple[int, int]]) -> None:
    rb = RecvBuffer()
    covered: set[int] = set()
    for start, n in ranges:
        rb.add_ooo(1000 + start, bytes([start % 251]) * n, 10_000)
        covered.update(range(1000 + start, 1000 + start + n))
    assert rb.ooo_bytes == len(covered)
    starts = [s for s, _ in rb.ooo]
    assert starts == sorted(starts)
    for (s1, d1), (s2, _) in zip(rb.ooo, rb.ooo[1:]):
        assert s1 + len(d1) <= s2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 500), st.integers(1, 100)), max_size=30),
       st.integers(0, 600))
def test_scoreboard_counts_sacked_bytes(ranges: list[tuple[int, int]], una: int) -> None:
    sb = Scoreboard()
    covered: set[int] = set()
    for s, n in ranges:
        sb.add(s, s + n)
        covered.update(range(s, s + n))
    assert sb.sacked == len(covered)
    sb.advance(una)
    assert sb.sacked == len({x for x in covered if x >= una})
    if covered:
        frm = min(covered)
        hole = sb.next_hole(una, 700)
        if hole is not None:
            assert not any(hole[0] <= x < hole[1] for x in covered)
    assert frm is not None if covered else True
