"""Reassembly rules: order, duplicates, overlaps (RFC 5722), timeout, memory cap."""

from __future__ import annotations

from netvisor.tcpip.counters import Counters, DropReason
from netvisor.tcpip.fragment import Reassembler, fragment_offsets

DATA = bytes(range(256)) * 10  # 2560 bytes


def pieces(data: bytes, size: int) -> list[tuple[int, bytes, bool]]:
    out = []
    for off in range(0, len(data), size):
        chunk = data[off:off + size]
        out.append((off, chunk, off + size < len(data)))
    return out


def test_in_order_and_out_of_order() -> None:
    for order in (lambda p: p, lambda p: list(reversed(p)), lambda p: p[1::2] + p[0::2]):
        c = Counters()
        r = Reassembler(30, 1 << 22, c)
        result = None
        for off, chunk, more in order(pieces(DATA, 512)):
            assert result is None
            result = r.add("k", off, chunk, more, 0.0, first="hdr" if off == 0 else None)
        assert result == (DATA, "hdr")
        assert r.mem == 0 and not r.queues


def test_duplicates_are_ignored() -> None:
    c = Counters()
    r = Reassembler(30, 1 << 22, c)
    p = pieces(DATA, 512)
    r.add("k", *p[0][:2], p[0][2], 0.0)
    r.add("k", *p[0][:2], p[0][2], 0.0)  # exact duplicate
    r.add("k", 0, DATA[8:100], True, 0.0)  # inside received data
    assert c.drops[DropReason.FRAG_DUPLICATE] == 2
    res = None
    for off, chunk, more in p[1:]:
        res = r.add("k", off, chunk, more, 0.0)
    assert res is not None and res[0] == DATA


def test_partial_overlap_discards_the_whole_datagram() -> None:
    c = Counters()
    r = Reassembler(60, 1 << 22, c)
    r.add("k", 0, DATA[:512], True, 0.0)
    r.add("k", 504, DATA[504:1016], True, 0.0)  # overlaps 8 bytes
    assert c.drops[DropReason.FRAG_OVERLAP] == 1
    assert "k" not in r.queues and r.mem == 0
    # The rest arriving later never completes a datagram.
    assert r.add("k", 1016, DATA[1016:], False, 0.0) is None


def test_inconsistent_last_fragment_is_malformed() -> None:
    c = Counters()
    r = Reassembler(30, 1 << 22, c)
    r.add("k", 1024, DATA[1024:2048], False, 0.0)
    r.add("k", 2048, DATA[2048:], False, 0.0)
    assert c.drops[DropReason.MALFORMED] == 1


def test_oversized_datagram_is_dropped() -> None:
    c = Counters()
    r = Reassembler(30, 1 << 22, c)
    assert r.add("k", 65528, b"x" * 16, False, 0.0) is None
    assert c.drops[DropReason.FRAG_TOO_BIG] == 1


def test_timeout_returns_queues_with_first_fragment_info() -> None:
    c = Counters()
    r = Reassembler(30, 1 << 22, c)
    r.add("a", 0, DATA[:512], True, 0.0, first="first")
    r.add("b", 512, DATA[512:1024], True, 10.0)
    assert r.next_deadline() == 30.0
    assert r.expire(29.9) == []
    gone = r.expire(30.0)
    assert [q.key for q in gone] == ["a"] and gone[0].first == "first"
    assert r.next_deadline() == 40.0
    gone = r.expire(40.0)
    assert gone[0].first is None  # no first fragment: no ICMP time exceeded
    assert c.drops[DropReason.FRAG_TIMEOUT] == 2 and r.mem == 0


def test_memory_cap_evicts_oldest() -> None:
    c = Counters()
    r = Reassembler(30, 3000, c)
    r.add("a", 0, b"x" * 1000, True, 0.0)
    r.add("b", 0, b"y" * 1000, True, 1.0)
    assert r.mem <= 3000
    r.add("c", 0, b"z" * 1000, True, 2.0)  # does not fit: "a" goes
    assert list(r.queues) == ["b", "c"] and r.mem <= 3000
    assert c.drops[DropReason.FRAG_MEMORY] == 1


def test_fragment_offsets_are_multiples_of_eight() -> None:
    offs = fragment_offsets(60008, 1480)
    assert all(o % 8 == 0 for o, _ in offs)
    assert sum(n for _, n in offs) == 60008
    assert all(n == 1480 for _, n in offs[:-1])
    assert fragment_offsets(100, 1485)[0] == (0, 100)
    assert fragment_offsets(3000, 1485)[0][1] == 1480
